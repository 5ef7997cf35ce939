"""Weight drift of the linear layers (Cockpit's UpdateSize and Distance quantities).

Per epoch: the update-to-weight ratio log10(||W_end - W_start|| / ||W_end||) of the epoch's
whole update (absent for a zero update, so at initialisation), the distance ||W - W_0|| from
the weights the probes first saw (the initialisation for a fresh run, the resumed weights on
a resume) and ||W||. Two copies of the weights are kept on the device; nothing per step.
"""

from __future__ import annotations

import math

import torch

from .. import metrics
from ..config import ProbesConfig
from .base import Moment, QuantityBase
from .readback import float_accumulator_dtype
from .report import Report
from .schedules import Clock
from .step_record import StepRecord
from .watched import LayerMap


class WeightDrift:
    """Update-to-weight ratio per epoch and distance from the first weights seen."""

    def __init__(self) -> None:
        self.initial: dict[str, torch.Tensor] = {}
        self.start: dict[str, torch.Tensor] = {}

    def set_initial(self, weights: dict[str, torch.Tensor]) -> None:
        """Remember the weights of layers not seen before (kept across detach/attach)."""
        for name, w in weights.items():
            if name not in self.initial or self.initial[name].shape != w.shape:
                self.initial[name] = w.detach().clone()

    def epoch_start(self, weights: dict[str, torch.Tensor]) -> None:
        for name, w in weights.items():
            buf = self.start.get(name)
            if buf is None or buf.shape != w.shape or buf.device != w.device:
                self.start[name] = w.detach().clone()
            else:
                buf.copy_(w.detach())

    def tensors(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """(3,) per layer on the device: ||W||, ||W - W_start||, ||W - W_0||."""
        out = {}
        dtype = float_accumulator_dtype(next(iter(weights.values())).device) if weights else torch.float64
        for name, w in weights.items():
            w = w.detach()
            parts = [torch.linalg.vector_norm(w)]
            parts.append(torch.linalg.vector_norm(w - self.start[name]) if name in self.start
                         else torch.full((), math.nan, device=w.device))
            parts.append(torch.linalg.vector_norm(w - self.initial[name]) if name in self.initial
                         else torch.full((), math.nan, device=w.device))
            out[name] = torch.stack(parts).to(dtype)
        return out

    @staticmethod
    def summarize(values: torch.Tensor) -> dict[str, float]:
        """weight_norm, update_ratio_log10 (absent for a zero update), dist_from_init."""
        norm, update, dist = (float(v) for v in values)
        out = {metrics.WEIGHT_NORM: norm}
        if update > 0 and norm > 0 and math.isfinite(update):
            out[metrics.UPDATE_RATIO_LOG10] = math.log10(update / norm)
        if math.isfinite(dist):
            out[metrics.DIST_FROM_INIT] = dist
        return out


class Weights(QuantityBase):
    """update_ratio_log10, dist_from_init, weight_norm per linear layer, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.drift = WeightDrift()
        self._weights: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, config: ProbesConfig, clock: Clock) -> "Weights | None":
        return cls() if config.weights else None

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        self._weights = {layer.name: layer.module.weight for layer in layers.linears}
        self.drift.set_initial(self._weights)

    def epoch_start(self, epoch: int) -> None:
        self.drift.epoch_start(self._weights)

    def report(self, moment: Moment, epoch: int, report: Report) -> None:
        if moment is Moment.TRAINED:
            return
        for name, values in self.drift.tensors(self._weights).items():
            report.tensor(("drift", name), values)
            report.then(lambda host, name=name: report.metrics(name).update(
                WeightDrift.summarize(host[("drift", name)])))
