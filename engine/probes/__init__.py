"""Per-layer probes: what an activation function does to a network, layer by layer.

`build_probes(config.probes)` returns the object the training loop calls (see
`probe_set.ProbeSet` for the call order). One module per quantity:

- `dead.py`: dead neurons, exact (a full no-grad pass) and live (from training batches);
- `rates.py`: activation and per-batch death rates, from outputs and from parameter gradients;
- `saturation.py`: share of units with |f'(z)| below a threshold, mean and std of z;
- `gradients.py`: weight-gradient magnitudes per step and per epoch, update ratio, drift;
- `histograms.py`: fixed-bin histograms of activation outputs and of weight gradients;
- `nonfinite.py`: the first layer where a NaN or inf appears;
- `hooks.py`: the hook registry (a context manager that never leaves hooks behind);
- `step_ring.py`: the per-step rows (one device op per step) that the rates and the
  non-finite watch read;
- `layers.py`: which modules are watched and what they are called; `readback.py`: one
  device-to-host copy per read; `probe_set.py`: all of it behind the loop's interface.
"""

from __future__ import annotations

from typing import Any

from .base import NoProbes, Probes
from .dead import ExactDead, exact_dead_counts
from .hooks import HookRegistry, hook_count, inspect_pass
from .layers import Layer, LayerMap, find_layers
from .probe_set import ProbeSet

__all__ = ["ExactDead", "NoProbes", "Probes", "HookRegistry", "Layer", "LayerMap", "ProbeSet", "build_probes", "exact_dead_counts",
           "find_layers", "hook_count", "inspect_pass"]


def build_probes(config: Any = None) -> Probes:
    """The probe set a `ProbesConfig` asks for; the loop's no-op `NoProbes` when disabled."""
    from ..config import ProbesConfig

    config = config if config is not None else ProbesConfig()
    if not config.enabled:
        return NoProbes()
    return ProbeSet(config)
