"""The shared per-step record: one value per neuron of every watched layer, one ring row per step.

Several quantities need to know, for every training step, which neurons were dead on the
batch (the live dead count, the death rates) and whether a value turned NaN/inf (the
non-finite watch). The set's hooks reduce each watched layer's output to one value per
neuron (`neurons.neuron_max_abs`, or ReLU's max z, `neurons.neuron_max`), the step's bias
gradients are the linear layers' per-neuron values (`neurons.neuron_gradient`), and after the
optimizer step all of them are concatenated into one row of a device ring (`step_ring.py`,
one op whatever the depth). Every `capacity` steps, and before each report, `fold` adds
`rows == 0` of the unread rows to per-neuron counts (`neurons.ZeroCounts`, three ops). On a
CPU each small op costs ~15-40 us once the step's big kernels have flushed the caches, so
their number, not their size, is what matters.

A module that runs several times in one forward pass (one `nn.ReLU` reused) adds one
segment part per call: its neurons are the units of all its calls laid side by side (call 1's,
then call 2's, ...), so a layer's counts cover every call.

Which parts a row holds follows what the quantities ask for (`Quantity.records`):
`ACTIVATION_OUTPUTS`, `DROPOUT_OUTPUTS`, `GRADIENTS` (per-neuron gradient of every linear
layer) and `PRE_ACTIVATION_SUMS` (the sum of z of activations not judged by their input:
where a non-finite Linear output shows).
"""

from __future__ import annotations

from typing import Callable

import torch

from .. import metrics
from .neurons import SampledNonzero, ZeroCounts, neuron_gradient, neuron_max, neuron_max_abs
from .report import Host, Report
from .step_ring import Layout, StepRing
from .watched import Layer, LayerMap

ACTIVATION_OUTPUTS = "activation_outputs"
DROPOUT_OUTPUTS = "dropout_outputs"
GRADIENTS = "gradients"
PRE_ACTIVATION_SUMS = "pre_activation_sums"


class StepRecord:
    """Per-step per-neuron values of the watched layers -> ring rows -> per-neuron zero counts."""

    def __init__(self, capacity: int = 64) -> None:
        self.ring = StepRing(capacity)
        self.zeros = ZeroCounts()
        self.layers: LayerMap | None = None
        self.outputs: dict[str, Layer] = {}  # layers whose per-neuron output values are recorded
        self.zsum_sources: dict[str, str] = {}  # activation -> the linear layer feeding it (z sums)
        self.gradients = False
        self._reduce: dict[str, tuple[bool, bool]] = {}  # name -> (judged by its input, outputs nonnegative)
        self._maxima: dict[str, list[torch.Tensor]] = {}
        self._zsums: dict[str, list[torch.Tensor]] = {}
        self._grads: list[torch.Tensor] = []
        self._shape: tuple | None = None  # calls per layer and part count of the cached layout
        self._layout: Layout | None = None

    @property
    def active(self) -> bool:
        return bool(self.outputs or self.zsum_sources or self.gradients)

    def configure(self, layers: LayerMap, parts: frozenset[str]) -> None:
        """Which values rows hold from now on (first attach, hot swap); rows written under
        the old layout are folded into the counts first, so a swap mid-epoch loses none."""
        self.fold()
        self.layers = layers
        wanted = {metrics.ACTIVATION: ACTIVATION_OUTPUTS in parts, metrics.DROPOUT: DROPOUT_OUTPUTS in parts}
        self.outputs = {layer.name: layer for layer in layers.ordered if wanted.get(layer.kind)}
        self._reduce = {name: (layer.judged_by_input, layer.nonnegative) for name, layer in self.outputs.items()}
        self.zsum_sources = {a.name: a.source.name for a in layers.activations
                             if PRE_ACTIVATION_SUMS in parts and a.source is not None
                             and not (a.judged_by_input and a.name in self.outputs)}
        self.gradients = GRADIENTS in parts and bool(layers.linears)
        self._maxima, self._zsums, self._grads = {}, {}, []
        self._shape = self._layout = None

    def wants(self, layer: Layer) -> bool:
        return layer.name in self.outputs or layer.name in self.zsum_sources

    def output(self, layer: Layer, z: torch.Tensor | None, y: torch.Tensor) -> None:
        """One call of a watched layer's module on a training batch."""
        name = layer.name
        reduce = self._reduce.get(name)
        if reduce is not None:
            judged, nonnegative = reduce
            value = neuron_max(z) if judged and z is not None else neuron_max_abs(y, nonnegative)
            calls = self._maxima.get(name)
            if calls is None:
                self._maxima[name] = [value]
            else:
                calls.append(value)
        if z is not None and name in self.zsum_sources:
            self._zsums.setdefault(name, []).append(z.detach().sum())

    def record_gradients(self, weight_grads: list[torch.Tensor], bias_grads: list[torch.Tensor | None]) -> None:
        """The step's gradients, one per linear layer (bias gradient None when it has none)."""
        if self.gradients:
            self._grads = [b if b is not None else neuron_gradient(g, None) for g, b in zip(weight_grads, bias_grads)]

    def end_step(self) -> None:
        """The step's values become one ring row (skipped when a watched layer did not run)."""
        maxima, zsums, grads = self._maxima, self._zsums, self._grads
        self._maxima, self._zsums, self._grads = {}, {}, []
        if len(maxima) != len(self.outputs) or len(zsums) != len(self.zsum_sources) or not (maxima or grads):
            return
        parts = [t for name in self.outputs for t in maxima[name]]
        for name in self.zsum_sources:
            sums = zsums[name]
            parts.append((sums[0] if len(sums) == 1 else torch.stack(sums).sum()).view(1))
        parts += grads  # 1-D and detached already (bias gradients or neuron_gradient's maxima)
        shape = (tuple(len(maxima[name]) for name in self.outputs), len(parts))
        if shape != self._shape:
            layout = [(("out", name), sum(t.numel() for t in maxima[name])) for name in self.outputs]
            layout += [(("z", source), 1) for source in self.zsum_sources.values()]
            layout += [(("grad", layer.name), g.numel()) for layer, g in zip(self.layers.linears, grads)]
            self._shape, self._layout = shape, tuple(layout)
        if self.ring.full():
            self.fold()
        self.ring.write(parts, self._layout)  # the same layout object: the ring's check is an identity test

    def fold(self) -> None:
        """Add the unread rows to the per-neuron zero counts."""
        rows = self.ring.take_unread()
        if rows is not None:
            self.zeros.add(rows, self.ring.layout)

    def epoch_start(self) -> None:
        """Rows and counts of earlier epochs do not count in this one."""
        self.ring.take_unread()
        self.zeros.reset()
        self._maxima, self._zsums, self._grads = {}, {}, []


RateMetrics = Callable[[torch.Tensor, int, "float | None"], dict[str, float]]


def report_rates(report: Report, record: StepRecord, sampled: SampledNonzero, kind: str, names: list[str],
                 rate_metrics: RateMetrics, owners: dict[str, str] | None = None) -> None:
    """Queue the record's zero counts and `sampled`'s non-zero counts for the read-back; then,
    per layer of `names` (its `(kind, name)` segment), `rate_metrics(zero counts, steps, sampled
    share)` under `owners.get(name, name)`."""
    record.fold()
    zeros = record.zeros
    if not zeros.tensors():
        return
    report.tensor("zeros", zeros.counts)
    for key, value in sampled.tensors().items():
        report.tensor((kind, "sampled", key), value)
    steps, names, owners = zeros.steps, list(names), dict(owners or {})

    def rates(host: Host) -> None:
        values = {"zeros": host["zeros"]}
        own = {key: host[(kind, "sampled", key)] for key in sampled.tensors()}
        for name in names:
            counts = zeros.segment(values, (kind, name))
            if counts is not None:
                report.metrics(owners.get(name, name)).update(rate_metrics(counts, steps, sampled.share(own, name)))
    report.then(rates)
