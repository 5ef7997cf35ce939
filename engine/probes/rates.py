"""Activation and death rates, from layer outputs and from parameter gradients.

The two definitions follow monitorch's lenses (the reference experiments, shared/REFERENCE.md section 4):

- Output based (monitorch's OutputActivation): an output is *active* when it is not
  exactly zero. A neuron (a feature, or a channel of a conv layer) is *dead on a batch* when
  none of its outputs in that batch is active; the *death rate* is the share of neurons dead
  on a batch, averaged over the epoch's training batches, and the *live dead* count the
  neurons dead on every batch of the epoch (`dead.py` has the exact full-pass count). The
  *activation rate* is the share of active outputs; it is counted on the sampled rows of the
  sampled batches (`sample_rows`, `sample_every`), an unbiased estimate at a fraction of the
  cost of counting every output.
- Gradient based (monitorch's ParameterGradientActivation): a neuron is *dead in a step*
  when its weight row and its bias have all-zero gradients. This needs no activation module,
  so it works for any activation, even a functional one. The gradient death rate is the
  share of neurons dead in a step, averaged over the steps; the gradient activation rate
  the share of non-zero weight-gradient entries (sampled steps).

How, cheaply: per batch each layer is reduced to one value per neuron that is zero exactly
when the neuron was dead (`neuron_max_abs` of the outputs, `neuron_gradient` of the
gradients); at the end of the step all of them, outputs and gradients, are concatenated
into one row of a device ring (`step_ring.py`, one op), and every `capacity` steps
`ZeroCounts` adds `rows == 0` of all unread rows to a per-neuron counter. On a CPU each
small op costs ~15-40 us once the step's big kernels have flushed the caches, so their
number, not their size, is what matters.

A layer with a bias is judged by its bias gradient, which is zero exactly when the weight
row's is (both are sums of the same per-sample errors, all zero for a neuron dead on the
batch; only an exact floating-point cancellation could tell them apart); a layer without
one by its weight rows. Nothing here reads a value back.
"""

from __future__ import annotations

from typing import Hashable

import torch


def neuron_reduce_dims(t: torch.Tensor) -> tuple[int, ...]:
    """All dims but dim 1 (features or channels): (0,) for (B, C), (0, 2, 3) for (B, C, H, W)."""
    return (0, *range(2, t.dim()))


def neuron_max_abs(output: torch.Tensor, nonnegative: bool = False) -> torch.Tensor:
    """Per neuron, the largest |output| of the batch (C,); zero exactly when the neuron was dead.

    NaN and inf propagate, so the result also tells whether the outputs were finite.
    `nonnegative` (outputs never below zero: ReLU, sigmoid, ...) skips the abs.
    """
    y = output.detach()
    if not nonnegative:
        y = y.abs()
    if y.dim() == 2:
        return y.amax(0)  # an int dim: twice as fast as a tuple of dims on the CPU
    if y.dim() < 2:
        y = y.reshape(1, -1)
    return y.amax(neuron_reduce_dims(y))


def neuron_max(values: torch.Tensor) -> torch.Tensor:
    """Per neuron, the largest value of the batch (C,): for ReLU's input z, <= 0 exactly when
    the neuron's outputs were all zero; NaN and +inf propagate."""
    z = values.detach()
    if z.dim() == 2:
        return z.amax(0)
    if z.dim() < 2:
        z = z.reshape(1, -1)
    return z.amax(neuron_reduce_dims(z))


def neuron_gradient(weight_grad: torch.Tensor, bias_grad: torch.Tensor | None) -> torch.Tensor:
    """Per neuron, a value that is zero exactly when its row and bias gradients are (C,):
    the bias gradient itself (no op), or the row's max |g| for a layer without a bias."""
    if bias_grad is not None:
        return bias_grad.detach()
    return weight_grad.detach().flatten(1).abs().amax(1)


def _kind(key: Hashable) -> str:
    return key[0] if isinstance(key, tuple) and key else ""


class ZeroCounts:
    """Per element of the per-step rows (several layers laid end to end), the number of steps
    on which it was zero: `<= 0` for the leading `("out", layer)` segments (max |y| >= 0, or
    ReLU's max z, <= 0 when dead), `== 0` for the others (gradients). The layout
    `((key, width), ...)` names the segments."""

    def __init__(self) -> None:
        self.layout: tuple[tuple[Hashable, int], ...] = ()
        self.slices: dict[Hashable, slice] = {}
        self.counts: torch.Tensor | None = None  # (sum of widths,) int64
        self.steps = 0

    def add(self, rows: torch.Tensor, layout: tuple[tuple[Hashable, int], ...]) -> None:
        """Fold in (n, width) rows, one per step (three ops for any n)."""
        if rows.dim() == 1:
            rows = rows.reshape(1, -1)
        if self.counts is None or layout != self.layout or self.counts.device != rows.device:
            self._relayout(layout, rows.device)
        out = sum(width for key, width in layout if _kind(key) == "out")  # the "out" segments lead
        if out == rows.shape[1]:
            zero = rows <= 0
        elif out:
            zero = torch.cat([rows[:, :out] <= 0, rows[:, out:] == 0], dim=1)
        else:
            zero = rows == 0
        self.counts += zero.sum(0)
        self.steps += rows.shape[0]

    def _relayout(self, layout: tuple[tuple[Hashable, int], ...], device: torch.device) -> None:
        """A new layout (a hot swap changed which values a row holds): segments present in
        both, with the same width, keep their counts; the others start from zero."""
        slices, start = {}, 0
        for key, width in layout:
            slices[key] = slice(start, start + width)
            start += width
        counts = torch.zeros(start, dtype=torch.int64, device=device)
        if self.counts is not None and self.counts.device == counts.device:
            for key, sl in slices.items():
                old = self.slices.get(key)
                if old is not None and old.stop - old.start == sl.stop - sl.start:
                    counts[sl] = self.counts[old]
        else:
            self.steps = 0
        self.layout, self.slices, self.counts = layout, slices, counts

    def reset(self) -> None:
        if self.counts is not None:
            self.counts.zero_()
        self.steps = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.counts is None or self.steps == 0 else {"zeros": self.counts}

    def segment(self, values: dict[str, torch.Tensor], key: Hashable) -> torch.Tensor | None:
        """The read-back counts of one segment (None when it was not observed)."""
        sl = self.slices.get(key)
        return None if sl is None or "zeros" not in values else values["zeros"][sl]


class SampledNonzero:
    """Non-zero entries among the sampled ones, per key (activation rates on sampled steps)."""

    def __init__(self, keys: list[Hashable]) -> None:
        self.keys = list(keys)
        self.nonzero: torch.Tensor | None = None  # (keys,) int64
        self.seen = dict.fromkeys(self.keys, 0)
        self._now: dict[Hashable, torch.Tensor] = {}

    def observe(self, key: Hashable, values: torch.Tensor) -> None:
        self._now[key] = torch.count_nonzero(values.detach())
        self.seen[key] += values.numel()

    def end_step(self) -> None:
        if not self._now:
            return
        now, self._now = self._now, {}
        device = next(iter(now.values())).device
        if self.nonzero is None or self.nonzero.device != device:
            self.nonzero = torch.zeros(len(self.keys), dtype=torch.int64, device=device)
        zero = None
        if len(now) < len(self.keys):
            zero = torch.zeros((), dtype=torch.int64, device=device)
        self.nonzero += torch.stack([now.get(k, zero) for k in self.keys])

    def reset(self) -> None:
        if self.nonzero is not None:
            self.nonzero.zero_()
        self.seen = dict.fromkeys(self.keys, 0)
        self._now = {}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.nonzero is None else {"nonzero": self.nonzero}

    def share(self, values: dict[str, torch.Tensor], key: Hashable) -> float | None:
        """Non-zero share of the sampled entries of `key`, or None when none were sampled."""
        if not self.seen.get(key) or "nonzero" not in values:
            return None
        return float(values["nonzero"][self.keys.index(key)]) / self.seen[key]


def output_rate_metrics(zero_batches: torch.Tensor, batches: int, activation_rate: float | None) -> dict[str, float]:
    """size, death_rate, dead_live(_frac), activation_rate from one layer's read-back counts."""
    size = zero_batches.numel()
    dead = int((zero_batches == batches).sum()) if batches else 0
    out = {"size": size, "death_rate": float(zero_batches.sum()) / max(1, size * batches),
           "dead_live": dead, "dead_live_frac": dead / max(1, size)}
    if activation_rate is not None:
        out["activation_rate"] = activation_rate
    return out


def gradient_rate_metrics(zero_steps: torch.Tensor, steps: int, activation_rate: float | None) -> dict[str, float]:
    """grad_death_rate, grad_dead_live (zero gradient in every step), grad_activation_rate."""
    size = zero_steps.numel()
    out = {"grad_death_rate": float(zero_steps.sum()) / max(1, size * steps),
           "grad_dead_live": int((zero_steps == steps).sum()) if steps else 0}
    if activation_rate is not None:
        out["grad_activation_rate"] = activation_rate
    return out
