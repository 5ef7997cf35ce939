"""Weight gradients and weight drift of the Linear/Conv layers.

- `grad_stats`: per layer, mean |g|, L2 norm and max |g| of the weight gradient, for all
  layers at once with `torch._foreach_norm` (one fused kernel per norm on CUDA, as
  `clip_grad_norm_` does), returned as one (layers, 3) device tensor.
- `GradientSeries`: those stats for every measured step (every step, or every
  `gradients_every`-th: three passes over the gradients cost about 4% of a CPU step of the
  lab's MLP), written into a device buffer and copied to the host in one go when the loop
  asks (about every 0.5 s) or when the buffer is full; it keeps at most `limit` steps between
  two reads (the oldest are dropped) and an epoch summary: mean over the measured steps of
  mean |g| and of the L2 norm, max over them of max |g|.
- `WeightDrift`: per epoch, the update-to-weight ratio log10(||W_end - W_start|| / ||W_end||)
  of the epoch's total update, and the distance ||W - W_0|| from the weights the probes first
  saw (the initialisation for a fresh run); Cockpit's UpdateSize and Distance quantities.
- `init_gradients`: the weight gradients of one batch at initialisation (eval mode, so no
  dropout and no random numbers drawn; `.grad` is left untouched).
"""

from __future__ import annotations

import math
from collections import deque

import torch
import torch.nn.functional as F
from torch import nn

from .readback import float_accumulator_dtype

GRAD_METRICS = ("grad_mean_abs", "grad_l2", "grad_max")


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
        return {name: {"grad_mean_abs": float(mean[i, 0]), "grad_l2": float(mean[i, 1]),
                       "grad_max": float(self._max[i])} for i, name in enumerate(self.names)}


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
        out = {"weight_norm": norm}
        if update > 0 and norm > 0 and math.isfinite(update):
            out["update_ratio_log10"] = math.log10(update / norm)
        if math.isfinite(dist):
            out["dist_from_init"] = dist
        return out


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
