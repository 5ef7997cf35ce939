"""Per-layer panels: dead neurons (and saturation), gradient sparklines, histograms, and the
layers view (any per-layer metric over epochs).

Text panels, not plotext: one row per layer reads at a glance in an 80x24 terminal, keeps
every layer visible at once, and works without colour (NO_COLOR adds `!`/`!!` markers where
colour would have warned). Each panel renders from a frozen snapshot in its `data` reactive
and re-renders on resize, so bars always fill the width.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from .colours import TRAIN, VAL, hex_colour
from .session import DeadData, GradData, Hist, HistData, LayersData
from .textplots import FULL, bar, fmt_pct, fmt_sci, ridgeline, sparkline

#: dead (or saturated) share at or above which a layer shows as a warning, and as bad
WARN_AT, BAD_AT = 0.10, 0.50
LABEL = 5  # "act10" / "fc10 " / "out  "


class _Panel(Widget):
    """A text panel with theme colours and the NO_COLOR switch."""

    DEFAULT_CSS = """
    _Panel {
        height: auto;
    }
    """

    def colour(self, name: str) -> str:
        theme = self.app.current_theme
        return getattr(theme, name, None) or ""

    @property
    def no_color(self) -> bool:
        return bool(getattr(self.app, "no_color", False))

    def severity(self, fraction: float | None) -> tuple[str, str]:
        """(style, marker) for a dead/saturated share."""
        if fraction is None or not math.isfinite(fraction):
            return "dim", ""
        if fraction >= BAD_AT:
            return self.colour("error"), " !!"
        if fraction >= WARN_AT:
            return self.colour("warning"), " !"
        return self.colour("success"), ""

    def bar(self, out: Text, fraction: float | None, width: int) -> str:
        """Append a severity-coloured bar (filled part coloured, the rest dim); its NO_COLOR marker."""
        style, mark = self.severity(fraction)
        cells = bar(fraction or 0.0, width)
        filled = cells.count(FULL)
        out.append(cells[:filled], style=style)
        out.append(cells[filled:], style="dim")
        return mark

    def empty(self, message: str) -> Text:
        return Text(message, style="dim italic")


class DeadPanel(_Panel):
    """A bar per hidden layer: dead neurons / size and %; for smooth activations the saturated share."""

    data: reactive[DeadData] = reactive(DeadData, layout=True)
    ended: reactive[bool] = reactive(False)

    def render(self) -> Text:
        d = self.data
        if not d.has_run:
            return self.empty("no run yet")
        if d.epoch is None or not d.rows:
            return self.empty("no layer statistics yet" if not self.ended else "no layer statistics (probes off?)")
        width = max(12, self.content_size.width)
        out = Text(no_wrap=True, overflow="crop")
        counts_w = max(len(f"{r.size}/{r.size}") for r in d.rows if r.size) if any(r.size for r in d.rows) else 5
        marks = 3 if self.no_color else 0
        show_counts = width - LABEL - 1 - (1 + counts_w + 7 + marks) >= 6  # else only the %
        tail = (1 + counts_w if show_counts else 0) + 7 + marks
        bar_w = max(4, width - LABEL - 1 - tail)
        for i, row in enumerate(d.rows):
            if i:
                out.append("\n")
            out.append(f"{row.layer:<{LABEL}} ")
            mark = self.bar(out, row.dead_frac, bar_w)
            dead = "-" if row.dead is None else f"{row.dead:.0f}"
            counts = f"{dead}/{row.size}" if row.size else dead
            if show_counts:
                out.append(f" {counts:>{counts_w}}")
            out.append(f" {fmt_pct(row.dead_frac):>6}")
            if self.no_color:
                out.append(f"{mark:<3}")
            if d.show_saturation:
                out.append("\n" + " sat".ljust(LABEL) + " ")
                s_mark = self.bar(out, row.saturation, bar_w)
                if show_counts:
                    out.append(f" {'':>{counts_w}}")
                out.append(f" {fmt_pct(row.saturation):>6}")
                if self.no_color:
                    out.append(f"{s_mark:<3}")
        return out

    def title(self) -> str:
        d = self.data
        when = ("init" if d.epoch == 0 else "trained (best weights)" if d.epoch == -1
                else f"epoch {d.epoch}" if d.epoch else "")
        what = "dead / saturated" if d.show_saturation else "dead neurons"
        return f"{what} · {when}" if when else what


class GradPanel(_Panel):
    """A sparkline per Linear layer of its mean |gradient|, on one log scale for all layers."""

    data: reactive[GradData] = reactive(GradData, layout=True)

    def render(self) -> Text:
        d = self.data
        if not d.rows:
            return self.empty("no gradient statistics yet")
        width = max(20, self.content_size.width)
        value_w = 8
        spark_w = max(4, width - LABEL - 2 - value_w)
        logs = {name: [math.log10(v) if v > 0 and math.isfinite(v) else math.nan for v in values[-spark_w:]]
                for name, values in d.rows}
        finite = [v for series in logs.values() for v in series if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        out = Text(no_wrap=True, overflow="crop")
        colour = hex_colour(TRAIN)
        if d.warning:
            out.append(("!! " if self.no_color else "") + d.warning + "\n", style=f"bold {self.colour('warning')}")
        for i, (name, values) in enumerate(d.rows):
            if i:
                out.append("\n")
            out.append(f"{name:<{LABEL}} ")
            out.append(sparkline(logs[name], spark_w, lo, hi).ljust(spark_w), style=colour)
            out.append(f" {fmt_sci(values[-1] if values else None):>{value_w}}")
        return out

    def title(self) -> str:
        per = "per step" if self.data.per == "step" else "per epoch"
        return f"mean |grad| · {per} · log scale"


class HistPanel(_Panel):
    """Activation histograms per layer at the last epoch end, and the init-time gradient ones.

    Side by side when the panel is wide enough, else one above the other; each layer gets
    up to three rows when there is room.
    """

    data: reactive[HistData] = reactive(HistData, layout=True)

    #: at this width or more the two sections sit side by side
    SIDE_BY_SIDE = 64

    def render(self) -> Text:
        d = self.data
        if not d.acts and not d.grads:
            return self.empty("no histograms yet")
        width = max(20, self.content_size.width)
        height = self.content_size.height or 100
        when = "init" if d.act_epoch == 0 else f"epoch {d.act_epoch}"
        sections = [(f"activations · {when} (log counts)", d.acts, hex_colour(VAL)),
                    ("gradients at init · log10 |g|", d.grads, hex_colour(TRAIN))]
        sections = [s for s in sections if s[1]]
        if len(sections) == 2 and width >= self.SIDE_BY_SIDE:
            col = (width - 2) // 2
            per = _rows_per_layer(height - 1, max(len(d.acts), len(d.grads)))
            left, right = (_section(*s, col, per) for s in sections)
            lines = []
            for i in range(max(len(left), len(right))):
                line = left[i].copy() if i < len(left) else Text()
                line.align("left", col)
                line.append("  ")
                if i < len(right):
                    line.append_text(right[i])
                lines.append(line)
        else:
            per = _rows_per_layer(height - len(sections), len(d.acts) + len(d.grads))
            lines = [line for s in sections for line in _section(*s, width, per)]
        return Text("\n", no_wrap=True, overflow="crop").join(lines)


class LayersPanel(_Panel):
    """Every per-layer metric the probes recorded, one at a time (`m` / `M` pick it): a row
    per layer with its kind, a sparkline over epochs and the latest value."""

    data: reactive[LayersData] = reactive(LayersData, layout=True)

    def render(self) -> Text:
        d = self.data
        if not d.rows:
            return self.empty("no layer statistics yet")
        width = max(24, self.content_size.width)
        label_w = min(12, max(len(r.layer) for r in d.rows))
        kind_w = 4
        value_w = 9
        spark_w = max(4, width - label_w - kind_w - value_w - 3)
        out = Text(no_wrap=True, overflow="crop")
        index = d.metrics.index(d.metric) + 1 if d.metric in d.metrics else 0
        out.append(f"{d.metric}", style="bold")
        out.append(f"  ({index}/{len(d.metrics)}, m/M change) · epochs {d.epochs[0]}…{d.epochs[-1]}\n", style="dim")
        colour = hex_colour(VAL)
        for i, row in enumerate(d.rows):
            if i:
                out.append("\n")
            out.append(f"{row.layer[:label_w]:<{label_w}} ")
            out.append(f"{row.kind[:kind_w]:<{kind_w}} ", style="dim")
            out.append(sparkline(row.values, spark_w).ljust(spark_w), style=colour)
            last = next((v for v in reversed(row.values) if math.isfinite(v)), None)
            out.append(f" {fmt_sci(last):>{value_w - 1}}")
        return out

    def title(self) -> str:
        return f"layers · {self.data.metric or 'metrics'} over epochs"


def _rows_per_layer(height: int, layers: int) -> int:
    return max(1, min(3, height // max(1, layers)))


def _section(title: str, hists: tuple[Hist, ...], colour: str, width: int, per: int) -> list[Text]:
    """A heading, then each layer's ridgeline (`per` rows) with its value range."""
    lines = [Text(title, style="bold dim", overflow="ellipsis", no_wrap=True)]
    lines[0].truncate(width, overflow="ellipsis")
    ranges = [f"{_short(h.lo)}…{_short(h.hi)}" for h in hists]
    range_w = max(len(r) for r in ranges)
    plot_w = max(4, width - LABEL - 2 - range_w)
    for h, rng in zip(hists, ranges):
        rows = ridgeline(h.counts, plot_w, per)
        for j, row in enumerate(rows):
            last = j == len(rows) - 1
            line = Text(f"{h.layer if last else '':<{LABEL}} ")
            line.append(row, style=colour)
            if last:
                line.append(f" {rng:>{range_w}}", style="dim")
            lines.append(line)
    return lines


def _short(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) < 0.01 or abs(x) >= 1000:
        return f"{x:.0e}"
    return f"{x:.3g}"
