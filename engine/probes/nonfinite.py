"""Non-finite watch: the first layer, forward or backward, where a NaN or an inf appears.

Free per step: it reads the rows of the shared step record (`step_record.py`) that the rate
probes need anyway: per activation layer the per-neuron max |y| of its outputs (or ReLU's
max z; NaN and inf propagate through the max), per Linear/Conv layer its bias gradient (or
its rows' max |g|), per other activation the sum of its input z;
a NaN in the per-sample errors reaches both a layer's weight and bias gradients. Nothing is
checked or read back while training runs.

Only when the training loop has found a non-finite loss (it checks every 32 steps) does
`first_nonfinite` read the ring's rows back and look for the first step with a non-finite
value, and in it the first span in search order: activation outputs in forward order, then
gradients in backward order (from the output towards the input). Once a step went
non-finite the weights are non-finite and every later step is too, so that first step is
the one that matters; the ring (64 steps) reaches back to it. A non-finite pre-activation
(a Linear layer's output) shows up in the activation it feeds, which passes NaN on; the
logits are not watched: a non-finite loss with finite activations shows up in the output
layer's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ProbesConfig
from .base import QuantityBase
from .schedules import Clock
from .step_record import ACTIVATION_OUTPUTS, GRADIENTS, PRE_ACTIVATION_SUMS, StepRecord
from .step_ring import Layout
from .watched import LayerMap


@dataclass(frozen=True)
class Span:
    """Where one watched place sits in a row: `label` is e.g. "act2 (forward)"."""

    label: str
    start: int
    stop: int


def first_nonfinite(rows: torch.Tensor | None, spans: tuple[Span, ...]) -> str | None:
    """The label of the first non-finite value: first row (oldest step) first, then the
    spans in the order given; None when every value is finite."""
    if rows is None or rows.numel() == 0:
        return None
    bad = ~torch.isfinite(rows.detach().float().cpu())
    steps = bad.any(1).nonzero()
    if steps.numel() == 0:
        return None
    row = bad[int(steps[0])]
    for span in spans:
        if bool(row[span.start:span.stop].any()):
            return span.label
    return "unknown layer"


def search_order(layout: Layout, layers: LayerMap) -> tuple[Span, ...]:
    """Where each layer sits in a step row, in search order: outputs in forward order, then
    gradients in backward order (from the output towards the input)."""
    order = {layer.name: i for i, layer in enumerate(layers.ordered)}
    judged = {a.name: a.source.name for a in layers.activations if a.source is not None and a.judged_by_input}
    forward, backward, start = [], [], 0
    for (kind, name), size in layout:
        if kind == "out" and name in judged:
            name = judged[name]  # judged by its input: a NaN there comes from the layer feeding it
        if kind in ("out", "z"):
            forward.append((order.get(name, 0), Span(f"{name} (forward)", start, start + size)))
        else:
            backward.append((order.get(name, 0), Span(f"{name} (backward)", start, start + size)))
        start += size
    return tuple(s for _, s in sorted(forward, key=lambda item: item[0])) + \
        tuple(s for _, s in sorted(backward, key=lambda item: -item[0]))


class NonfiniteWatch(QuantityBase):
    """`nonfinite_layer()`: the first layer, forward or backward, where NaN/inf appeared."""

    records = frozenset({ACTIVATION_OUTPUTS, GRADIENTS, PRE_ACTIVATION_SUMS})

    def __init__(self) -> None:
        super().__init__()
        self._record: StepRecord | None = None
        self._layers: LayerMap | None = None
        self._spans: tuple[Layout, tuple[Span, ...]] | None = None

    @classmethod
    def from_config(cls, config: ProbesConfig, clock: Clock) -> "NonfiniteWatch | None":
        return cls() if config.nonfinite else None

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        self._record, self._layers, self._spans = record, layers, None

    def nonfinite_layer(self) -> str | None:
        record = self._record
        if record is None or record.ring.buffer is None:
            return None
        layout = record.ring.layout
        if self._spans is None or self._spans[0] != layout:
            self._spans = (layout, search_order(layout, self._layers))
        return first_nonfinite(record.ring.recent(), self._spans[1])
