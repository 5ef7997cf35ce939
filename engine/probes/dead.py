"""Dead neurons, the reference's headline number.

A neuron is *dead* when its activation output is exactly zero for every sample of the
training split (shared/REFERENCE.md section 3). Two counts:

- exact (`ExactDead`, `exact_dead_counts`): a no-grad, eval-mode pass over the whole split,
  one forward pass over the training data. It runs at initialisation (epoch 0), once after
  training on the best checkpoint's weights (the reference's "trained" table,
  `metrics.TRAINED_EPOCH`), and every `dead_exact_every` epochs only when asked (default 0:
  never between the two);
- live (`dead_live`): neurons not active on any training batch of the epoch, read from the
  shared step record (`step_record.py`) the training forward passes fill anyway. It costs
  almost nothing, so it is the per-epoch count; it mixes weights from the start and the end
  of the epoch (and sees dropout's input, as the exact pass does); with unchanged weights
  both counts agree (tested).

For a conv layer the neuron is a channel: dead when it is zero at every position of every
sample. A module that runs several times in one forward pass has the units of all its calls
side by side (see `step_record.py`): a unit is dead when it is zero in its own call on every
sample.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import metrics
from ..config import ProbesConfig
from .base import Moment, QuantityBase
from .hooks import inspect_pass
from .neurons import neuron_max_abs
from .readback import read_back
from .report import Host, Report
from .schedules import Clock
from .step_record import ACTIVATION_OUTPUTS, DROPOUT_OUTPUTS, StepRecord
from .watched import Layer, LayerMap, find_layers


class ExactDead:
    """Per-neuron "ever non-zero" flags of one layer over a pass (each call of the module in a
    forward pass has its own units: `first_row` tells calls of one chunk from the next chunk)."""

    def __init__(self, nonnegative: bool = False) -> None:
        self.nonnegative = nonnegative  # ReLU-like outputs: skip the abs
        self.calls: list[torch.Tensor] = []  # (C,) bool per call of the module in a forward pass
        self._chunk: int | None = None
        self._call = 0

    @property
    def alive(self) -> torch.Tensor | None:
        if not self.calls:
            return None
        return self.calls[0] if len(self.calls) == 1 else torch.cat(self.calls)

    def observe(self, output: torch.Tensor, first_row: int | None = None) -> None:
        """One call's output on a chunk starting at row `first_row` of the pass; a repeated
        `first_row` is the module's next call on the same chunk (None: always a new chunk)."""
        call = self._call + 1 if first_row is not None and first_row == self._chunk else 0
        self._chunk, self._call = first_row, call
        alive = neuron_max_abs(output, self.nonnegative) != 0
        if call >= len(self.calls):
            self.calls.append(alive)
        elif self.calls[call].shape != alive.shape or self.calls[call].device != alive.device:
            self.calls[call] = alive
        else:
            self.calls[call] |= alive

    def reset(self) -> None:
        self.calls, self._chunk, self._call = [], None, 0

    def tensors(self) -> dict[str, torch.Tensor]:
        alive = self.alive
        return {} if alive is None else {"alive": alive}

    @staticmethod
    def summarize(values: dict[str, torch.Tensor]) -> dict[str, float]:
        """size, dead_exact, dead_exact_frac."""
        if not values:
            return {}
        alive = values["alive"]
        size = alive.numel()
        dead = size - int(alive.sum())
        return {metrics.SIZE: size, metrics.DEAD_EXACT: dead, metrics.DEAD_EXACT_FRAC: dead / max(1, size)}


def exact_dead_counts(model: nn.Module, x: torch.Tensor, *, batch_size: int = 8192) -> dict[str, int]:
    """Dead neurons per activation layer over all rows of `x` (one eval-mode no-grad pass)."""
    layers = find_layers(model).activations
    counters = {layer.name: ExactDead(layer.nonnegative) for layer in layers}
    inspect_pass(model, x, layers, lambda layer, z, y, start: counters[layer.name].observe(y, start),
                 batch_size=batch_size)
    alive = {name: c.alive for name, c in counters.items() if c.alive is not None}
    if not alive:
        return {}
    host = read_back(alive)
    return {name: int(host[name].numel() - host[name].sum()) for name in host}


def live_dead_metrics(zero_batches: torch.Tensor, batches: int) -> dict[str, float]:
    """size, dead_live, dead_live_frac from one layer's per-neuron dead-batch counts."""
    size = zero_batches.numel()
    dead = int((zero_batches == batches).sum()) if batches else 0
    return {metrics.SIZE: size, metrics.DEAD_LIVE: dead, metrics.DEAD_LIVE_FRAC: dead / max(1, size)}


class DeadNeurons(QuantityBase):
    """Exact dead counts (own pass: init, trained, every `dead_exact_every` epochs when asked)
    and the live count of every epoch (from the step record, when `rates` is on)."""

    def __init__(self, exact_every: int = 0, live: bool = True) -> None:
        super().__init__()
        self.exact_every = exact_every
        self.live = live
        self.records = frozenset({ACTIVATION_OUTPUTS, DROPOUT_OUTPUTS}) if live else frozenset()
        self._record: StepRecord | None = None
        self._exact: dict[str, ExactDead] = {}

    @classmethod
    def from_config(cls, config: ProbesConfig, clock: Clock) -> "DeadNeurons":
        return cls(config.dead_exact_every, config.rates)

    def exact_due(self, moment: Moment, epoch: int) -> bool:
        """The exact pass's schedule: init, trained, and every N-th epoch when N > 0."""
        if moment is not Moment.EPOCH:
            return True
        return self.exact_every > 0 and epoch % self.exact_every == 0

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        self._record = record

    def begin_pass(self, moment: Moment, epoch: int, layers: LayerMap, rows: int) -> int:
        if not self.exact_due(moment, epoch):
            self._exact = {}
            return 0
        self._exact = {a.name: ExactDead(a.nonnegative) for a in layers.activations}
        return rows

    def pass_output(self, layer: Layer, y: torch.Tensor, first_row: int) -> None:
        counter = self._exact.get(layer.name)
        if counter is not None:
            counter.observe(y, first_row)

    def report(self, moment: Moment, epoch: int, report: Report) -> None:
        exact, self._exact = self._exact, {}
        for name, counter in exact.items():
            alive = counter.alive
            if alive is not None:
                report.tensor(("dead_exact", name), alive)
                report.then(lambda host, name=name: report.metrics(name).update(
                    ExactDead.summarize({"alive": host[("dead_exact", name)]})))
        record = self._record
        if moment is Moment.EPOCH and self.live and record is not None and record.outputs:
            record.fold()
            zeros = record.zeros
            if zeros.tensors():
                report.tensor("zeros", zeros.counts)
                steps = zeros.steps

                def live(host: Host) -> None:
                    values = {"zeros": host["zeros"]}
                    for name in record.outputs:
                        counts = zeros.segment(values, ("out", name))
                        if counts is not None:
                            report.metrics(name).update(live_dead_metrics(counts, steps))
                report.then(live)
