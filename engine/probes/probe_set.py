"""`ProbeSet`: the probes the training loop calls, a thin composition of quantities.

Each quantity (`base.Quantity`) lives in its own module with its own schedule; the set
builds those the config turns on (`QUANTITIES`: adding a quantity is its module plus one
line there), finds the watched layers (`watched.py`), registers one forward hook per watched
layer, fills the shared per-step record (`step_record.py`) and passes each quantity the calls
of the steps its schedule picks. Reports (`Moment`): `init_stats` (epoch 0: the probes' own
eval-mode pass over the training split and one `init_batch` batch in eval mode, as epoch 0's
one step), `epoch_stats` (after validation), `final_stats` (after training, on the best
checkpoint's weights: `metrics.TRAINED_EPOCH`); each is one read-back (`report.py`).

Live hooks record training forward passes (module in train mode, gradients enabled) and the
init batch; eval-mode no-grad passes the loop makes anyway (validation) go to `evaluate`
(histograms); the probes' own passes are invisible to the live hooks. Everything
accumulates on the model's device.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .. import metrics
from ..config import ProbesConfig
from ..events import LayerStats, StepStats
from .base import Moment, Quantity
from .dead import DeadNeurons
from .gradients import Gradients, init_gradients
from .grad_rates import GradientRates
from .histograms import Histograms
from .hooks import HookRegistry, inspect_pass
from .nonfinite import NonfiniteWatch
from .rates import OutputRates
from .report import Report
from .saturation import Saturation
from .schedules import Clock, Never
from .step_record import StepRecord
from .watched import Layer, LayerMap, find_layers
from .weights import Weights

#: rows per forward chunk of the probes' own pass (exact dead count, init histograms)
PASS_BATCH = 8192

#: every quantity, in report order; each `from_config(config, clock)` gives None when turned off
QUANTITIES: tuple[Callable[[ProbesConfig, Clock], Quantity | None], ...] = (
    DeadNeurons.from_config,
    OutputRates.from_config,
    GradientRates.from_config,
    Saturation.from_config,
    Gradients.from_config,
    Weights.from_config,
    Histograms.from_config,
    NonfiniteWatch.from_config,
)

Hook = Callable[[nn.Module, tuple, Any], None]

_TRAIN, _INIT, _PASS = "train", "init", "pass"  # what the model's forward passes are right now


class ProbeSet:
    """All configured probes on one model. README.md, "Per-layer probes", lists the metrics.

    `wrap_hook` (for profilers such as bench/bench_probes.py) wraps every forward hook the set
    registers.
    """

    def __init__(self, config: ProbesConfig | None = None, *, quantities: Sequence[Quantity] | None = None,
                 wrap_hook: Callable[[Hook], Hook] | None = None) -> None:
        self.config = config or ProbesConfig()
        self.clock = Clock()
        if quantities is None:
            quantities = [q for make in QUANTITIES if (q := make(self.config, self.clock)) is not None]
        self.quantities: tuple[Quantity, ...] = tuple(quantities)
        self._scheduled = tuple(q for q in self.quantities if not isinstance(q.steps, Never))  # asked each step
        self.record = StepRecord()
        self.run_id = ""
        self._wrap = wrap_hook
        self._hooks = HookRegistry()
        self._layers: LayerMap | None = None
        self._weights: list[nn.Parameter] = []
        self._biases: list[nn.Parameter | None] = []
        self._zero_grads: dict[str, torch.Tensor] = {}
        self._observing: frozenset[Quantity] = frozenset()  # the quantities observing the step in progress
        self._phase = _TRAIN

    # -- the loop's interface (see base.Probes) ----------------------------------------

    def set_run_id(self, run_id: str) -> None:
        self.run_id = run_id
        self.clock.seed = zlib.crc32(run_id.encode())

    def attach(self, model: nn.Module) -> None:
        """Find the layers and hook them; what unchanged layers gathered is kept."""
        self.detach()
        layers = self._layers = find_layers(model)
        self.record.configure(layers, frozenset().union(*(q.records for q in self.quantities)))
        for q in self.quantities:
            q.attach(layers, self.record)
        self._weights = [layer.module.weight for layer in layers.linears]
        self._biases = [getattr(layer.module, "bias", None) for layer in layers.linears]
        for layer in layers.ordered:
            if layer.kind == metrics.LINEAR:
                continue
            watchers = tuple(q for q in self.quantities if q.watches(layer))
            if watchers or self.record.wants(layer):
                hook = self._hook(layer, watchers)
                self._hooks.forward(layer.module, self._wrap(hook) if self._wrap else hook)
        self._observing = self._observers()

    def detach(self) -> None:
        self._hooks.remove()

    def init_stats(self, model: nn.Module, data: Any) -> LayerStats | None:
        """Epoch 0: the own pass over the training split (exact dead count, histograms) and the
        init batch (`init_batch` rows, eval mode) as epoch 0's one observed step."""
        attached_here = self._layers is None or not len(self._hooks)
        if attached_here:
            self.attach(model)
        try:
            self.epoch_start(0, 1)
            layers = self._layers
            if layers.linears:
                x, y = data.train_x[: self.config.init_batch], data.train_y[: self.config.init_batch]
                biased = [b for b in self._biases if b is not None]
                self._phase = _INIT
                try:
                    grads = init_gradients(model, x, y, [*self._weights, *biased])
                finally:
                    self._phase = _TRAIN
                weight_grads, bias_grads = grads[: len(self._weights)], iter(grads[len(self._weights):])
                self._step_gradients(weight_grads, [None if b is None else next(bias_grads) for b in self._biases])
                self._end_step(advance=False)
            self._observing = frozenset()
            return self._stats(Moment.INIT, metrics.INIT_EPOCH, layers, model, data.train_x)
        finally:
            if attached_here:
                self.detach()

    def epoch_start(self, epoch: int, steps: int | None = None) -> None:
        clock = self.clock
        clock.epoch, clock.step = epoch, 0
        self.record.epoch_start()
        for q in self.quantities:
            q.steps.start(epoch, steps, clock.seed)
            q.epoch_start(epoch)
        self._observing = self._observers()

    def after_backward(self, model: nn.Module) -> None:
        if not self._weights:
            return
        grads = [w.grad for w in self._weights]
        if any(g is None for g in grads):  # (`None in grads` would compare tensors: slow)
            grads = [self._grad_or_zero(layer) for layer in self._layers.linears]
        if self.record.gradients:
            self._step_gradients(grads, [b.grad if b is not None else None for b in self._biases])
        else:
            self._step_gradients(grads, [])

    def after_step(self, model: nn.Module) -> None:
        self._end_step(advance=True)

    def step_stats(self, epoch: int) -> StepStats | None:
        first, series = None, {}
        for q in self.quantities:
            taken = q.step_series()
            if taken is not None:
                first = taken[0] if first is None else min(first, taken[0])
                for name, values in taken[1].items():
                    series.setdefault(name, {}).update(values)
        if first is None:
            return None
        return StepStats(run_id=self.run_id, epoch=epoch, first_step=first, series=series)

    def epoch_stats(self, epoch: int, model: nn.Module, data: Any) -> LayerStats | None:
        """The epoch's statistics; the exact dead count's pass only when it is due."""
        return self._stats(Moment.EPOCH, epoch, self._layers or find_layers(model), model, data.train_x)

    def final_stats(self, model: nn.Module, data: Any) -> LayerStats | None:
        """The trained table: the exact dead count over the training split on `model` (the best
        checkpoint's weights), as `LayerStats(epoch=metrics.TRAINED_EPOCH)`."""
        return self._stats(Moment.TRAINED, metrics.TRAINED_EPOCH, find_layers(model), model, data.train_x)

    def nonfinite_layer(self) -> str | None:
        for q in self.quantities:
            found = q.nonfinite_layer()
            if found:
                return found
        return None

    # -- inside ----------------------------------------------------------------------------

    def _observers(self) -> frozenset[Quantity]:
        step = self.clock.step
        return frozenset(q for q in self._scheduled if q.steps(step))

    def _hook(self, layer: Layer, watchers: tuple[Quantity, ...]) -> Hook:
        record = self.record if self.record.wants(layer) else None

        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                return
            phase = self._phase
            if phase == _PASS:
                return
            if phase == _TRAIN and not module.training:
                if not torch.is_grad_enabled():  # the loop's validation pass
                    for q in watchers:
                        q.evaluate(layer, output)
                return
            if not torch.is_grad_enabled():
                return  # a no-grad pass in train mode: not a training batch
            z = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            if record is not None:
                record.output(layer, z, output)
            observing = self._observing
            if observing:
                for q in watchers:
                    if q in observing:
                        q.forward(layer, z, output)

        return hook

    def _step_gradients(self, weight_grads: list[torch.Tensor], bias_grads: list[torch.Tensor | None]) -> None:
        if self.record.gradients:
            self.record.record_gradients(weight_grads, bias_grads)
        for q in self._observing:
            q.backward(weight_grads)

    def _end_step(self, *, advance: bool) -> None:
        self.record.end_step()
        for q in self._observing:
            q.step_end()
        if advance:
            self.clock.step += 1
            self.clock.global_step += 1
            self._observing = self._observers()

    def _grad_or_zero(self, layer: Layer) -> torch.Tensor:
        g = layer.module.weight.grad
        if g is not None:
            return g
        zero = self._zero_grads.get(layer.name)
        if zero is None or zero.shape != layer.module.weight.shape:
            zero = self._zero_grads[layer.name] = torch.zeros_like(layer.module.weight)
        return zero

    def _stats(self, moment: Moment, epoch: int, layers: LayerMap, model: nn.Module,
               x: torch.Tensor) -> LayerStats | None:
        """Each quantity's report at `moment`, after the own pass when one asks for it."""
        report = Report(self.run_id, epoch, layers)
        wanted = [(q, q.begin_pass(moment, epoch, layers, x.shape[0])) for q in self.quantities]
        takers = [(q, rows) for q, rows in wanted if rows > 0]
        rows = max((r for _, r in takers), default=0)
        if rows and layers.activations:
            def observe(layer: Layer, z: torch.Tensor, y: torch.Tensor, first_row: int) -> None:
                for q, wants in takers:
                    if first_row < wants:
                        q.pass_output(layer, y, first_row)

            self._phase = _PASS
            try:
                inspect_pass(model, x, layers.activations, observe, batch_size=PASS_BATCH, rows=rows)
            finally:
                self._phase = _TRAIN
        for q in self.quantities:
            q.report(moment, epoch, report)
        return report.finish()
