"""Dead neurons, the reference's headline number.

A neuron is *dead* when its activation output is exactly zero for every sample of the
training split (shared/REFERENCE.md section 3). Two counts:

- exact (`ExactDead`, `exact_dead_counts`): a no-grad, eval-mode pass over the whole split
  after an epoch (and at initialisation), costing one forward pass over the training data;
- live: neurons never active in any training batch of the epoch, read from the training
  forward passes themselves (`OutputRates.dead_live` in `rates.py`). It costs almost nothing
  but mixes weights from the start and the end of the epoch (and sees dropout's input, as
  the exact pass does); with unchanged weights both counts agree.

For a conv layer the neuron is a channel: dead when it is zero at every position of every sample.
"""

from __future__ import annotations

import torch
from torch import nn

from .hooks import inspect_pass
from .layers import find_layers
from .rates import neuron_max_abs


class ExactDead:
    """Per-neuron "ever non-zero" flags of one layer over a pass."""

    def __init__(self, nonnegative: bool = False) -> None:
        self.nonnegative = nonnegative  # ReLU-like outputs: skip the abs
        self.alive: torch.Tensor | None = None  # (C,) bool

    def observe(self, output: torch.Tensor) -> None:
        alive = neuron_max_abs(output, self.nonnegative) != 0
        if self.alive is None or self.alive.shape != alive.shape or self.alive.device != alive.device:
            self.alive = alive
        else:
            self.alive |= alive

    def reset(self) -> None:
        self.alive = None

    def tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.alive is None else {"alive": self.alive}

    @staticmethod
    def summarize(values: dict[str, torch.Tensor]) -> dict[str, float]:
        """size, dead_exact, dead_exact_frac."""
        if not values:
            return {}
        alive = values["alive"]
        size = alive.numel()
        dead = size - int(alive.sum())
        return {"size": size, "dead_exact": dead, "dead_exact_frac": dead / max(1, size)}


def exact_dead_counts(model: nn.Module, x: torch.Tensor, *, batch_size: int = 8192) -> dict[str, int]:
    """Dead neurons per activation layer over all rows of `x` (one eval-mode no-grad pass)."""
    layers = find_layers(model).activations
    counters = {layer.name: ExactDead() for layer in layers}
    inspect_pass(model, x, layers, lambda layer, z, y, start: counters[layer.name].observe(y),
                 batch_size=batch_size)
    alive = {name: c.alive for name, c in counters.items() if c.alive is not None}
    if not alive:
        return {}
    from .readback import read_back

    host = read_back(alive)
    return {name: int(host[name].numel() - host[name].sum()) for name in host}
