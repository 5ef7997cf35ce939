"""Per-neuron reductions and the counters built on them (shared by the rate and dead probes).

A *neuron* is a feature of a (B, C) output or a channel of a (B, C, ...) conv output. Per
batch each watched layer is reduced to one value per neuron that is zero exactly when the
neuron was dead on the batch (`neuron_max_abs` of the outputs, `neuron_max` of ReLU's input,
`neuron_gradient` of the weight and bias gradients). `ZeroCounts` counts, per neuron, the
steps on which that value was zero; `SampledNonzero` counts non-zero entries of sampled
tensors (weighted by the number of steps each sampled step stands for). Nothing here reads
a value back.
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
    the bias gradient itself (no op), or the row's max |g| for a layer without a bias.

    A bias gradient is zero exactly when the weight row's is: both are sums of the same
    per-sample errors, all zero for a neuron dead on the batch (only an exact floating-point
    cancellation could tell them apart).
    """
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
    """Non-zero entries among the sampled ones, per key, each sampled step weighted by the
    number of steps it stands for (`schedules.StratifiedSample.weight`).

    Every `observe` of a key within one step adds up (a module that runs several times in a
    forward pass counts all its calls); `end_step(weight)` folds the step in.
    """

    def __init__(self, keys: list[Hashable]) -> None:
        self.keys = list(keys)
        self.nonzero: torch.Tensor | None = None  # (keys,) int64, weighted
        self.seen = dict.fromkeys(self.keys, 0)  # weighted
        self._now: dict[Hashable, torch.Tensor] = {}
        self._numel: dict[Hashable, int] = {}

    def observe(self, key: Hashable, values: torch.Tensor) -> None:
        count = torch.count_nonzero(values.detach())
        now = self._now.get(key)
        self._now[key] = count if now is None else now + count
        self._numel[key] = self._numel.get(key, 0) + values.numel()

    def end_step(self, weight: int = 1) -> None:
        if not self._now:
            return
        now, numel, self._now, self._numel = self._now, self._numel, {}, {}
        device = next(iter(now.values())).device
        if self.nonzero is None or self.nonzero.device != device:
            self.nonzero = torch.zeros(len(self.keys), dtype=torch.int64, device=device)
        zero = None
        if len(now) < len(self.keys):
            zero = torch.zeros((), dtype=torch.int64, device=device)
        counts = torch.stack([now.get(k, zero) for k in self.keys])
        if weight != 1:
            counts = counts * weight
        self.nonzero += counts
        for key, n in numel.items():
            self.seen[key] = self.seen.get(key, 0) + n * weight

    def reset(self) -> None:
        if self.nonzero is not None:
            self.nonzero.zero_()
        self.seen = dict.fromkeys(self.keys, 0)
        self._now, self._numel = {}, {}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.nonzero is None else {"nonzero": self.nonzero}

    def share(self, values: dict[str, torch.Tensor], key: Hashable) -> float | None:
        """Non-zero share of the sampled entries of `key`, or None when none were sampled."""
        if not self.seen.get(key) or "nonzero" not in values:
            return None
        return float(values["nonzero"][self.keys.index(key)]) / self.seen[key]
