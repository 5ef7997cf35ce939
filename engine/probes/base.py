"""The contract between the training loop and the probes (the loop's only plug point for them).

The loop calls these hooks in this order: `set_run_id`, `attach`, `init_stats` (fresh runs
only), then per epoch `epoch_start`, per step `after_backward` and `after_step`, `step_stats`
whenever the loop publishes step statistics, `epoch_stats` after validation; `detach` when
the run ends however it ends. `nonfinite_layer` is asked when a loss turned NaN or inf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from torch import nn

if TYPE_CHECKING:
    from ..data import DataSplits
    from ..events import LayerStats, StepStats


@runtime_checkable
class Probes(Protocol):
    """What the training loop calls; `NoProbes` is the do-nothing implementation."""

    def set_run_id(self, run_id: str) -> None:
        """Called once before `attach`: the id the probes stamp on their events."""

    def attach(self, model: nn.Module) -> None:
        """Called before the first step and after every hot swap: register hooks on `model`."""

    def detach(self) -> None:
        """Called when the run ends (also on failure) and before a hot swap: remove every hook."""

    def init_stats(self, model: nn.Module, data: "DataSplits") -> "LayerStats | None":
        """Called once at initialisation of a fresh run (epoch 0), before any step."""

    def epoch_start(self, epoch: int) -> None:
        """Called before the first step of each epoch (also of a resumed, partial epoch)."""

    def after_backward(self, model: nn.Module) -> None:
        """Called after `loss.backward()`, before the optimizer step: gradients are current."""

    def after_step(self, model: nn.Module) -> None:
        """Called after the optimizer step: weights are the new ones."""

    def step_stats(self, epoch: int) -> "StepStats | None":
        """Called on the loop's step-statistics interval and at epoch end: per-step rows so far."""

    def epoch_stats(self, epoch: int, model: nn.Module, data: "DataSplits") -> "LayerStats | None":
        """Called after validation of each epoch: the epoch's per-layer statistics."""

    def nonfinite_layer(self) -> str | None:
        """Called when the loss turned non-finite: the first layer that produced NaN/inf, if known."""


class NoProbes:
    """Probes off: every hook does nothing."""

    run_id = ""

    def set_run_id(self, run_id: str) -> None:
        self.run_id = run_id

    def attach(self, model: nn.Module) -> None:
        return None

    def detach(self) -> None:
        return None

    def init_stats(self, model: nn.Module, data: "DataSplits") -> "LayerStats | None":
        return None

    def epoch_start(self, epoch: int) -> None:
        return None

    def after_backward(self, model: nn.Module) -> None:
        return None

    def after_step(self, model: nn.Module) -> None:
        return None

    def step_stats(self, epoch: int) -> "StepStats | None":
        return None

    def epoch_stats(self, epoch: int, model: nn.Module, data: "DataSplits") -> "LayerStats | None":
        return None

    def nonfinite_layer(self) -> str | None:
        return None
