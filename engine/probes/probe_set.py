"""`ProbeSet`: the probes the training loop calls, assembled from the pieces in this package.

The loop (engine/training.py) calls, in order: `set_run_id`, `attach(model)`, `init_stats`
(epoch 0, before training), then per epoch `epoch_start`, per step `after_backward` and
`after_step`, about every 0.5 s `step_stats`, and after validation `epoch_stats`; `detach`
at the end (and `detach` + `attach` after an activation hot swap). `nonfinite_layer` only
when the loop found a non-finite loss.

Live hooks record training forward passes only (module in train mode, gradients enabled),
so validation and the probes' own passes never count as training batches. Everything
accumulates on the model's device; `epoch_stats` reads it back with one copy per dtype.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..config import ProbesConfig
from ..events import LayerStats, StepStats
from .dead import ExactDead
from .gradients import GradientSeries, WeightDrift, grad_stats, init_gradients
from .histograms import FixedHistogram, log10_magnitude
from .hooks import HookRegistry, inspect_pass
from .layers import Layer, LayerMap, find_layers
from .nonfinite import NonFiniteWatch
from .rates import GradientRates, OutputRates
from .readback import read_back
from .saturation import Saturation, activation_kind

#: rows per forward chunk of the full-pass probes (exact dead count, histograms)
PASS_BATCH = 8192
#: activations whose outputs are never negative: their per-neuron max needs no abs
NONNEGATIVE = frozenset({"relu", "relu6"})


class ProbeSet:
    """All configured probes on one model. See the package README section for the metrics."""

    def __init__(self, config: ProbesConfig | None = None) -> None:
        self.config = config or ProbesConfig()
        c = self.config
        if c.histograms:  # fail early on a bad range, with the keys named
            for lo_key, hi_key in (("act_hist_min", "act_hist_max"), ("grad_hist_min", "grad_hist_max")):
                if not getattr(c, hi_key) > getattr(c, lo_key):
                    from ..errors import ConfigError

                    raise ConfigError(f"probes.{lo_key} = {getattr(c, lo_key)} must be below "
                                      f"probes.{hi_key} = {getattr(c, hi_key)}")
        self.run_id = ""
        self._hooks = HookRegistry()
        self._layers: LayerMap | None = None
        self._device = torch.device("cpu")
        self._epoch = 0
        self._rates: dict[str, OutputRates] = {}  # activation and dropout layers
        self._saturation: dict[str, Saturation] = {}  # activation layers
        self._grad_rates: dict[str, GradientRates] = {}  # param layers
        self._series: GradientSeries | None = None
        self._inv_numel: torch.Tensor | None = None
        self._drift = WeightDrift()
        self._nonfinite: NonFiniteWatch | None = None
        self._zero_grads: dict[str, torch.Tensor] = {}
        self._steps = 0  # optimizer steps seen
        self._sampled = True  # whether the batch in progress is a sampled one

    # -- the loop's interface ----------------------------------------------------------

    def set_run_id(self, run_id: str) -> None:
        self.run_id = run_id

    def attach(self, model: nn.Module) -> None:
        """Find the layers and hook them; accumulators of layers seen before are kept."""
        self.detach()
        c = self.config
        layers = self._layers = find_layers(model)
        first = next(model.parameters(), None)
        self._device = first.device if first is not None else torch.device("cpu")
        param_names = [p.name for p in layers.params]
        if c.rates:
            for layer in layers.activations + layers.dropouts:
                nonnegative = layer.kind == "activation" and activation_kind(layer.module) in NONNEGATIVE
                rates = self._rates.get(layer.name)
                if rates is None or rates.nonnegative != nonnegative:  # a hot swap may change it
                    self._rates[layer.name] = OutputRates(nonnegative)
        if c.saturation:
            for layer in layers.activations:
                self._saturation.setdefault(layer.name, Saturation(c.saturation_threshold))
        if c.grad_rates:
            for name in param_names:
                self._grad_rates.setdefault(name, GradientRates())
        if param_names and (c.gradients or c.nonfinite):
            self._inv_numel = torch.tensor([1.0 / p.module.weight.numel() for p in layers.params],
                                           device=self._device)
        if c.gradients and param_names and (self._series is None or self._series.names != param_names
                                            or self._series.buffer.device != self._device):
            self._series = GradientSeries(param_names, self._device, limit=c.series_limit)
        watched = [layer for layer in layers.ordered if layer.kind != "dropout"]
        if c.nonfinite and (self._nonfinite is None or self._nonfinite.forward_names != [w.name for w in watched]):
            self._nonfinite = NonFiniteWatch([w.name for w in watched], param_names)
        if c.weights:
            self._drift.set_initial(self._weights())
        index = {layer.name: i for i, layer in enumerate(watched)}
        for layer in layers.ordered:
            hook = self._live_hook(layer, index.get(layer.name))
            if hook is not None:
                self._hooks.forward(layer.module, hook)

    def detach(self) -> None:
        self._hooks.remove()

    def init_stats(self, model: nn.Module, data: Any) -> LayerStats | None:
        """Epoch 0: exact dead count and activation histograms over the training split, and
        one batch (`init_batch` rows, eval mode) for rates, saturation and weight gradients."""
        layers = self._layers_of(model)
        c = self.config
        tensors: dict[tuple[str, str, str], torch.Tensor] = {}
        summarizers: list[Callable[[dict], None]] = []
        out: dict[str, dict[str, float]] = {}
        histograms: dict[str, dict[str, list[float]]] = {}

        self._epoch_pass(model, data.train_x, exact=c.dead_exact_every > 0, tensors=tensors,
                         summarizers=summarizers, out=out, histograms=histograms)

        x, y = data.train_x[: c.init_batch], data.train_y[: c.init_batch]
        rates = {a.name: OutputRates() for a in layers.activations} if c.rates else {}
        saturation = {a.name: Saturation(c.saturation_threshold) for a in layers.activations} if c.saturation else {}
        params = [p.module.weight for p in layers.params]
        biases = [p.module.bias for p in layers.params if getattr(p.module, "bias", None) is not None]
        with HookRegistry() as hooks:
            for a in layers.activations:
                if a.name in rates or a.name in saturation:
                    hooks.forward(a.module, self._init_hook(a, rates, saturation))
            grads = init_gradients(model, x, y, params + biases) if params else []
        weight_grads = grads[: len(params)]
        bias_grads = dict(zip([p.name for p in layers.params if getattr(p.module, "bias", None) is not None],
                              grads[len(params):]))
        for name, r in rates.items():
            self._collect(tensors, summarizers, out, ("init_rates", name), r,
                          drop=("dead_live", "dead_live_frac", "max_abs"))
        for name, s in saturation.items():
            self._collect(tensors, summarizers, out, ("init_sat", name), s)
        if c.grad_rates:
            for p, g in zip(layers.params, weight_grads):
                r = GradientRates()
                r.observe(g, bias_grads.get(p.name), sampled=True)
                self._collect(tensors, summarizers, out, ("init_grad_rates", p.name), r,
                              report_as=self._rate_owner(p))
        if weight_grads and (c.gradients or c.histograms):
            if c.gradients:
                tensors[("init_grad", "", "stats")] = grad_stats(weight_grads, self._inv_numel)

                def grad_summary(host: dict, names=[p.name for p in layers.params]) -> None:
                    stats = host[("init_grad", "", "stats")]
                    for i, name in enumerate(names):
                        out.setdefault(name, {}).update(
                            grad_mean_abs=float(stats[i, 0]), grad_l2=float(stats[i, 1]), grad_max=float(stats[i, 2]))
                summarizers.append(grad_summary)
            if c.histograms:
                for p, g in zip(layers.params, weight_grads):
                    hist = FixedHistogram(c.grad_hist_min, c.grad_hist_max, c.hist_bins)
                    hist.add(log10_magnitude(g))
                    self._collect_hist(tensors, summarizers, histograms, f"grad_init/{p.name}", hist)
        if c.weights:
            self._collect_drift(tensors, summarizers, out)
        return self._finish(0, tensors, summarizers, out, histograms)

    def epoch_start(self, epoch: int) -> None:
        self._epoch = epoch
        for acc in (*self._rates.values(), *self._saturation.values(), *self._grad_rates.values()):
            acc.reset()
        if self._series is not None:
            self._series.drain()
            self._series.reset_epoch()
        if self.config.weights and self._layers is not None:
            self._drift.epoch_start(self._weights())

    def after_backward(self, model: nn.Module) -> None:
        layers = self._layers
        if layers is None or not layers.params:
            return
        c = self.config
        if c.gradients or c.nonfinite:
            grads = [self._grad_or_zero(p) for p in layers.params]
            stats = grad_stats(grads, self._inv_numel)
            if self._series is not None:
                self._series.observe(stats)
            if self._nonfinite is not None:
                self._nonfinite.observe_backward(stats[:, 1])  # L2 norms: non-finite iff the gradient is
        if c.grad_rates:
            for p in layers.params:
                g = p.module.weight.grad
                if g is not None:
                    bias = getattr(p.module, "bias", None)
                    self._grad_rates[p.name].observe(g, bias.grad if bias is not None else None,
                                                     sampled=self._sampled)

    def after_step(self, model: nn.Module) -> None:
        if self._nonfinite is not None:
            self._nonfinite.end_step()
        self._steps += 1
        self._sampled = self._steps % self.config.sample_every == 0

    def epoch_stats(self, epoch: int, model: nn.Module, data: Any) -> LayerStats | None:
        """The epoch's live statistics, plus the exact dead count (when due) and histograms."""
        c = self.config
        tensors: dict[tuple[str, str, str], torch.Tensor] = {}
        summarizers: list[Callable[[dict], None]] = []
        out: dict[str, dict[str, float]] = {}
        histograms: dict[str, dict[str, list[float]]] = {}
        for name, r in self._rates.items():
            self._collect(tensors, summarizers, out, ("rates", name), r)
        for name, s in self._saturation.items():
            self._collect(tensors, summarizers, out, ("sat", name), s)
        owners = {p.name: self._rate_owner(p) for p in self._layers.params} if self._layers else {}
        for name, r in self._grad_rates.items():
            self._collect(tensors, summarizers, out, ("grad_rates", name), r, report_as=owners.get(name, name))
        if c.weights:
            self._collect_drift(tensors, summarizers, out)
        exact = c.dead_exact_every > 0 and epoch % c.dead_exact_every == 0
        self._epoch_pass(model, data.train_x, exact=exact, tensors=tensors, summarizers=summarizers, out=out,
                         histograms=histograms)
        if self._series is not None:
            for name, metrics in self._series.epoch_summary().items():
                out.setdefault(name, {}).update(metrics)
        return self._finish(epoch, tensors, summarizers, out, histograms)

    def step_stats(self, epoch: int) -> StepStats | None:
        if self._series is None:
            return None
        taken = self._series.take()
        if taken is None:
            return None
        first, series = taken
        return StepStats(run_id=self.run_id, epoch=epoch, first_step=first, series=series)

    def nonfinite_layer(self) -> str | None:
        return self._nonfinite.first() if self._nonfinite is not None else None

    # -- hooks -------------------------------------------------------------------------

    def _live_hook(self, layer: Layer, watch_index: int | None) -> Callable | None:
        rates = self._rates.get(layer.name)
        saturation = self._saturation.get(layer.name)
        nonfinite = self._nonfinite if watch_index is not None else None
        if rates is None and saturation is None and nonfinite is None:
            return None
        rows = self.config.sample_rows

        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            if not (module.training and torch.is_grad_enabled()) or not isinstance(output, torch.Tensor):
                return  # validation, the probes' own passes: not a training batch
            sampled = self._sampled
            watched = output
            if rates is not None:
                watched = rates.observe(output, rows if sampled else 0)  # per-neuron max |y|
            if saturation is not None and sampled and inputs:
                saturation.observe(module, inputs[0][:rows], output[:rows])
            if nonfinite is not None:
                nonfinite.observe_forward(watch_index, watched)

        return hook

    @staticmethod
    def _init_hook(layer: Layer, rates: dict, saturation: dict) -> Callable:
        """The init batch: every row counts (rates and saturation over the whole batch)."""
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            if layer.name in rates:
                rates[layer.name].observe(output, sample_rows=output.shape[0])
            if layer.name in saturation and inputs:
                saturation[layer.name].observe(module, inputs[0], output)
        return hook

    # -- helpers -----------------------------------------------------------------------

    def _layers_of(self, model: nn.Module) -> LayerMap:
        if self._layers is None:
            self._layers = find_layers(model)
        return self._layers

    def _weights(self) -> dict[str, torch.Tensor]:
        return {p.name: p.module.weight for p in self._layers.params} if self._layers else {}

    def _grad_or_zero(self, p: Layer) -> torch.Tensor:
        g = p.module.weight.grad
        if g is not None:
            return g
        zero = self._zero_grads.get(p.name)
        if zero is None or zero.shape != p.module.weight.shape:
            zero = self._zero_grads[p.name] = torch.zeros_like(p.module.weight)
        return zero

    def _rate_owner(self, p: Layer) -> str:
        """Gradient rates are reported under the activation a param layer feeds, if any."""
        return self._layers.paired_params.get(p.name, p.name) if self._layers else p.name

    def _collect(self, tensors: dict, summarizers: list, out: dict, key: tuple[str, str], acc: Any, *,
                 report_as: str | None = None, drop: tuple[str, ...] = ()) -> None:
        """Queue an accumulator's device tensors for the one read-back, and its summary."""
        own = acc.tensors()
        if not own:
            return
        for k, t in own.items():
            tensors[(*key, k)] = t
        name = report_as or key[1]

        def summarize(host: dict) -> None:
            metrics = acc.summarize({k: host[(*key, k)] for k in own})
            for d in drop:
                metrics.pop(d, None)
            out.setdefault(name, {}).update(metrics)
        summarizers.append(summarize)

    @staticmethod
    def _collect_hist(tensors: dict, summarizers: list, histograms: dict, key: str, hist: FixedHistogram) -> None:
        if hist.counts is None:
            return
        tensors[("hist", key, "counts")] = hist.counts
        summarizers.append(lambda host: histograms.__setitem__(key, hist.as_dict(host[("hist", key, "counts")])))

    def _collect_drift(self, tensors: dict, summarizers: list, out: dict) -> None:
        for name, t in self._drift.tensors(self._weights()).items():
            tensors[("drift", name, "norms")] = t
            summarizers.append(lambda host, name=name: out.setdefault(name, {}).update(
                WeightDrift.summarize(host[("drift", name, "norms")])))

    def _epoch_pass(self, model: nn.Module, x: torch.Tensor, *, exact: bool, tensors: dict, summarizers: list,
                    out: dict, histograms: dict) -> None:
        """One eval-mode no-grad pass: the exact dead count over all of `x` when `exact`,
        activation histograms over its first `hist_rows` rows when histograms are on."""
        c = self.config
        acts = self._layers_of(model).activations
        hist_rows = c.hist_rows if c.histograms else 0
        rows = x.shape[0] if exact else min(hist_rows, x.shape[0])
        if not acts or rows == 0:
            return
        dead = {a.name: ExactDead(activation_kind(a.module) in NONNEGATIVE) for a in acts} if exact else {}
        hists = {a.name: FixedHistogram(c.act_hist_min, c.act_hist_max, c.hist_bins) for a in acts} \
            if hist_rows else {}

        def observe(layer: Layer, z: torch.Tensor, y: torch.Tensor, start: int) -> None:
            if dead:
                dead[layer.name].observe(y)
            if hists and start < hist_rows:
                hists[layer.name].add(y[: hist_rows - start])

        inspect_pass(model, x, acts, observe, batch_size=PASS_BATCH, rows=rows)
        for name, d in dead.items():
            self._collect(tensors, summarizers, out, ("dead", name), d)
        for name, h in hists.items():
            self._collect_hist(tensors, summarizers, histograms, f"act/{name}", h)

    def _finish(self, epoch: int, tensors: dict, summarizers: list, out: dict, histograms: dict) -> LayerStats | None:
        host = read_back(tensors)
        for summarize in summarizers:
            summarize(host)
        if not out and not histograms:
            return None
        order = [layer.name for layer in self._layers.ordered] if self._layers else []
        layers = {name: out[name] for name in order if name in out}
        layers.update((name, metrics) for name, metrics in out.items() if name not in layers)
        return LayerStats(run_id=self.run_id, epoch=epoch, layers=layers, histograms=histograms)
