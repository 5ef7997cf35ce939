"""Saturation of smooth activations, and the pre-activation's mean and spread.

Sigmoid and tanh never output exact zeros, so dead counts miss their failure: their units
*saturate*, sitting where the derivative f'(z) is nearly zero so that no gradient passes.
The saturation of a layer is the share of its units with |f'(z)| below a threshold
(1e-3 by default); with it come the mean and standard deviation of the pre-activation z (the
activation's input) over the same units. They are counted on the first `sample_rows` rows
of random training batches spread over the epoch, each weighted by the stretch of the epoch
it stands for (the stratified estimator of `rates.py`, same schedule and error analysis); at
initialisation on the whole init batch. Every call of a module that runs several times in a
forward pass counts.

f'(z) comes from a closed form where one is known and exact (sigmoid: y(1 - y), tanh:
1 - y^2, relu: [z > 0], computed from the outputs already at hand), else from autograd on
the sampled rows through the module's `forward` (hooks are not re-entered, parameters
receive no gradient). Elementwise activations only: f'(z) is the gradient of sum(f(z)).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import metrics
from ..config import ProbesConfig
from .base import Moment, QuantityBase
from .readback import float_accumulator_dtype
from .report import Report
from .schedules import Clock, StratifiedSample
from .step_record import StepRecord
from .watched import Layer, LayerMap, activation_kind


def derivative(module: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """f'(z) elementwise for an elementwise activation module (y = f(z) when at hand)."""
    kind = activation_kind(module)
    z = z.detach()
    if y is not None and kind in ("sigmoid", "tanh"):
        y = y.detach()
        return y * (1 - y) if kind == "sigmoid" else 1 - y * y
    if kind == "relu":
        return (z > 0).to(z.dtype)
    with torch.enable_grad():
        leaf = z.clone().requires_grad_(True)
        out = module.forward(leaf)  # forward, not __call__: the probes' own hooks stay quiet
        (grad,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    return grad


class SaturationSums:
    """Share of |f'(z)| < threshold, and sums for the mean/std of z, over the units observed
    (each observation weighted by the steps it stands for)."""

    def __init__(self, threshold: float = 1e-3) -> None:
        self.threshold = threshold
        self.sums: torch.Tensor | None = None  # (3,) saturated units, sum z, sum z^2 (weighted)
        self.units = 0  # weighted

    def observe(self, module: nn.Module, z: torch.Tensor, y: torch.Tensor | None, weight: int = 1) -> None:
        """Pre-activations `z` and outputs `y` (rows already sampled by the caller)."""
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            return
        zs = z.detach()
        ys = y.detach() if isinstance(y, torch.Tensor) else None
        d = derivative(module, zs, ys)
        dtype = float_accumulator_dtype(zs.device)
        flat = zs.reshape(-1)
        stats = torch.stack([(d.abs() < self.threshold).sum().to(dtype), flat.sum(dtype=dtype),
                             torch.dot(flat, flat).to(dtype)])
        if self.sums is None or self.sums.device != stats.device:
            self.sums = torch.zeros(3, dtype=dtype, device=stats.device)
            self.units = 0
        if weight != 1:
            stats = stats * weight
        self.sums += stats
        self.units += flat.numel() * weight

    def reset(self) -> None:
        if self.sums is not None:
            self.sums.zero_()
        self.units = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.sums is None or self.units == 0 else {"sums": self.sums}

    def summarize(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """saturation (share of units), z_mean, z_std (population) over the sampled units."""
        if not values:
            return {}
        below, s1, s2 = (float(v) for v in values["sums"])
        n = max(1, self.units)
        mean = s1 / n
        return {metrics.SATURATION: below / n, metrics.Z_MEAN: mean,
                metrics.Z_STD: max(0.0, s2 / n - mean * mean) ** 0.5}


class Saturation(QuantityBase):
    """saturation, z_mean, z_std per activation layer, on sampled batches."""

    def __init__(self, clock: Clock, *, threshold: float = 1e-3, sample_every: int = 64,
                 sample_rows: int = 64) -> None:
        super().__init__(StratifiedSample(sample_every))
        self.clock, self.threshold, self.sample_rows = clock, threshold, sample_rows
        self._rows: int | None = sample_rows
        self._sums: dict[str, SaturationSums] = {}

    @classmethod
    def from_config(cls, config: ProbesConfig, clock: Clock) -> "Saturation | None":
        if not config.saturation:
            return None
        return cls(clock, threshold=config.saturation_threshold, sample_every=config.sample_every,
                   sample_rows=config.sample_rows)

    def watches(self, layer: Layer) -> bool:
        return layer.name in self._sums

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        self._sums = {a.name: self._sums.get(a.name) or SaturationSums(self.threshold) for a in layers.activations}

    def epoch_start(self, epoch: int) -> None:
        self._rows = None if epoch == 0 else self.sample_rows  # the init batch counts every row
        for sums in self._sums.values():
            sums.reset()

    def forward(self, layer: Layer, z: torch.Tensor | None, y: torch.Tensor) -> None:
        if z is None:
            return
        rows = self._rows
        self._sums[layer.name].observe(layer.module, z if rows is None else z[:rows], y if rows is None else y[:rows],
                                       self.steps.weight(self.clock.step))

    def report(self, moment: Moment, epoch: int, report: Report) -> None:
        if moment is Moment.TRAINED:
            return
        for name, sums in self._sums.items():
            own = sums.tensors()
            if own:
                report.tensor(("saturation", name), own["sums"])
                report.then(lambda host, name=name, sums=sums: report.metrics(name).update(
                    sums.summarize({"sums": host[("saturation", name)]})))
