"""Per-step vectors in a device ring: one row per training step, written with one op.

Each step the probes reduce every watched layer to one value per neuron (the outputs' max
|y|, the bias gradient); `StepRing.write` concatenates them straight into the next row of a
(capacity, width) device buffer (`torch.cat(..., out=row)`: a single small op whatever the
depth). Consumers read rows back in bulk: the zero counts of `rates.py` fold all unread rows
in with three ops every `capacity` steps (and before each report), and the non-finite
watch searches the last rows only when the loop has found a non-finite loss.
"""

from __future__ import annotations

from typing import Hashable

import torch

Layout = tuple[tuple[Hashable, int], ...]  # (key, width) of each segment, in row order


class StepRing:
    """The last `capacity` per-step rows; `layout` names the segments of a row."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.layout: Layout = ()
        self.buffer: torch.Tensor | None = None
        self.written = 0  # rows written since the layout was set
        self.read = 0  # rows handed to `take_unread`

    def write(self, parts: list[torch.Tensor], layout: Layout) -> None:
        """One step's row. A new layout (or device, or dtype) starts a new, empty ring;
        the caller takes the unread rows first when `full()`."""
        if layout is not self.layout:  # cheap per-step check; a changed layout is a new object
            self._configure(parts, layout)
        torch.cat(parts, out=self.buffer[self.written % self.capacity])
        self.written += 1

    def _configure(self, parts: list[torch.Tensor], layout: Layout) -> None:
        first = parts[0]
        width = sum(p.numel() for p in parts)
        if self.buffer is None or layout != self.layout or self.buffer.shape[1] != width \
                or self.buffer.device != first.device or self.buffer.dtype != first.dtype:
            self.buffer = torch.empty(self.capacity, width, device=first.device, dtype=first.dtype)
            self.written = self.read = 0
        self.layout = layout

    def full(self) -> bool:
        """Whether the next write would overwrite a row not yet taken."""
        return self.written - self.read >= self.capacity

    def take_unread(self) -> torch.Tensor | None:
        """The rows written since the last take, oldest first (a view valid until the next
        write, or a copy when wrapped)."""
        n = self.written - self.read
        if self.buffer is None or n <= 0:
            return None
        start = self.read % self.capacity
        self.read = self.written
        if start + n <= self.capacity:
            return self.buffer[start:start + n]
        return torch.cat([self.buffer[start:], self.buffer[: start + n - self.capacity]])

    def recent(self) -> torch.Tensor | None:
        """The rows still held, oldest first (for the non-finite search; a copy)."""
        if self.buffer is None or self.written == 0:
            return None
        n = min(self.written, self.capacity)
        start = (self.written - n) % self.capacity
        order = [(start + i) % self.capacity for i in range(n)]
        return self.buffer[order]

    def slices(self) -> dict[Hashable, slice]:
        out, start = {}, 0
        for key, width in self.layout:
            out[key] = slice(start, start + width)
            start += width
        return out
