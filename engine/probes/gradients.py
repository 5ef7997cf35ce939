"""Weight-gradient magnitudes of the linear layers, per step and per epoch.

- `grad_stats`: per layer, mean |g|, L2 norm and max |g| of the weight gradient, for all
  layers at once with `torch._foreach_norm` (one fused kernel per norm on CUDA, as
  `clip_grad_norm_` does), returned as one (layers, 3) device tensor.
- `GradientSeries`: those stats for every measured step (every step, or every
  `gradients_every`-th: three passes over the gradients cost about 4% of a CPU step of the
  lab's MLP), written into a device buffer and copied to the host in one go when the loop
  asks (about every 0.5 s) or when the buffer is full; it keeps at most `limit` steps between
  two reads (the oldest are dropped) and an epoch summary: mean over the measured steps of
  mean |g| and of the L2 norm, max over them of max |g|.
- `Gradients`: the quantity: the series on the first and every `gradients_every`-th step of
  each epoch (`schedules.EveryNth`), the init batch's stats at initialisation.
- `init_gradients`: the weight gradients of one batch at initialisation (eval mode, so no
  dropout and no random numbers drawn; `.grad` is left untouched).
"""

from __future__ import annotations

import math
from collections import deque

import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics
from ..config import ProbesConfig
from .base import Moment, QuantityBase
from .report import Report
from .schedules import Clock, EveryNth
from .step_record import StepRecord
from .watched import LayerMap

GRAD_METRICS = (metrics.GRAD_MEAN_ABS, metrics.GRAD_L2, metrics.GRAD_MAX)


def grad_stats(grads: list[torch.Tensor], inv_numel: torch.Tensor | None = None) -> torch.Tensor:
    """(len(grads), 3) float32 tensor: mean |g|, L2 norm, max |g| of each gradient.

    On CUDA the three norms are fused multi-tensor kernels; on the CPU the foreach L1 and
    inf norms take a slow scalar path, so abs-sum and min/max reductions are used there.
    """
    grads = [g.detach() for g in grads]
    if inv_numel is None:
        inv_numel = torch.tensor([1.0 / g.numel() for g in grads], device=grads[0].device)
    l2 = torch.stack(torch._foreach_norm(grads, 2)).float()
    if grads[0].device.type == "cpu":
        l1 = torch.stack([g.abs().sum() for g in grads]).float()
        extremes = torch.stack([t for g in grads for t in torch.aminmax(g)]).view(len(grads), 2)
        linf = extremes.abs().amax(1).float()
    else:
        l1 = torch.stack(torch._foreach_norm(grads, 1)).float()
        linf = torch.stack(torch._foreach_norm(grads, math.inf)).float()
    return torch.stack([l1 * inv_numel, l2, linf], dim=1)


class GradientSeries:
    """Per-step gradient stats of fixed layers: device buffer -> bounded host series.

    `observe(stats, step)` is called on the measured steps (every step, or every
    `gradients_every`-th); `take()` returns the first measured step and the values of the
    measured steps since the previous take, in order.
    """

    def __init__(self, names: list[str], device: torch.device, *, capacity: int = 512, limit: int = 4096) -> None:
        self.names = list(names)
        self.buffer = torch.zeros(capacity, len(self.names), 3, device=device)
        self.filled = 0
        self.limit = limit
        self._buffer_steps: list[int] = []  # global step of each buffered row
        self._pending: deque[tuple[int, torch.Tensor]] = deque()  # (step, host row (L, 3)) not yet taken
        self.reset_epoch()

    def observe(self, stats: torch.Tensor, step: int) -> None:
        """One step's (L, 3) stats, kept on the device; `step` is its 1-based global number."""
        if self.filled == self.buffer.shape[0]:
            self.drain()
        self.buffer[self.filled] = stats
        self._buffer_steps.append(step)
        self.filled += 1

    def drain(self) -> None:
        """Copy the buffered steps to the host (one sync) and fold them into the epoch summary."""
        if self.filled == 0:
            return
        host = self.buffer[: self.filled].double().cpu()
        self.filled = 0
        self._sum += host[:, :, :2].sum(0)
        self._max = torch.maximum(self._max, host[:, :, 2].max(0).values)
        self._count += host.shape[0]
        self._pending.extend(zip(self._buffer_steps, host.unbind(0)))
        self._buffer_steps = []
        while len(self._pending) > self.limit:
            self._pending.popleft()

    def take(self) -> tuple[int, dict[str, dict[str, list[float]]]] | None:
        """(first step, {layer: {metric: [value per measured step]}}) since the last take."""
        self.drain()
        if not self._pending:
            return None
        first = self._pending[0][0]
        rows = torch.stack([row for _, row in self._pending])  # (S, L, 3)
        self._pending.clear()
        series = {name: {metric: rows[:, i, j].tolist() for j, metric in enumerate(GRAD_METRICS)}
                  for i, name in enumerate(self.names)}
        return first, series

    def reset_epoch(self) -> None:
        self._sum = torch.zeros(len(self.names), 2, dtype=torch.float64)
        self._max = torch.full((len(self.names),), -math.inf, dtype=torch.float64)
        self._count = 0

    def epoch_summary(self) -> dict[str, dict[str, float]]:
        """Per layer: mean over the epoch's steps of mean |g| and L2, max of max |g|."""
        self.drain()
        if self._count == 0:
            return {}
        mean = self._sum / self._count
        return {name: {metrics.GRAD_MEAN_ABS: float(mean[i, 0]), metrics.GRAD_L2: float(mean[i, 1]),
                       metrics.GRAD_MAX: float(self._max[i])} for i, name in enumerate(self.names)}


def init_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   params: list[torch.Tensor]) -> list[torch.Tensor]:
    """d cross-entropy / d param for one batch, model in eval mode, `.grad` untouched."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
    finally:
        model.train(was_training)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


class Gradients(QuantityBase):
    """grad_mean_abs, grad_l2, grad_max per linear layer: per measured step (`step_series`) and
    per epoch; at initialisation those of the init batch."""

    def __init__(self, clock: Clock, *, every: int = 32, series_limit: int = 4096) -> None:
        super().__init__(EveryNth(every))
        self.clock, self.series_limit = clock, series_limit
        self.series: GradientSeries | None = None
        self._inv_numel: torch.Tensor | None = None
        self._epoch = 0
        self._init: torch.Tensor | None = None  # the init batch's (L, 3) stats

    @classmethod
    def from_config(cls, config: ProbesConfig, clock: Clock) -> "Gradients | None":
        if not config.gradients:
            return None
        return cls(clock, every=config.gradients_every, series_limit=config.series_limit)

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        names = [layer.name for layer in layers.linears]
        if not names:
            self.series = None
            return
        first = layers.linears[0].module.weight
        self._inv_numel = torch.tensor([1.0 / layer.module.weight.numel() for layer in layers.linears],
                                       device=first.device)
        if self.series is None or self.series.names != names or self.series.buffer.device != first.device:
            self.series = GradientSeries(names, first.device, limit=self.series_limit)

    def epoch_start(self, epoch: int) -> None:
        self._epoch, self._init = epoch, None
        if self.series is not None and epoch > 0:
            self.series.drain()
            self.series.reset_epoch()

    def backward(self, grads: list[torch.Tensor]) -> None:
        if self.series is None:
            return
        stats = grad_stats(grads, self._inv_numel)
        if self._epoch == 0:
            self._init = stats  # the init batch: reported in the init stats, not in the series
        else:
            self.series.observe(stats, self.clock.global_step + 1)

    def step_series(self) -> tuple[int, dict[str, dict[str, list[float]]]] | None:
        return self.series.take() if self.series is not None else None

    def report(self, moment: Moment, epoch: int, report: Report) -> None:
        if self.series is None or moment is Moment.TRAINED:
            return
        names = list(self.series.names)
        if moment is Moment.INIT:
            if self._init is None:
                return
            report.tensor("grad_init", self._init)

            def init(host) -> None:
                stats = host["grad_init"]
                for i, name in enumerate(names):
                    report.metrics(name).update(zip(GRAD_METRICS, (float(v) for v in stats[i])))
            report.then(init)
            return
        for name, values in self.series.epoch_summary().items():
            report.metrics(name).update(values)
