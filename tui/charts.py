"""Plotext charts: accuracy and loss over epochs, and the activation's f(x) and f'(x).

Each chart subclasses textual-plotext's `PlotextPlot`, owns its `self.plt`, and replots
only when its `data` reactive gets a new (frozen) snapshot. Earlier runs of the session are
drawn in a faint grey behind the current one; without colour (NO_COLOR) the series differ
by marker instead.
"""

from __future__ import annotations

import math
from typing import Any

from textual.reactive import reactive
from textual_plotext import PlotextPlot

from .feed_items import Curve
from .colours import CHANCE, EARLIER, SWAP, TRAIN, VAL, hex_colour, overlay_colour, overlay_rgb
from .session import MetricsData

METRIC_TITLES = {"acc": "accuracy %", "loss": "loss"}
#: the accuracy axis spans at least this many points, so 9.7-10.0% does not look like learning
MIN_ACC_SPAN = 10.0


def _integer_ticks(lo: int, hi: int, most: int = 6) -> list[int]:
    """At most `most` integer ticks from lo to hi, evenly stepped."""
    span = max(1, hi - lo)
    step = max(1, math.ceil(span / max(1, most - 1)))
    return list(range(lo, hi + 1, step))


class Chart(PlotextPlot):
    """A plotext chart that replots on resize (and when a subclass's data changes), with the
    colour key in the border title and the NO_COLOR switch."""

    def replot(self) -> None:
        """Clear the figure and draw it again from the widget's data."""
        self.plt.clear_figure()
        self.draw(self.plt)

    def draw(self, plt: Any) -> None:
        """Plot the widget's data on the cleared figure `plt` (plotext's module API)."""
        raise NotImplementedError

    def on_resize(self) -> None:
        self.replot()

    @property
    def no_color(self) -> bool:
        return bool(getattr(self.app, "no_color", False))

    def colour_key(self, pairs: list[tuple[str, str, str]]) -> str:
        """A border-title key like '━ train  ━ val', each glyph in its series colour."""
        parts = []
        for glyph, label, colour in pairs:
            parts.append(f"[{colour}]{glyph}[/] {label}" if colour and not self.no_color else f"{glyph} {label}")
        return " ".join(parts)


class MetricsChart(Chart):
    """Train and validation accuracy (or loss) per epoch, with hot swaps marked."""

    data: reactive[MetricsData] = reactive(lambda: MetricsData("acc"))

    def __init__(self, metric: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.set_reactive(MetricsChart.data, MetricsData(metric))

    def watch_data(self) -> None:
        self.replot()

    def draw(self, plt: Any) -> None:
        d = self.data
        title = METRIC_TITLES.get(d.metric, d.metric)
        key = [("━", "train", hex_colour(TRAIN)), ("━", "val", hex_colour(VAL))]
        if d.previous:
            key.append(("┄", "earlier", hex_colour(EARLIER)))
        self.border_title = f"{title} {self.colour_key(key)}"
        last = 1
        values: list[float] = []
        for series in d.previous:
            if series.epochs:
                plt.plot(list(series.epochs), list(series.val), color=EARLIER,
                         marker="·" if self.no_color else "braille")
                last = max(last, series.epochs[-1])
        for i, series in enumerate(d.overlays):
            if series.epochs:
                plt.plot(list(series.epochs), list(series.val), color=overlay_rgb(series.colour),
                         marker="braille" if not self.no_color else "0123456789"[i % 10])
                last = max(last, series.epochs[-1])
                values += series.val
        # the legend of the overlaid runs, each in its colour
        self.border_subtitle = self.colour_key([("━", s.label, overlay_colour(s.colour)) for s in d.overlays])
        cur = d.current
        if cur is not None and cur.epochs:
            plt.plot(list(cur.epochs), list(cur.train), color=TRAIN, marker="braille")
            plt.plot(list(cur.epochs), list(cur.val), color=VAL, marker="hd")
            last = max(last, cur.epochs[-1])
            values += cur.train + cur.val
        for epoch, name in d.swaps:
            x = epoch - 0.5
            plt.vline(x, SWAP)
            last = max(last, epoch)
        hi = max(last, 2)
        plt.xlim(0.5, hi + 0.5)
        plt.xticks(_integer_ticks(1, hi, max(2, self.size.width // 8)))
        finite = [v for v in values if math.isfinite(v)]
        if d.metric == "acc" and finite:
            if d.chance is not None and min(finite) - d.chance < MIN_ACC_SPAN:  # near chance: show it
                plt.hline(d.chance, CHANCE)
                finite.append(d.chance)
            lo, top = min(finite), max(finite)
            if top - lo < MIN_ACC_SPAN:
                mid = (top + lo) / 2
                lo, top = max(0.0, mid - MIN_ACC_SPAN / 2), min(100.0, max(mid + MIN_ACC_SPAN / 2, lo + MIN_ACC_SPAN))
            plt.ylim(lo - 0.5, top + 0.5)
        if d.swaps:
            plt.xlabel("epoch   │ hot swap: " + ", ".join(f"{name}@{epoch}" for epoch, name in d.swaps))
        plt.grid(False, False)
        self.refresh()


class CurveChart(Chart):
    """The current activation's f(x) and f'(x) on [-5, 5]."""

    curve: reactive[Curve | None] = reactive(None)
    placeholder: reactive[str] = reactive("loading PyTorch…")

    def watch_curve(self) -> None:
        self.replot()

    def draw(self, plt: Any) -> None:
        c = self.curve
        key = self.colour_key([("━", "f(x)", hex_colour(VAL)), ("┄", "f′(x)", hex_colour(TRAIN))])
        if c is None:
            self.border_title = f"activation  {key}"
            self.border_subtitle = self.placeholder
            plt.xlim(-5, 5)
            self.refresh()
            return
        self.border_title = f"{c.name}  {key}"
        self.border_subtitle = c.formula
        plt.hline(0, EARLIER)
        plt.vline(0, EARLIER)
        plt.plot(list(c.xs), list(c.dys), color=TRAIN, marker="braille")
        plt.plot(list(c.xs), list(c.ys), color=VAL, marker="hd")
        plt.xlim(-5, 5)
        plt.xticks([-5, -2.5, 0, 2.5, 5])
        finite = [v for v in (*c.ys, *c.dys) if math.isfinite(v)]
        if finite:
            lo, hi = min(finite), max(finite)
            pad = (hi - lo) * 0.05 or 0.5
            plt.ylim(lo - pad, hi + pad)
        plt.grid(False, False)
        self.refresh()
