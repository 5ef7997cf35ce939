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
from .rates import SampledRates
from .schedules import Clock
from .step_record import GRADIENTS, StepRecord
from .watched import LayerMap


def gradient_rate_metrics(zero_steps: torch.Tensor, steps: int, activation_rate: float | None) -> dict[str, float]:
    """grad_death_rate, grad_dead_live (zero gradient in every step), grad_activation_rate."""
    size = zero_steps.numel()
    out = {metrics.GRAD_DEATH_RATE: float(zero_steps.sum()) / max(1, size * steps),
           metrics.GRAD_DEAD_LIVE: int((zero_steps == steps).sum()) if steps else 0}
    if activation_rate is not None:
        out[metrics.GRAD_ACTIVATION_RATE] = activation_rate
    return out


class GradientRates(SampledRates):
    """grad_death_rate, grad_dead_live (every step, from the step record) and
    grad_activation_rate (sampled steps), under the activation each linear layer feeds."""

    records = frozenset({GRADIENTS})
    kind = "grad"
    rate_metrics = staticmethod(gradient_rate_metrics)

    @classmethod
    def from_config(cls, config: ProbesConfig, clock: Clock) -> "GradientRates | None":
        return cls(clock, sample_every=config.sample_every) if config.grad_rates else None

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        self.attach_names(record, [layer.name for layer in layers.linears])
        self.owners = layers.paired_linears

    def recorded(self, record: StepRecord) -> bool:
        return bool(record.gradients)

    def backward(self, grads: list[torch.Tensor]) -> None:
        for name, g in zip(self.names, grads):
            self.sampled.observe(name, g)
