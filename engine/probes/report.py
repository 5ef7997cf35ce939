"""One `LayerStats` report: the quantities queue device tensors, one read-back, then metrics.

Each quantity adds the tensors its metrics need (`tensor`) and a function that turns their
host copies into metrics (`then`); `finish` reads every queued tensor back with one copy
per dtype (`readback.read_back`), runs the functions and builds the event, with every
layer's kind (`LayerStats.kinds`) so readers never parse names.
"""

from __future__ import annotations

from typing import Callable, Hashable, Mapping

import torch

from ..events import LayerStats
from .readback import read_back
from .watched import LayerMap

Host = Mapping[Hashable, torch.Tensor]


class Report:
    """The per-layer metrics and histograms of one moment, gathered from the quantities."""

    def __init__(self, run_id: str, epoch: int, layers: LayerMap | None) -> None:
        self.run_id, self.epoch, self.layers = run_id, epoch, layers
        self._tensors: dict[Hashable, torch.Tensor] = {}
        self._then: list[Callable[[Host], None]] = []
        self._metrics: dict[str, dict[str, float]] = {}
        self._histograms: dict[str, dict[str, list[float]]] = {}

    def tensor(self, key: Hashable, value: torch.Tensor) -> None:
        """Queue a device tensor for the read-back; `then` functions find it under `key`."""
        self._tensors[key] = value

    def then(self, fn: Callable[[Host], None]) -> None:
        """Call `fn(host tensors)` after the read-back (to fill `metrics` and `histogram`)."""
        self._then.append(fn)

    def metrics(self, layer: str) -> dict[str, float]:
        """The (mutable) metrics of one layer."""
        return self._metrics.setdefault(layer, {})

    def histogram(self, key: str, edges: list[float], counts: list[float]) -> None:
        """`LayerStats.histograms[key]` ("act/act1", "grad_init/fc1")."""
        self._histograms[key] = {"edges": edges, "counts": counts}

    def finish(self) -> LayerStats | None:
        """The event (None when no quantity reported anything)."""
        host = read_back(self._tensors) if self._tensors else {}
        for fn in self._then:
            fn(host)
        out = {name: m for name, m in self._metrics.items() if m}
        if not out and not self._histograms:
            return None
        kinds = self.layers.kinds if self.layers is not None else {}
        order = [name for name in kinds if name in out]
        layers = {name: out[name] for name in order}
        layers.update((name, m) for name, m in out.items() if name not in layers)
        return LayerStats(run_id=self.run_id, epoch=self.epoch, layers=layers, histograms=dict(self._histograms),
                          kinds={name: kinds[name] for name in layers if name in kinds})
