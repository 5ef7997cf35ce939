"""Histograms with fixed bins, accumulated on the device.

Fixed edges (from the config) make histograms comparable across layers, epochs and runs.
Values outside the range are counted in the first or last bin, so the counts always add up
to the number of values seen (NaNs are not counted). Counts accumulate in float64 from
chunks of at most 2^24 values, so they stay exact integers (a float32 `histc` would not).

Activation outputs are binned as they are, over a range fitted to the activation (with
`probes.act_hist_fit`, the default): a side where the function is bounded uses its bound
(sigmoid 0..1, tanh -1..1, ELU from -alpha, GELU from its minimum near -0.17), found by
evaluating the module on a wide grid, so a sigmoid layer fills all the bins instead of 4 of
a -4..12 range; an unbounded side (ReLU's top) is fitted once per run to the values of the
first pass that reaches the histogram (one read-back per layer per run), rounded up to a
round number, and then kept, so epochs stay comparable. Weight gradients as log10 |g|, because they span
many orders of magnitude across layers (sigmoid: ~1e-5 in the first layer, ~0.1 in the last);
exact zeros fall into the first bin.

`Histograms`, the quantity, rides on passes that happen anyway: per epoch the activation
outputs of the first `hist_rows` rows of the loop's validation pass (eval mode, no grad; an
epoch without one has no activation histograms: no pass is made for them); at
initialisation the first `hist_rows` training rows of the probes' own init pass (the exact
dead count's) and the init batch's weight gradients (`grad_init/<layer>`).
"""

from __future__ import annotations

import torch

from .. import metrics
from ..config import ProbesConfig
from ..errors import ConfigError
from .base import Moment, QuantityBase
from .readback import float_accumulator_dtype
from .report import Report
from .schedules import Clock, InitOnly
from .step_record import StepRecord
from .watched import Layer, LayerMap

_CHUNK = 1 << 24  # values per histc call: float32 counts are exact below 2^24
_TINY = 1e-30
#: the grid an activation is evaluated on to find its bounds
_BOUND_GRID = (-60.0, 60.0, 2401)


def activation_bounds(module: torch.nn.Module) -> tuple[float | None, float | None]:
    """(lowest, highest) output of an elementwise activation, rounded outwards to 0.01; None on a
    side where it is unbounded.

    A side counts as bounded when the function has (nearly) stopped changing between +-30 and
    +-60: by at most 5% of its size there (ReLU doubles; softsign, which creeps towards 1 as
    1/x, moves 1.6%); its bound is then the grid's minimum or maximum, or the limit extrapolated
    from the last two points where the function still creeps.
    """
    import math

    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    x = torch.linspace(*_BOUND_GRID, device=device)
    with torch.no_grad():
        y = module(x).double().cpu()
    if not torch.isfinite(y).all():
        return None, None
    quarter = (_BOUND_GRID[2] - 1) // 4
    flat_low = abs(float(y[0] - y[quarter])) <= 0.05 * max(1.0, abs(float(y[quarter])))
    flat_high = abs(float(y[-1] - y[-1 - quarter])) <= 0.05 * max(1.0, abs(float(y[-1 - quarter])))
    # the limit at infinity of a function still creeping like 1/x (softsign): 2 y(60) - y(30)
    far_low, far_high = float(2 * y[0] - y[quarter]), float(2 * y[-1] - y[-1 - quarter])
    low = math.floor(min(float(y.min()), far_low) * 100 + 1e-9) / 100 if flat_low else None
    high = math.ceil(max(float(y.max()), far_high) * 100 - 1e-9) / 100 if flat_high else None
    return low, high


def round_up(value: float) -> float:
    """A round number at or above `value` (1, 2 or 5 times a power of ten; 0 stays 0)."""
    if value <= 0:
        return 0.0
    import math

    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 5.0, 10.0) if step * power >= value)


def log10_magnitude(x: torch.Tensor) -> torch.Tensor:
    """log10 |x|, with exact zeros mapped to -30 (the first bin of any sensible range)."""
    return x.detach().float().abs().clamp_min(_TINY).log10()


class FixedHistogram:
    """Counts of values in `bins` equal bins over [lo, hi], out-of-range values clamped in."""

    def __init__(self, lo: float, hi: float, bins: int) -> None:
        if not hi > lo:
            raise ValueError(f"histogram range must have lo < hi, got [{lo}, {hi}]")
        self.lo, self.hi, self.bins = float(lo), float(hi), int(bins)
        self.counts: torch.Tensor | None = None

    def add(self, values: torch.Tensor) -> None:
        flat = values.detach().reshape(-1).float()
        if self.counts is None or self.counts.device != flat.device:
            self.counts = torch.zeros(self.bins, dtype=float_accumulator_dtype(flat.device), device=flat.device)
        for start in range(0, flat.numel(), _CHUNK):
            chunk = flat[start:start + _CHUNK].clamp(self.lo, self.hi)
            self.counts += torch.histc(chunk, self.bins, self.lo, self.hi).to(self.counts.dtype)

    def reset(self) -> None:
        self.counts = None

    def edges(self) -> list[float]:
        step = (self.hi - self.lo) / self.bins
        return [self.lo + i * step for i in range(self.bins)] + [self.hi]

    def as_dict(self, counts: torch.Tensor) -> dict[str, list[float]]:
        """The event form: `{"edges": [...bins + 1], "counts": [...bins]}` from read-back counts."""
        return {"edges": self.edges(), "counts": [float(c) for c in counts.tolist()]}


class Histograms(QuantityBase):
    """act/<layer> (validation pass; init: the init pass) and grad_init/<layer> (init batch)."""

    def __init__(self, *, bins: int = 64, rows: int = 512, act_range: tuple[float, float] = (-4.0, 12.0),
                 grad_range: tuple[float, float] = (-10.0, 0.0), fit: bool = True) -> None:
        super().__init__(InitOnly())
        self.bins, self.rows, self.act_range, self.grad_range, self.fit = bins, rows, act_range, grad_range, fit
        self._bounds: dict[str, tuple[float | None, float | None]] = {}  # the activation's own, per layer
        self._ranges: dict[str, tuple[float, float]] = {}  # fitted once per run (per activation)
        self._acts: dict[str, FixedHistogram] = {}
        self._seen: dict[str, int] = {}
        self._grads: dict[str, FixedHistogram] = {}
        self._activations: frozenset[str] = frozenset()
        self._linears: list[str] = []

    @classmethod
    def from_config(cls, config: ProbesConfig, clock: Clock) -> "Histograms | None":
        if not config.histograms:
            return None
        for lo_key, hi_key in (("act_hist_min", "act_hist_max"), ("grad_hist_min", "grad_hist_max")):
            if not getattr(config, hi_key) > getattr(config, lo_key):  # fail early, with the keys named
                raise ConfigError(f"probes.{lo_key} = {getattr(config, lo_key)} must be below "
                                  f"probes.{hi_key} = {getattr(config, hi_key)}")
        return cls(bins=config.hist_bins, rows=config.hist_rows,
                   act_range=(config.act_hist_min, config.act_hist_max),
                   grad_range=(config.grad_hist_min, config.grad_hist_max), fit=config.act_hist_fit)

    def watches(self, layer: Layer) -> bool:
        return layer.kind == metrics.ACTIVATION

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        self._linears = [layer.name for layer in layers.linears]
        if self.fit:  # a hot swap brings other bounds: fit again
            bounds = {layer.name: activation_bounds(layer.module) for layer in layers.activations}
            self._ranges = {k: v for k, v in self._ranges.items() if bounds.get(k) == self._bounds.get(k)}
            self._bounds = bounds

    def range_for(self, name: str, y: torch.Tensor) -> tuple[float, float]:
        """The layer's histogram range: fixed, or fitted on first use (bounds, else these values)."""
        if not self.fit:
            return self.act_range
        fitted = self._ranges.get(name)
        if fitted is None:
            lo, hi = self._bounds.get(name, (None, None))
            if lo is None or hi is None:  # one read-back, once per layer per run
                finite = y.detach().float()
                finite = finite[torch.isfinite(finite)]
                seen = (float(finite.min()), float(finite.max())) if finite.numel() else self.act_range
                lo = -round_up(-seen[0]) if lo is None else lo
                hi = round_up(seen[1]) if hi is None else hi
            if not hi > lo:
                lo, hi = self.act_range
            fitted = self._ranges[name] = (lo, hi)
        return fitted

    def epoch_start(self, epoch: int) -> None:
        self._acts, self._seen, self._grads = {}, {}, {}

    def _add(self, name: str, y: torch.Tensor, first_row: int | None = None) -> None:
        """The first `rows` rows of the passes of this epoch (or of the init pass)."""
        seen = self._seen.get(name, 0) if first_row is None else first_row
        if seen >= self.rows:
            return
        hist = self._acts.get(name)
        if hist is None:
            hist = self._acts[name] = FixedHistogram(*self.range_for(name, y), self.bins)
        part = y.detach()[: self.rows - seen]
        hist.add(part)
        if first_row is None:
            self._seen[name] = seen + part.shape[0]

    def evaluate(self, layer: Layer, y: torch.Tensor) -> None:
        self._add(layer.name, y)

    def begin_pass(self, moment: Moment, epoch: int, layers: LayerMap, rows: int) -> int:
        return min(self.rows, rows) if moment is Moment.INIT else 0

    def pass_output(self, layer: Layer, y: torch.Tensor, first_row: int) -> None:
        self._add(layer.name, y, first_row)

    def backward(self, grads: list[torch.Tensor]) -> None:
        for name, g in zip(self._linears, grads):
            hist = self._grads[name] = FixedHistogram(*self.grad_range, self.bins)
            hist.add(log10_magnitude(g))

    def report(self, moment: Moment, epoch: int, report: Report) -> None:
        acts, grads = self._acts, self._grads
        self._acts, self._seen, self._grads = {}, {}, {}
        if moment is Moment.TRAINED:
            return
        for prefix, hists in ((metrics.HIST_ACTIVATION, acts), (metrics.HIST_GRAD_INIT, grads)):
            for name, hist in hists.items():
                if hist.counts is not None:
                    key = f"{prefix}/{name}"
                    report.tensor(("hist", key), hist.counts)
                    report.then(lambda host, key=key, hist=hist: report.histogram(
                        key, **hist.as_dict(host[("hist", key)])))
