"""Histograms with fixed bins, accumulated on the device.

Fixed edges (from the config) make histograms comparable across layers, epochs and runs.
Values outside the range are counted in the first or last bin, so the counts always add up
to the number of values seen (NaNs are not counted). Counts accumulate in float64 from
chunks of at most 2^24 values, so they stay exact integers (a float32 `histc` would not).

Activation outputs are binned as they are; weight gradients as log10 |g|, because they span
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
                 grad_range: tuple[float, float] = (-10.0, 0.0)) -> None:
        super().__init__(InitOnly())
        self.bins, self.rows, self.act_range, self.grad_range = bins, rows, act_range, grad_range
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
                   grad_range=(config.grad_hist_min, config.grad_hist_max))

    def watches(self, layer: Layer) -> bool:
        return layer.kind == metrics.ACTIVATION

    def attach(self, layers: LayerMap, record: StepRecord) -> None:
        self._linears = [layer.name for layer in layers.linears]

    def epoch_start(self, epoch: int) -> None:
        self._acts, self._seen, self._grads = {}, {}, {}

    def _add(self, name: str, y: torch.Tensor, first_row: int | None = None) -> None:
        """The first `rows` rows of the passes of this epoch (or of the init pass)."""
        seen = self._seen.get(name, 0) if first_row is None else first_row
        if seen >= self.rows:
            return
        hist = self._acts.get(name)
        if hist is None:
            hist = self._acts[name] = FixedHistogram(*self.act_range, self.bins)
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
