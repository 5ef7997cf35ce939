"""Output-based activation and death rates (monitorch's OutputActivation lens; the reference
experiments, shared/REFERENCE.md section 4).

An output is *active* when it is not exactly zero. A neuron (a feature, or a channel of a
conv layer) is *dead on a batch* when none of its outputs in that batch is active.

- `death_rate`: the share of neurons dead on a batch, averaged over every training batch of
  the epoch. Exact (no sampling): it comes from the shared step record (`step_record.py`),
  one value per neuron per step.
- `activation_rate`: the share of active outputs over the epoch's training batches,
  estimated from a sample. Estimator: the epoch's N steps are cut into k equal stretches
  (k = min(N, max(4, ceil(N / sample_every)))), one step is drawn at random from each
  (`schedules.StratifiedSample`, the probes' own seeded generator), and on it the first
  `sample_rows` rows of the batch are counted (batches are shuffled, so these are a random
  subset of the batch). Each drawn step is weighted by its stretch's length, so the estimate
  p^ = sum_s w_s a_s / sum_s w_s n_s (a_s active among the n_s counted outputs) is the
  stratified estimator of the epoch's rate p: unbiased (each step is drawn with probability
  1/L of its stretch's length L and weighted by L; batches have equal rows). Its error is a weighted mean of within-stretch deviations: never more
  than the largest spread of the per-step rate within one stretch, with standard deviation
  sqrt(sum_h (L_h/N)^2 var_h), var_h the variance of the per-step rate within stretch h of
  length L_h, plus the row-sampling term, at most about sqrt(p(1-p)/(k x rows x units))
  (less: units and rows are correlated). A rate that drifts through the epoch costs only its
  drift within one stretch: for a linear drift of size D the error is uniform-like with
  standard deviation D / (k^1.5 sqrt(12)) and never above D / (2k); with the defaults on
  FashionMNIST (195 steps, k = 4) and a drift of 0.1 in an epoch, about 0.004.
  tests/test_probes_sampling.py checks the bound, the bias and the spread on a drifting epoch.
  Drawing batches 0, 64, 128 instead (what this replaced) leaned to the epoch's start.

A module that runs several times in one forward pass (one `nn.ReLU` reused) counts every
call: its units are those of all calls side by side, so its activation rate is the share of
active outputs over all calls, and a neuron of each call is dead on a batch when that call's
outputs are all zero for it. Dropout layers are reported the same way (their zeros include
the dropped units).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from .. import metrics
from ..config import ProbesConfig
from .base import Moment, QuantityBase
from .neurons import SampledNonzero
from .report import Report
from .schedules import Clock, StratifiedSample
from .step_record import ACTIVATION_OUTPUTS, DROPOUT_OUTPUTS, RateMetrics, StepRecord, report_rates
from .watched import Layer, LayerMap


def output_rate_metrics(zero_batches: torch.Tensor, batches: int, activation_rate: float | None) -> dict[str, float]:
    """size, death_rate and activation_rate from one layer's read-back counts."""
    size = zero_batches.numel()
    out = {metrics.SIZE: size, metrics.DEATH_RATE: float(zero_batches.sum()) / max(1, size * batches)}
    if activation_rate is not None:
        out[metrics.ACTIVATION_RATE] = activation_rate
    return out


class SampledRates(QuantityBase):
    """What both rate probes share: the exact death rate from the step record and the sampled
    activation rate (`SampledNonzero` on the steps `StratifiedSample` draws), reported per layer
    of `names` by `report_rates` under the segment kind `kind`. A subclass feeds `sampled` and
    sets `names` (and `owners`, where a layer reports under another name) in `attach`."""

    kind: ClassVar[str] = ""
    rate_metrics: ClassVar[RateMetrics]  # set with staticmethod(...)

    def __init__(self, clock: Clock, *, sample_every: int = 64) -> None:
        super().__init__(StratifiedSample(sample_every))
        self.clock = clock
        self.step_record: StepRecord | None = None
        self.names: list[str] = []
        self.owners: dict[str, str] = {}
        self.sampled: SampledNonzero | None = None

    def attach_names(self, record: StepRecord, names: list[str]) -> None:
        """Watch `names` of `record` (keeps the sampled counts when the layers are the same)."""
        self.step_record, self.names = record, names
        if self.sampled is None or self.sampled.keys != names:
            self.sampled = SampledNonzero(names)

    def recorded(self, record: StepRecord) -> bool:
        """Whether the step record holds what this probe reads."""
        raise NotImplementedError

    def epoch_start(self, epoch: int) -> None:
        if self.sampled is not None:
            self.sampled.reset()

    def step_end(self) -> None:
        self.sampled.end_step(self.steps.weight(self.clock.step))

    def report(self, moment: Moment, epoch: int, report: Report) -> None:
        record = self.step_record
        if moment is Moment.TRAINED or record is None or not self.recorded(record):
            return
        report_rates(report, record, self.sampled, self.kind, self.names, self.rate_metrics, self.owners)


class OutputRates(SampledRates):
    """death_rate (every batch, from the step record) and activation_rate (sampled batches)."""

    records = frozenset({ACTIVATION_OUTPUTS, DROPOUT_OUTPUTS})
    kind = "out"
    rate_metrics = staticmethod(output_rate_metrics)

    def __init__(self, clock: Clock, *, sample_every: int = 64, sample_rows: int = 64) -> None:
        super().__init__(clock, sample_every=sample_every)
        self.sample_rows = sample_rows
        self._rows: int | None = sample_rows

    @classmethod
    def from_config(cls, config: ProbesConfig, clock: Clock) -> "OutputRates | None":
        if not config.rates:
            return None
        return cls(clock, sample_every=config.sample_every, sample_rows=config.sample_rows)

    def watches(self, layer: Layer) -> bool:
        return self.step_record is not None and layer.name in self.step_record.outputs

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        self.attach_names(record, list(record.outputs))

    def recorded(self, record: StepRecord) -> bool:
        return bool(record.outputs)

    def epoch_start(self, epoch: int) -> None:
        self._rows = None if epoch == 0 else self.sample_rows  # the init batch counts every row
        super().epoch_start(epoch)

    def forward(self, layer: Layer, z: torch.Tensor | None, y: torch.Tensor) -> None:
        self.sampled.observe(layer.name, y if self._rows is None else y[: self._rows])
