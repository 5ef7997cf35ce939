"""The one back channel into a run: commands queued by any thread, applied between batches.

The app, a signal handler or a study worker steer a run only through a `RunControl`; the
loop drains it between batches, so nothing outside the training thread touches the model.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    """One queued request: kind is "pause", "resume", "stop", "save" or "swap"."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)


class RunControl:
    """Thread-safe remote control of a run; commands apply between batches."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def pause(self) -> None:
        self._queue.put(Command("pause"))

    def resume(self) -> None:
        self._queue.put(Command("resume"))

    def stop(self, status: str = "stopped") -> None:
        """End the run after the current batch; status "stopped" or "interrupted"."""
        self._queue.put(Command("stop", {"status": status}))

    def save(self) -> None:
        self._queue.put(Command("save"))

    def swap_activation(self, name: str, **config: Any) -> None:
        """Queue a hot swap; an unknown name raises ValueError here, in the caller's thread."""
        from .activations import canonical_name

        self._queue.put(Command("swap", {"name": canonical_name(name), "config": config}))

    def get(self, timeout: float | None = None) -> Command | None:
        """The next command, or None when none arrives (at once, or within `timeout` s)."""
        try:
            if timeout is None:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
