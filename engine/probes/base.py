"""The contracts of the probes: `Probes` (the training loop's only plug point for them) and
`Quantity` (one measured thing inside a `ProbeSet`).

The loop calls the `Probes` hooks in this order: `set_run_id`, `attach`, `init_stats` (fresh
runs only), then per epoch `epoch_start`, per step `after_backward` and `after_step`,
`step_stats` whenever the loop publishes step statistics, `epoch_stats` after validation;
`detach` when the run ends however it ends; `final_stats` once after a finished or
early-stopped run, on a model holding the best checkpoint's weights. `nonfinite_layer` is
asked when a loss turned NaN or inf. Lightning's `Callback` is the model.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from ..data import DataSplits
    from ..events import LayerStats, StepStats
    from .report import Report
    from .schedules import StepSchedule
    from .step_record import StepRecord
    from .watched import Layer, LayerMap


@runtime_checkable
class Probes(Protocol):
    """What the training loop calls; `NoProbes` is the do-nothing implementation."""

    def set_run_id(self, run_id: str) -> None:
        """Called once before `attach`: the id the probes stamp on their events (and seed from)."""

    def attach(self, model: nn.Module) -> None:
        """Called before the first step and after every hot swap: register hooks on `model`."""

    def detach(self) -> None:
        """Called when the run ends (also on failure) and before a hot swap: remove every hook."""

    def init_stats(self, model: nn.Module, data: "DataSplits") -> "LayerStats | None":
        """Called once at initialisation of a fresh run (epoch 0), before any step."""

    def epoch_start(self, epoch: int, steps: int | None = None) -> None:
        """Called before the first step of each epoch (also of a resumed, partial epoch);
        `steps`: how many steps this call's epoch will run (None when the caller cannot say)."""

    def after_backward(self, model: nn.Module) -> None:
        """Called after `loss.backward()`, before the optimizer step: gradients are current."""

    def after_step(self, model: nn.Module) -> None:
        """Called after the optimizer step: weights are the new ones."""

    def step_stats(self, epoch: int) -> "StepStats | None":
        """Called on the loop's step-statistics interval and at epoch end: per-step rows so far."""

    def epoch_stats(self, epoch: int, model: nn.Module, data: "DataSplits") -> "LayerStats | None":
        """Called after validation of each epoch: the epoch's per-layer statistics."""

    def final_stats(self, model: nn.Module, data: "DataSplits") -> "LayerStats | None":
        """Called once at the end of a finished or early-stopped run (not a stopped, failed or
        diverged one), after `detach`, with `model` holding the best checkpoint's weights: the
        "trained" table, emitted with `epoch = metrics.TRAINED_EPOCH` (-1)."""

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

    def epoch_start(self, epoch: int, steps: int | None = None) -> None:
        return None

    def after_backward(self, model: nn.Module) -> None:
        return None

    def after_step(self, model: nn.Module) -> None:
        return None

    def step_stats(self, epoch: int) -> "StepStats | None":
        return None

    def epoch_stats(self, epoch: int, model: nn.Module, data: "DataSplits") -> "LayerStats | None":
        return None

    def final_stats(self, model: nn.Module, data: "DataSplits") -> "LayerStats | None":
        return None

    def nonfinite_layer(self) -> str | None:
        return None


# --- quantities ---------------------------------------------------------------------------

class Moment(enum.Enum):
    """When a `LayerStats` report is made."""

    INIT = "init"  # epoch 0: before training (a pass over the training split, one init batch)
    EPOCH = "epoch"  # after each epoch's validation
    TRAINED = "trained"  # after training, on the best checkpoint's weights (metrics.TRAINED_EPOCH)


@runtime_checkable
class Quantity(Protocol):
    """One measured thing of a `ProbeSet` (Cockpit's `quantities/` is the model).

    The set owns the hooks (one per watched layer) and the shared per-step record
    (`step_record.StepRecord`: one value per neuron of every watched layer, one ring row per
    step); a quantity says which parts of the record it reads (`records`), which steps it
    observes itself (`steps`), and gets, on those steps only, the calls below. The init batch
    is epoch 0's one step. `QuantityBase` does nothing in every call: a new quantity is one
    module with a `QuantityBase` subclass plus a line in `probe_set.QUANTITIES`.
    """

    #: the training steps on which `forward`, `backward` and `step_end` are called
    steps: "StepSchedule"
    #: parts of the shared step record it reads (`step_record.ACTIVATION_OUTPUTS`, ...)
    records: frozenset[str]

    def watches(self, layer: "Layer") -> bool:
        """Whether `forward` and `evaluate` want this layer's outputs."""

    def attach(self, layers: "LayerMap", record: "StepRecord") -> None:
        """The model's layers were found (first attach and every hot swap); keep what layers
        that are still there gathered."""

    def epoch_start(self, epoch: int) -> None:
        """A new epoch (0: the init batch): forget the previous one's accumulators."""

    def forward(self, layer: "Layer", z: torch.Tensor | None, y: torch.Tensor) -> None:
        """A training batch went through a watched layer (once per call of its module): input z,
        output y."""

    def backward(self, grads: list[torch.Tensor]) -> None:
        """The step's weight gradients, one per linear layer in `LayerMap.linears` order."""

    def step_end(self) -> None:
        """The optimizer step of an observed step is done."""

    def evaluate(self, layer: "Layer", y: torch.Tensor) -> None:
        """An eval-mode, no-grad pass the loop makes anyway (validation) went through a layer."""

    def begin_pass(self, moment: Moment, epoch: int, layers: "LayerMap", rows: int) -> int:
        """Rows of the training split (of `rows`) this quantity wants from the probes' own
        eval-mode pass at this moment; 0 for none. `layers` are the pass's model's."""

    def pass_output(self, layer: "Layer", y: torch.Tensor, first_row: int) -> None:
        """An activation layer's output on rows `first_row`... of the probes' own pass."""

    def report(self, moment: Moment, epoch: int, report: "Report") -> None:
        """Queue this quantity's device tensors and the metrics computed from them."""

    def step_series(self) -> "tuple[int, dict[str, dict[str, list[float]]]] | None":
        """Per-step values gathered since the last call: (first step, {layer: {metric: [...]}})."""

    def nonfinite_layer(self) -> str | None:
        """The first layer where a NaN/inf appeared, if this quantity watches for them."""


class QuantityBase:
    """A quantity that does nothing; subclasses override what they measure."""

    records: frozenset[str] = frozenset()

    def __init__(self, steps: "StepSchedule | None" = None) -> None:
        from .schedules import Never

        self.steps = steps if steps is not None else Never()

    def watches(self, layer: "Layer") -> bool:
        return False

    def attach(self, layers: "LayerMap", record: "StepRecord") -> None:
        return None

    def epoch_start(self, epoch: int) -> None:
        return None

    def forward(self, layer: "Layer", z: torch.Tensor | None, y: torch.Tensor) -> None:
        return None

    def backward(self, grads: list[torch.Tensor]) -> None:
        return None

    def step_end(self) -> None:
        return None

    def evaluate(self, layer: "Layer", y: torch.Tensor) -> None:
        return None

    def begin_pass(self, moment: Moment, epoch: int, layers: "LayerMap", rows: int) -> int:
        return 0

    def pass_output(self, layer: "Layer", y: torch.Tensor, first_row: int) -> None:
        return None

    def report(self, moment: Moment, epoch: int, report: "Report") -> None:
        return None

    def step_series(self) -> "tuple[int, dict[str, dict[str, list[float]]]] | None":
        return None

    def nonfinite_layer(self) -> str | None:
        return None
