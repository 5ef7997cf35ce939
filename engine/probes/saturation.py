"""Saturation of smooth activations, and the pre-activation's mean and spread.

Sigmoid and tanh never output exact zeros, so dead counts miss their failure: their units
*saturate*, sitting where the derivative f'(z) is nearly zero so that no gradient passes.
The saturation of a layer is the share of its units with |f'(z)| below a threshold
(1e-3 by default), over the sampled rows of the sampled training batches (`sample_rows`
rows of every `sample_every`-th batch; batches are shuffled, so the first rows are a random
sample); with it come the mean and standard deviation of the pre-activation z (the
activation's input) over the same units.

f'(z) comes from a closed form where one is known and exact (sigmoid: y(1 - y), tanh:
1 - y^2, relu: [z > 0], computed from the outputs already at hand), else from autograd on
the sampled rows through the module's `forward` (hooks are not re-entered, parameters
receive no gradient). Elementwise activations only: f'(z) is the gradient of sum(f(z)).
"""

from __future__ import annotations

import torch
from torch import nn

from .readback import float_accumulator_dtype

_TORCH_NAMES = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu"}


def activation_kind(module: nn.Module) -> str:
    """The registry name of an activation module, or a torch class's equivalent, or ''."""
    name = getattr(module, "name", None)
    if isinstance(name, str):
        return name
    return _TORCH_NAMES.get(type(module), "")


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


class Saturation:
    """Share of |f'(z)| < threshold, and sums for the mean/std of z, over the units observed."""

    def __init__(self, threshold: float = 1e-3) -> None:
        self.threshold = threshold
        self.sums: torch.Tensor | None = None  # (3,) saturated units, sum z, sum z^2
        self.units = 0

    def observe(self, module: nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> None:
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
        self.sums += stats
        self.units += flat.numel()

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
        return {"saturation": below / n, "z_mean": mean, "z_std": max(0.0, s2 / n - mean * mean) ** 0.5}
