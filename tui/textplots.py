"""Plots made of text: sparklines, bars and small multi-row histograms (ridgelines).

Pure functions from numbers to strings, so the layer panels stay cheap to repaint, read
the same without colour (NO_COLOR), and are tested without a terminal.
"""

from __future__ import annotations

import math
from typing import Sequence

BLOCKS = " ▁▂▃▄▅▆▇█"  # 0..8 eighths of a cell
FULL = "█"
EMPTY = "░"


def resample(values: Sequence[float], width: int) -> list[float]:
    """`values` squeezed (mean of each bucket) or stretched (repeated) to exactly `width` points."""
    n = len(values)
    if width <= 0 or n == 0:
        return []
    if n <= width:  # stretch: each value spans width/n cells
        return [values[i * n // width] for i in range(width)]
    out = []
    for i in range(width):
        lo, hi = i * n // width, max((i + 1) * n // width, i * n // width + 1)
        chunk = values[lo:hi]
        out.append(sum(chunk) / len(chunk))
    return out


def sparkline(values: Sequence[float], width: int, lo: float | None = None, hi: float | None = None) -> str:
    """One row of block characters for the last `width` values, scaled to [lo, hi].

    Non-finite values show as a space; a flat series sits at mid-height.
    """
    values = list(values)[-width:] if width > 0 else []
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    lo = min(finite) if lo is None else lo
    hi = max(finite) if hi is None else hi
    span = hi - lo
    chars = []
    for v in values:
        if not math.isfinite(v):
            chars.append(" ")
        elif span <= 0:
            chars.append(BLOCKS[4])
        else:
            level = 1 + round((min(max(v, lo), hi) - lo) / span * 7)
            chars.append(BLOCKS[level])
    return "".join(chars)


def bar(fraction: float, width: int) -> str:
    """A horizontal bar `width` cells wide, filled to `fraction` (clamped to [0, 1])."""
    if width <= 0:
        return ""
    fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
    filled = round(fraction * width)
    if fraction > 0 and filled == 0:
        filled = 1  # any dead neuron at all is visible
    return FULL * filled + EMPTY * (width - filled)


def ridgeline(counts: Sequence[float], width: int, height: int = 1, log: bool = True) -> list[str]:
    """A histogram drawn as `height` rows of eighth-blocks, `width` columns wide (top row first).

    Counts are log-scaled by default (log1p), so a spike (ReLU's zeros) leaves the tail visible.
    """
    if width <= 0 or height <= 0:
        return []
    cols = resample([float(c) for c in counts], width)
    if log:
        cols = [math.log1p(max(c, 0.0)) for c in cols]
    top = max(cols, default=0.0)
    eighths = [round(c / top * height * 8) if top > 0 else 0 for c in cols]
    rows = []
    for r in range(height):
        floor = (height - 1 - r) * 8  # eighths below this row
        row = []
        for e in eighths:
            level = min(max(e - floor, 0), 8)
            row.append(BLOCKS[level])
        rows.append("".join(row).ljust(width))
    return rows


def fmt_duration(seconds: float | None) -> str:
    """`0:42`, `12:05`, `1:02:03`; `--:--` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_sci(value: float | None) -> str:
    """A magnitude in 3 significant figures, scientific below 0.01: `3.2e-05`, `0.153`."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    if abs(value) < 0.01 or abs(value) >= 1000:
        return f"{value:.1e}"
    return f"{value:.3g}"


def fmt_pct(fraction: float | None, digits: int = 1) -> str:
    if fraction is None or not math.isfinite(fraction):
        return "-"
    return f"{fraction * 100:.{digits}f}%"
