"""Histograms with fixed bins, accumulated on the device.

Fixed edges (from the config) make histograms comparable across layers, epochs and runs.
Values outside the range are counted in the first or last bin, so the counts always add up
to the number of values seen (NaNs are not counted). Counts accumulate in float64 from
chunks of at most 2^24 values, so they stay exact integers (a float32 `histc` would not).

Activation outputs are binned as they are; weight gradients as log10 |g|, because they span
many orders of magnitude across layers (sigmoid: ~1e-5 in the first layer, ~0.1 in the last);
exact zeros fall into the first bin.
"""

from __future__ import annotations

import torch

from .readback import float_accumulator_dtype

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
