"""Gradient-based activation and death rates (monitorch's ParameterGradientActivation lens).

A neuron is *dead in a step* when its weight row and its bias in the linear layer feeding it
have all-zero gradients. This needs no activation module, so it works for any activation,
even a functional one. Reported under the activation layer the linear layer feeds (or under
the linear layer itself when it feeds none):

- `grad_death_rate`: the share of neurons dead in a step, averaged over every step (from the
  shared step record: the bias gradient, or the row's max |g| without a bias, is the
  per-neuron value); `grad_dead_live`: neurons dead in every step of the epoch;
- `grad_activation_rate`: the share of non-zero weight-gradient entries, over random steps
  spread across the epoch (`schedules.StratifiedSample`, the estimator of `rates.py`).
"""

from __future__ import annotations

import torch

from .. import metrics
from ..config import ProbesConfig
from .base import Moment, QuantityBase
from .neurons import SampledNonzero
from .report import Report
from .schedules import Clock, StratifiedSample
from .step_record import GRADIENTS, StepRecord, report_rates
from .watched import LayerMap


def gradient_rate_metrics(zero_steps: torch.Tensor, steps: int, activation_rate: float | None) -> dict[str, float]:
    """grad_death_rate, grad_dead_live (zero gradient in every step), grad_activation_rate."""
    size = zero_steps.numel()
    out = {metrics.GRAD_DEATH_RATE: float(zero_steps.sum()) / max(1, size * steps),
           metrics.GRAD_DEAD_LIVE: int((zero_steps == steps).sum()) if steps else 0}
    if activation_rate is not None:
        out[metrics.GRAD_ACTIVATION_RATE] = activation_rate
    return out


class GradientRates(QuantityBase):
    """grad_death_rate, grad_dead_live (every step, from the step record) and
    grad_activation_rate (sampled steps), under the activation each linear layer feeds."""

    records = frozenset({GRADIENTS})

    def __init__(self, clock: Clock, *, sample_every: int = 64) -> None:
        super().__init__(StratifiedSample(sample_every))
        self.clock = clock
        self._record: StepRecord | None = None
        self._names: list[str] = []
        self._owners: dict[str, str] = {}
        self._sampled: SampledNonzero | None = None

    @classmethod
    def from_config(cls, config: ProbesConfig, clock: Clock) -> "GradientRates | None":
        return cls(clock, sample_every=config.sample_every) if config.grad_rates else None

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        self._record = record
        self._names = [layer.name for layer in layers.linears]
        self._owners = layers.paired_linears
        if self._sampled is None or self._sampled.keys != self._names:
            self._sampled = SampledNonzero(self._names)

    def epoch_start(self, epoch: int) -> None:
        if self._sampled is not None:
            self._sampled.reset()

    def backward(self, grads: list[torch.Tensor]) -> None:
        for name, g in zip(self._names, grads):
            self._sampled.observe(name, g)

    def step_end(self) -> None:
        self._sampled.end_step(self.steps.weight(self.clock.step))

    def report(self, moment: Moment, epoch: int, report: Report) -> None:
        record = self._record
        if moment is Moment.TRAINED or record is None or not record.gradients:
            return
        report_rates(report, record, self._sampled, "grad", self._names, gradient_rate_metrics, self._owners)
