"""Per-layer probes: what an activation function does to a network, layer by layer.

`build_probes(config.probes)` returns the object the training loop calls (the `Probes`
contract of `base.py`). A `ProbeSet` (`probe_set.py`) is a thin composition of quantities,
one module each, each implementing `base.Quantity` with its own schedule (`schedules.py`):

- `dead.py`: dead neurons, exact (own pass: init, trained, every N epochs when asked) and live;
- `rates.py`: output-based activation and death rates; `grad_rates.py`: the same from gradients;
- `saturation.py`: share of units with |f'(z)| below a threshold, mean and std of z;
- `gradients.py`: weight-gradient magnitudes per step and per epoch;
- `weights.py`: update-to-weight ratio, distance from init, weight norm;
- `histograms.py`: fixed-bin histograms of activation outputs and of weight gradients;
- `nonfinite.py`: the first layer where a NaN or inf appears.

Shared machinery: `watched.py` (which modules are watched, their names and kinds),
`hooks.py` (a hook registry that never leaves hooks behind), `step_record.py` (one value per
neuron per step in a device ring, `step_ring.py`, folded into counts, `neurons.py`),
`report.py` (one read-back per report, `readback.py`).
"""

from __future__ import annotations

from ..config import ProbesConfig
from .base import Moment, NoProbes, Probes, Quantity, QuantityBase
from .dead import ExactDead, exact_dead_counts
from .hooks import HookRegistry, hook_count, inspect_pass
from .probe_set import QUANTITIES, ProbeSet
from .watched import Layer, LayerMap, find_layers

__all__ = ["ExactDead", "HookRegistry", "Layer", "LayerMap", "Moment", "NoProbes", "ProbeSet", "Probes",
           "QUANTITIES", "Quantity", "QuantityBase", "build_probes", "exact_dead_counts", "find_layers",
           "hook_count", "inspect_pass"]


def build_probes(config: ProbesConfig | None = None) -> Probes:
    """The probe set a `ProbesConfig` asks for; the loop's no-op `NoProbes` when disabled."""
    config = config if config is not None else ProbesConfig()
    if not config.enabled:
        return NoProbes()
    return ProbeSet(config)
