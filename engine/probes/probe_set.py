"""`ProbeSet`: the probes the training loop calls, assembled from the pieces in this package.

The loop (engine/training.py) calls, in order: `set_run_id`, `attach(model)`, `init_stats`
(epoch 0, before training), then per epoch `epoch_start`, per step `after_backward` and
`after_step`, about every 0.5 s `step_stats`, and after validation `epoch_stats`; `detach`
at the end (and `detach` + `attach` after an activation hot swap). `nonfinite_layer` only
when the loop found a non-finite loss.

Live hooks record training forward passes (module in train mode, gradients enabled); the
epoch-end validation pass (eval mode) only feeds the activation histograms, so validation
and the probes' own passes never count as training batches. Per step, the hooks only
reduce each layer's output to one value per neuron; the bookkeeping runs once per step on
the concatenation of all layers (a handful of small ops whatever the depth). Everything
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
from .nonfinite import Span, first_nonfinite
from .rates import (SampledNonzero, ZeroCounts, gradient_rate_metrics, neuron_gradient, neuron_max, neuron_max_abs,
                    output_rate_metrics)
from .readback import read_back
from .saturation import Saturation, activation_kind
from .step_ring import StepRing

#: rows per forward chunk of the full-pass probes (exact dead count, histograms)
PASS_BATCH = 8192
#: activations whose outputs are never negative: their per-neuron max needs no abs
NONNEGATIVE = frozenset({"relu", "relu6", "sigmoid", "softplus", "hardsigmoid"})
#: activations with f(z) = 0 exactly when z <= 0 and finite for any finite z: the per-neuron
#: max of their input z tells both whether the neuron was dead on the batch (max z <= 0) and
#: whether the Linear/Conv layer feeding it produced a NaN or +inf, in one reduction
INPUT_JUDGED = frozenset({"relu", "relu6"})

Tensors = dict[tuple[str, ...], torch.Tensor]
Metrics = dict[str, dict[str, float]]


class ProbeSet:
    """All configured probes on one model. README.md, "Per-layer probes", lists the metrics."""

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
        self._out_names: list[str] = []  # layers whose per-neuron output maxima are taken each step
        self._nonnegative: frozenset[str] = frozenset()
        self._input_judged: frozenset[str] = frozenset()  # relu-like: judged by max z (see INPUT_JUDGED)
        self._z_watched: dict[str, str] = {}  # other activations: name -> the layer feeding it, whose
        self._zsums: dict[str, torch.Tensor] = {}  # output sum (this step) the non-finite watch reads
        self._zeros: ZeroCounts | None = None  # per-neuron dead-on-batch counts, outputs and gradients
        self._sampled_out: SampledNonzero | None = None  # activation rates (sampled rows)
        self._sampled_grad: SampledNonzero | None = None  # gradient activation rates (sampled steps)
        self._saturation: dict[str, Saturation] = {}  # activation layers
        self._series: GradientSeries | None = None
        self._inv_numel: torch.Tensor | None = None
        self._drift = WeightDrift()
        self._ring: StepRing | None = None  # per-step rows: zero counts and the non-finite watch
        self._hists: dict[str, FixedHistogram] = {}  # activation outputs of the validation pass
        self._hist_seen: dict[str, int] = {}
        self._zero_grads: dict[str, torch.Tensor] = {}
        self._maxima: dict[str, torch.Tensor] = {}  # this step's per-neuron output maxima
        self._grad_parts: list[torch.Tensor] = []  # this step's per-neuron gradient values
        self._weight_params: list[nn.Parameter] = []
        self._bias_params: list[nn.Parameter | None] = []
        self._layout: tuple | None = None  # the ring's row layout, fixed at the first step
        self._spans: tuple[tuple, tuple[Span, ...]] | None = None  # non-finite search order, cached
        self._steps = 0  # optimizer steps seen
        self._epoch_steps = 0  # steps of the epoch in progress (schedules restart each epoch)
        self._sampled = True  # whether the batch in progress is a sampled one
        self._own_pass = False  # the probes' own full pass is running: live hooks stay quiet

    # -- the loop's interface ----------------------------------------------------------

    def set_run_id(self, run_id: str) -> None:
        self.run_id = run_id

    def attach(self, model: nn.Module) -> None:
        """Find the layers and hook them; accumulators of unchanged layers are kept."""
        self.detach()
        if self._ring is not None:
            self._count_zeros()  # rows written under the old layout (a hot swap mid-epoch)
        c = self.config
        layers = self._layers = find_layers(model)
        first = next(model.parameters(), None)
        self._device = first.device if first is not None else torch.device("cpu")
        params = list(layers.params)
        param_names = [p.name for p in params]
        watched = [layer for layer in layers.ordered if layer.kind == "activation"
                   or (layer.kind == "dropout" and c.rates)]
        self._out_names = [layer.name for layer in watched] if c.rates or c.nonfinite else []
        self._nonnegative = frozenset(a.name for a in layers.activations
                                      if activation_kind(a.module) in NONNEGATIVE)
        self._input_judged = frozenset(a.name for a in layers.activations
                                       if activation_kind(a.module) in INPUT_JUDGED and a.name in self._out_names)
        self._z_watched = {a.name: a.source.name for a in layers.activations if c.nonfinite and a.source is not None
                           and a.name not in self._input_judged}
        if (c.rates or c.grad_rates) and self._zeros is None:
            self._zeros = ZeroCounts()
        if c.rates and (self._sampled_out is None or self._sampled_out.keys != self._out_names):
            self._sampled_out = SampledNonzero(self._out_names)
        if c.grad_rates and (self._sampled_grad is None or self._sampled_grad.keys != param_names):
            self._sampled_grad = SampledNonzero(param_names)
        if c.saturation:
            self._saturation = {a.name: self._saturation.get(a.name) or Saturation(c.saturation_threshold)
                                for a in layers.activations}
        if params and (c.gradients or c.nonfinite):
            self._inv_numel = torch.tensor([1.0 / p.module.weight.numel() for p in params], device=self._device)
        if c.gradients and params and (self._series is None or self._series.names != param_names
                                       or self._series.buffer.device != self._device):
            self._series = GradientSeries(param_names, self._device, limit=c.series_limit)
        if (c.rates or c.grad_rates or c.nonfinite) and self._ring is None:
            self._ring = StepRing()
        self._weight_params = [p.module.weight for p in params]
        self._bias_params = [getattr(p.module, "bias", None) for p in params]
        self._layout = None
        if c.weights:
            self._drift.set_initial(self._weights())
        self._spans = None
        self._zsums = {}
        for layer in layers.ordered:
            hook = self._live_hook(layer) if layer.kind != "param" else None
            if hook is not None:
                self._hooks.forward(layer.module, hook)

    def detach(self) -> None:
        self._hooks.remove()

    def init_stats(self, model: nn.Module, data: Any) -> LayerStats | None:
        """Epoch 0: exact dead count and activation histograms over the training split, and
        one batch (`init_batch` rows, eval mode) for rates, saturation and weight gradients."""
        layers = self._layers_of(model)
        c = self.config
        tensors: Tensors = {}
        finish: list[Callable[[dict], None]] = []
        out: Metrics = {}
        histograms: dict[str, dict[str, list[float]]] = {}

        self._epoch_pass(model, data.train_x, exact=c.dead_exact_every > 0, hist=c.histograms, tensors=tensors,
                         finish=finish, out=out, histograms=histograms)

        x, y = data.train_x[: c.init_batch], data.train_y[: c.init_batch]
        acts = [a.name for a in layers.activations]
        maxima: dict[str, torch.Tensor] = {}
        sampled_out = SampledNonzero(acts) if c.rates else None
        saturation = {name: Saturation(c.saturation_threshold) for name in acts} if c.saturation else {}
        params = list(layers.params)
        weights = [p.module.weight for p in params]
        with_bias = [p for p in params if getattr(p.module, "bias", None) is not None]
        with HookRegistry() as hooks:
            for a in layers.activations:
                hooks.forward(a.module, self._init_hook(a, maxima, sampled_out, saturation))
            grads = init_gradients(model, x, y, weights + [p.module.bias for p in with_bias]) if params else []
        weight_grads = grads[: len(params)]
        bias_of = dict(zip([p.name for p in with_bias], grads[len(params):]))
        sampled_grad = SampledNonzero([p.name for p in params]) if c.grad_rates else None
        parts: dict[tuple[str, str], torch.Tensor] = {}
        if c.rates:
            parts.update((("out", name), maxima[name]) for name in acts if name in maxima)
        if c.grad_rates:
            for p, g in zip(params, weight_grads):
                parts[("grad", p.name)] = neuron_gradient(g, bias_of.get(p.name))
                sampled_grad.observe(p.name, g)
        for acc in (sampled_out, sampled_grad):
            if acc is not None:
                acc.end_step()
        if parts:
            zeros = ZeroCounts()
            zeros.add(torch.cat(list(parts.values())), tuple((k, v.numel()) for k, v in parts.items()))
            self._collect_rates(tensors, finish, out, ("init",), zeros, sampled_out, sampled_grad, live=False)
        for name, s in saturation.items():
            self._collect(tensors, finish, out, ("init_sat", name), s)
        if weight_grads and c.gradients:
            tensors[("init_grad", "stats")] = grad_stats(weight_grads, self._inv_numel)

            def grad_summary(host: dict, names=[p.name for p in params]) -> None:
                stats = host[("init_grad", "stats")]
                for i, name in enumerate(names):
                    out.setdefault(name, {}).update(grad_mean_abs=float(stats[i, 0]), grad_l2=float(stats[i, 1]),
                                                    grad_max=float(stats[i, 2]))
            finish.append(grad_summary)
        if weight_grads and c.histograms:
            for p, g in zip(params, weight_grads):
                hist = FixedHistogram(c.grad_hist_min, c.grad_hist_max, c.hist_bins)
                hist.add(log10_magnitude(g))
                self._collect_hist(tensors, finish, histograms, f"grad_init/{p.name}", hist)
        if c.weights:
            self._collect_drift(tensors, finish, out)
        return self._finish(0, tensors, finish, out, histograms)

    def epoch_start(self, epoch: int) -> None:
        if self._ring is not None:
            self._ring.take_unread()  # rows of earlier epochs do not count in this one
        for acc in (self._zeros, self._sampled_out, self._sampled_grad, *self._saturation.values()):
            if acc is not None:
                acc.reset()
        self._maxima, self._grad_parts = {}, []
        self._epoch_steps, self._sampled = 0, True  # every epoch samples and measures its first step
        self._hists, self._hist_seen = {}, {}
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
        step = self._steps + 1
        grads = [w.grad for w in self._weight_params]
        if any(g is None for g in grads):  # (`None in grads` would compare tensors: slow)
            grads = [self._grad_or_zero(p) for p in layers.params]
        if self._series is not None and self._epoch_steps % c.gradients_every == 0:
            self._series.observe(grad_stats(grads, self._inv_numel), step)
        if self._ring is not None and (c.grad_rates or c.nonfinite):
            self._grad_parts = [b.grad if b is not None and b.grad is not None else neuron_gradient(g, None)
                                for g, b in zip(grads, self._bias_params)]
        if self._sampled and self._sampled_grad is not None:
            for p, g in zip(layers.params, grads):
                self._sampled_grad.observe(p.name, g)

    def after_step(self, model: nn.Module) -> None:
        """This step's per-neuron values, outputs then gradients, become one ring row (one op)."""
        maxima, grads, zsums = self._maxima, self._grad_parts, self._zsums
        self._maxima, self._grad_parts, self._zsums = {}, [], {}
        ring = self._ring
        if ring is not None and len(maxima) == len(self._out_names) and len(zsums) == len(self._z_watched) \
                and (maxima or grads):
            parts = [maxima[name] for name in self._out_names] + [zsums[n].view(1) for n in self._z_watched] + grads
            if self._layout is None or len(self._layout) != len(parts):
                names = ([("out", n) for n in self._out_names] + [("z", self._z_watched[n]) for n in self._z_watched]
                         + [("grad", p.name) for p in self._layers.params])
                self._layout = tuple((k, p.numel()) for k, p in zip(names, parts))
            if ring.full():
                self._count_zeros()
            ring.write(parts, self._layout)  # the layout object is reused: its check is an identity test
        if self._sampled:
            for acc in (self._sampled_out, self._sampled_grad):
                if acc is not None:
                    acc.end_step()
        self._steps += 1
        self._epoch_steps += 1
        self._sampled = self._epoch_steps % self.config.sample_every == 0

    def _count_zeros(self) -> None:
        rows = self._ring.take_unread()
        if rows is not None and self._zeros is not None:
            self._zeros.add(rows, self._ring.layout)

    def epoch_stats(self, epoch: int, model: nn.Module, data: Any) -> LayerStats | None:
        """The epoch's live statistics, the exact dead count when due, and the histograms."""
        c = self.config
        tensors: Tensors = {}
        finish: list[Callable[[dict], None]] = []
        out: Metrics = {}
        histograms: dict[str, dict[str, list[float]]] = {}
        if self._ring is not None:
            self._count_zeros()
        if self._zeros is not None:
            self._collect_rates(tensors, finish, out, ("live",), self._zeros, self._sampled_out, self._sampled_grad,
                                live=True)
        for name, s in self._saturation.items():
            self._collect(tensors, finish, out, ("sat", name), s)
        if c.weights:
            self._collect_drift(tensors, finish, out)
        exact = c.dead_exact_every > 0 and epoch % c.dead_exact_every == 0
        hists, self._hists = self._hists, {}
        if hists:  # the activation histograms came from the validation pass
            for name, hist in hists.items():
                self._collect_hist(tensors, finish, histograms, f"act/{name}", hist)
        self._epoch_pass(model, data.train_x, exact=exact, hist=c.histograms and not hists, tensors=tensors,
                         finish=finish, out=out, histograms=histograms)
        if self._series is not None:
            for name, metrics in self._series.epoch_summary().items():
                out.setdefault(name, {}).update(metrics)
        return self._finish(epoch, tensors, finish, out, histograms)

    def step_stats(self, epoch: int) -> StepStats | None:
        if self._series is None:
            return None
        taken = self._series.take()
        if taken is None:
            return None
        first, series = taken
        return StepStats(run_id=self.run_id, epoch=epoch, first_step=first, series=series)

    def nonfinite_layer(self) -> str | None:
        if self._ring is None or not self.config.nonfinite or self._ring.buffer is None:
            return None
        return first_nonfinite(self._ring.recent(), self._spans_for(self._ring.layout))

    # -- hooks -------------------------------------------------------------------------

    def _live_hook(self, layer: Layer) -> Callable | None:
        """The hook of an activation or dropout layer. Training batches: its per-neuron output
        maxima, and on sampled batches the activation-rate counts and saturation. Eval-mode
        passes (the loop's validation): the activation histograms."""
        c = self.config
        name = layer.name
        watched = name in self._out_names
        nonnegative = name in self._nonnegative
        input_judged = name in self._input_judged
        z_watched = name in self._z_watched
        sampled_out = self._sampled_out if self._sampled_out is not None and name in self._sampled_out.keys else None
        saturation = self._saturation.get(name)
        histogram = c.histograms and layer.kind == "activation"
        if not (watched or z_watched or sampled_out or saturation or histogram):
            return None
        rows = c.sample_rows

        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                return
            if not module.training:
                if histogram and not torch.is_grad_enabled() and not self._own_pass:
                    self._observe_histogram(name, output)
                return
            if not torch.is_grad_enabled():
                return  # a no-grad pass in train mode: not a training batch
            if input_judged and inputs:
                self._maxima[name] = neuron_max(inputs[0])  # max z: <= 0 exactly when dead on the batch
            elif watched:
                self._maxima[name] = neuron_max_abs(output, nonnegative)
            if z_watched and inputs:
                self._zsums[name] = inputs[0].detach().sum()
            if self._sampled:
                if sampled_out is not None:
                    sampled_out.observe(name, output[:rows])
                if saturation is not None and inputs:
                    saturation.observe(module, inputs[0][:rows], output[:rows])

        return hook

    def _observe_histogram(self, name: str, output: torch.Tensor) -> None:
        """The first `hist_rows` rows of eval-mode passes in the epoch (the validation pass)."""
        c = self.config
        seen = self._hist_seen.get(name, 0)
        if seen >= c.hist_rows:
            return
        hist = self._hists.get(name)
        if hist is None:
            hist = self._hists[name] = FixedHistogram(c.act_hist_min, c.act_hist_max, c.hist_bins)
        part = output.detach()[: c.hist_rows - seen]
        hist.add(part)
        self._hist_seen[name] = seen + part.shape[0]

    def _init_hook(self, layer: Layer, maxima: dict, sampled_out: SampledNonzero | None,
                   saturation: dict) -> Callable:
        """The init batch: every row counts (rates and saturation over the whole batch)."""
        nonnegative = layer.name in self._nonnegative

        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            maxima[layer.name] = neuron_max_abs(output, nonnegative)
            if sampled_out is not None:
                sampled_out.observe(layer.name, output)
            if layer.name in saturation and inputs:
                saturation[layer.name].observe(module, inputs[0], output)
        return hook

    def _spans_for(self, layout: tuple) -> tuple[Span, ...]:
        """Where each layer sits in the step vector, in search order: outputs in forward
        order, then gradients in backward order (from the output towards the input)."""
        if self._spans is not None and self._spans[0] == layout:
            return self._spans[1]
        order = {layer.name: i for i, layer in enumerate(self._layers.ordered)}
        sources = {a.name: a.source.name for a in self._layers.activations if a.source is not None}
        forward, backward, start = [], [], 0
        for (kind, name), size in layout:
            if kind == "out" and name in self._input_judged and name in sources:
                name = sources[name]  # judged by its input: a NaN there comes from the layer feeding it
            if kind in ("out", "z"):
                forward.append((order.get(name, 0), Span(f"{name} (forward)", start, start + size)))
            else:
                backward.append((order.get(name, 0), Span(f"{name} (backward)", start, start + size)))
            start += size
        spans = tuple(s for _, s in sorted(forward, key=lambda item: item[0])) + \
            tuple(s for _, s in sorted(backward, key=lambda item: -item[0]))
        self._spans = (layout, spans)
        return spans

    # -- helpers -----------------------------------------------------------------------

    def _layers_of(self, model: nn.Module) -> LayerMap:
        if self._layers is None:
            self._layers = find_layers(model)
        return self._layers

    def _weights(self) -> dict[str, torch.Tensor]:
        return {p.name: p.module.weight for p in self._layers.params} if self._layers else {}

    def _bias_grad(self, p: Layer) -> torch.Tensor | None:
        bias = getattr(p.module, "bias", None)
        return bias.grad if bias is not None and bias.grad is not None else None

    def _grad_or_zero(self, p: Layer) -> torch.Tensor:
        g = p.module.weight.grad
        if g is not None:
            return g
        zero = self._zero_grads.get(p.name)
        if zero is None or zero.shape != p.module.weight.shape:
            zero = self._zero_grads[p.name] = torch.zeros_like(p.module.weight)
        return zero

    def _rate_owners(self) -> dict[str, str]:
        """Gradient rates are reported under the activation a param layer feeds, if any."""
        return dict(self._layers.paired_params) if self._layers else {}

    @staticmethod
    def _collect(tensors: Tensors, finish: list, out: Metrics, key: tuple[str, str], acc: Any) -> None:
        """Queue one layer's accumulator (`key[-1]` names the layer) for the one read-back,
        and its summary for after it."""
        own = acc.tensors()
        if not own:
            return
        for k, t in own.items():
            tensors[(*key, k)] = t
        finish.append(lambda host: out.setdefault(key[-1], {}).update(
            acc.summarize({k: host[(*key, k)] for k in own})))

    def _collect_rates(self, tensors: Tensors, finish: list, out: Metrics, key: tuple[str, ...], zeros: ZeroCounts,
                       sampled_out: SampledNonzero | None, sampled_grad: SampledNonzero | None, *,
                       live: bool) -> None:
        """Output rates per activation/dropout layer and gradient rates per param layer
        (reported under the activation it feeds); `live=False` (one init batch): no dead_live."""
        parts = {"zeros": zeros, "out": sampled_out, "grad": sampled_grad}
        own: dict[str, dict[str, torch.Tensor]] = {n: acc.tensors() for n, acc in parts.items() if acc is not None}
        if not own.get("zeros"):
            return
        for n, ts in own.items():
            for k, t in ts.items():
                tensors[(*key, n, k)] = t
        owners = self._rate_owners()
        steps = zeros.steps

        def summarize(host: dict) -> None:
            values = {n: {k: host[(*key, n, k)] for k in ts} for n, ts in own.items()}
            for kind, name in zeros.slices:
                counts = zeros.segment(values["zeros"], (kind, name))
                if kind == "out" and sampled_out is not None:
                    metrics = output_rate_metrics(counts, steps, sampled_out.share(values.get("out", {}), name))
                    if not live:
                        metrics.pop("dead_live"), metrics.pop("dead_live_frac")
                    out.setdefault(name, {}).update(metrics)
                elif kind == "grad" and sampled_grad is not None:
                    share = sampled_grad.share(values.get("grad", {}), name)
                    out.setdefault(owners.get(name, name), {}).update(gradient_rate_metrics(counts, steps, share))
        finish.append(summarize)

    @staticmethod
    def _collect_hist(tensors: Tensors, finish: list, histograms: dict, key: str, hist: FixedHistogram) -> None:
        if hist.counts is None:
            return
        tensors[("hist", key)] = hist.counts
        finish.append(lambda host: histograms.__setitem__(key, hist.as_dict(host[("hist", key)])))

    def _collect_drift(self, tensors: Tensors, finish: list, out: Metrics) -> None:
        for name, t in self._drift.tensors(self._weights()).items():
            tensors[("drift", name)] = t
            finish.append(lambda host, name=name: out.setdefault(name, {}).update(
                WeightDrift.summarize(host[("drift", name)])))

    def _epoch_pass(self, model: nn.Module, x: torch.Tensor, *, exact: bool, hist: bool, tensors: Tensors,
                    finish: list, out: Metrics, histograms: dict) -> None:
        """One eval-mode no-grad pass: the exact dead count over all of `x` when `exact`,
        activation histograms over its first `hist_rows` rows when `hist`."""
        c = self.config
        acts = self._layers_of(model).activations
        hist_rows = c.hist_rows if hist else 0
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

        self._own_pass = True
        try:
            inspect_pass(model, x, acts, observe, batch_size=PASS_BATCH, rows=rows)
        finally:
            self._own_pass = False
        for name, d in dead.items():
            self._collect(tensors, finish, out, ("dead", name), d)
        for name, h in hists.items():
            self._collect_hist(tensors, finish, histograms, f"act/{name}", h)

    def _finish(self, epoch: int, tensors: Tensors, finish: list, out: Metrics, histograms: dict) -> LayerStats | None:
        host = read_back(tensors)
        for summarize in finish:
            summarize(host)
        if not out and not histograms:
            return None
        order = [layer.name for layer in self._layers.ordered] if self._layers else []
        layers = {name: out[name] for name in order if name in out}
        layers.update((name, metrics) for name, metrics in out.items() if name not in layers)
        return LayerStats(run_id=self.run_id, epoch=epoch, layers=layers, histograms=histograms)
