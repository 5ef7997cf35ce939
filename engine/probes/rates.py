"""Activation and death rates, from layer outputs and from parameter gradients.

The two definitions follow monitorch's lenses (REFERENCE.md section 4):

- Output based (`OutputRates`, monitorch's OutputActivation): an output is *active* when it
  is not exactly zero. A neuron (a feature, or a channel of a conv layer) is *dead on a
  batch* when none of its outputs in that batch is active; the *death rate* is the share of
  neurons dead on a batch, averaged over the epoch's training batches. The *activation
  rate* is the share of active outputs; it is counted on the sampled rows of the sampled
  batches (`sample_rows`, `sample_every`), an unbiased estimate that costs a fraction of an
  exact count. The per-batch maxima also give the *live dead* count: neurons never active
  in any training batch of the epoch (`dead.py` has the exact full-pass count).
- Gradient based (`GradientRates`, monitorch's ParameterGradientActivation): a neuron is
  *dead in a step* when its weight row and its bias have all-zero gradients. This needs no
  activation module, so it works for any activation, even a functional one. The gradient
  death rate is the share of neurons dead in a step, averaged over the steps; the gradient
  activation rate the share of non-zero weight-gradient entries (sampled steps only).

Cost: per batch, one max-reduction per layer (|y| per neuron) and a few ops on vectors of
one value per neuron. A layer with a bias is judged by its bias gradient, which is zero
exactly when the row's is (both are sums of the same per-sample errors; only an exact
floating-point cancellation could tell them apart); a layer without one by its rows.
Everything accumulates on the device; nothing here reads a value back.
"""

from __future__ import annotations

import torch


def neuron_reduce_dims(t: torch.Tensor) -> tuple[int, ...]:
    """All dims but dim 1 (features or channels): (0,) for (B, C), (0, 2, 3) for (B, C, H, W)."""
    return (0, *range(2, t.dim()))


def neuron_max_abs(output: torch.Tensor, nonnegative: bool = False) -> torch.Tensor:
    """Per neuron, the largest |output| of the batch (C,); zero exactly when the neuron was dead.

    NaN and inf propagate, so the result also tells whether the outputs were finite.
    `nonnegative` (ReLU-like outputs) skips the abs.
    """
    y = output.detach()
    if y.dim() < 2:
        y = y.reshape(1, -1)
    return (y if nonnegative else y.abs()).amax(neuron_reduce_dims(y))


class OutputRates:
    """Output-based death rate, activation rate and never-active neurons of one layer."""

    def __init__(self, nonnegative: bool = False) -> None:
        self.nonnegative = nonnegative
        self.max_abs: torch.Tensor | None = None  # (C,) largest |output| of the epoch per neuron
        self.dead_batches: torch.Tensor | None = None  # (C,) batches on which the neuron was dead
        self.active: torch.Tensor | None = None  # () active outputs among the sampled ones
        self.batches = 0
        self.sampled = 0  # outputs sampled for the activation rate

    def observe(self, output: torch.Tensor, sample_rows: int = 0) -> torch.Tensor:
        """One training batch (B, C, ...); its first `sample_rows` rows count towards the
        activation rate. Returns the per-neuron max |output| (for the non-finite watch)."""
        m = neuron_max_abs(output, self.nonnegative)
        if self.max_abs is None or self.max_abs.shape != m.shape or self.max_abs.device != m.device:
            self.max_abs = torch.zeros_like(m)
            self.dead_batches = torch.zeros(m.shape, dtype=torch.int64, device=m.device)
            self.active = torch.zeros((), dtype=torch.int64, device=m.device)
            self.batches = self.sampled = 0
        torch.maximum(self.max_abs, m, out=self.max_abs)
        self.dead_batches += m == 0
        self.batches += 1
        if sample_rows > 0:
            rows = output.detach()[:sample_rows]
            self.active += torch.count_nonzero(rows)
            self.sampled += rows.numel()
        return m

    def reset(self) -> None:
        if self.max_abs is not None:
            self.max_abs.zero_()
            self.dead_batches.zero_()
            self.active.zero_()
        self.batches = self.sampled = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        """Device tensors to read back (empty before the first batch)."""
        if self.max_abs is None or self.batches == 0:
            return {}
        return {"max_abs": self.max_abs, "dead_batches": self.dead_batches, "active": self.active}

    def summarize(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """size, death_rate, dead_live(_frac), activation_rate (when sampled), max_abs."""
        if not values:
            return {}
        max_abs, dead_batches = values["max_abs"], values["dead_batches"]
        size = max_abs.numel()
        dead = int((max_abs == 0).sum())
        out = {
            "size": size,
            "death_rate": float(dead_batches.sum()) / max(1, size * self.batches),
            "dead_live": dead,
            "dead_live_frac": dead / max(1, size),
            "max_abs": float(max_abs.max()) if size else 0.0,
        }
        if self.sampled:
            out["activation_rate"] = float(values["active"]) / self.sampled
        return out


class GradientRates:
    """Gradient-based death rate (and sampled activation rate) of one Linear/Conv layer's neurons."""

    def __init__(self) -> None:
        self.dead_steps: torch.Tensor | None = None  # (C,) steps with all-zero row and bias gradients
        self.nonzero: torch.Tensor | None = None  # () non-zero weight-gradient entries, sampled steps
        self.steps = 0
        self.entries = 0

    def observe(self, weight_grad: torch.Tensor, bias_grad: torch.Tensor | None = None, *,
                sampled: bool = False) -> None:
        """One step's gradients: weight (C, ...) and bias (C,) or None."""
        g = weight_grad.detach()
        if bias_grad is not None:
            dead = bias_grad.detach() == 0
        else:
            dead = g.flatten(1).abs().amax(1) == 0
        if self.dead_steps is None or self.dead_steps.shape != dead.shape or self.dead_steps.device != dead.device:
            self.dead_steps = torch.zeros(dead.shape, dtype=torch.int64, device=dead.device)
            self.nonzero = torch.zeros((), dtype=torch.int64, device=dead.device)
            self.steps = self.entries = 0
        self.dead_steps += dead
        self.steps += 1
        if sampled:
            self.nonzero += torch.count_nonzero(g)
            self.entries += g.numel()

    def reset(self) -> None:
        if self.dead_steps is not None:
            self.dead_steps.zero_()
            self.nonzero.zero_()
        self.steps = self.entries = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.dead_steps is None or self.steps == 0:
            return {}
        return {"dead_steps": self.dead_steps, "nonzero": self.nonzero}

    def summarize(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """grad_death_rate, grad_dead_live (zero gradient in every step), grad_activation_rate."""
        if not values:
            return {}
        dead_steps = values["dead_steps"]
        size = dead_steps.numel()
        out = {
            "grad_death_rate": float(dead_steps.sum()) / max(1, size * self.steps),
            "grad_dead_live": int((dead_steps == self.steps).sum()),
        }
        if self.entries:
            out["grad_activation_rate"] = float(values["nonzero"]) / self.entries
        return out
