"""The training step as a CUDA graph: one launch per step instead of dozens.

On a GPU this MLP's step is bound by kernel launches, not arithmetic: a graph replays the
whole step (forward, loss, backward, optimizer, running sums) with one call. A graph replays
fixed memory, so the step reads its batch from static buffers and accumulates into static
sums; the loop fills the buffers before each replay.

The recipe is PyTorch's ("whole network capture"): a few eager warm-up steps on a side stream
(they allocate the optimizer state and the autograd workspaces), then one capture. Warm-up
steps are real training steps, and the captured step is replayed at once for the batch it was
captured on, so the sequence of updates is the same as without a graph. Anything that changes
the parameters (a hot swap) drops the graph; the next steps warm up and capture again.
"""

from __future__ import annotations

from typing import Callable

import torch

GRAPH_MODES = ("auto", "on", "off")
#: eager steps on a side stream before a capture (PyTorch's recipe uses a few)
WARMUP_STEPS = 3


def graphs_supported(device: torch.device) -> bool:
    """Whether this device can capture CUDA graphs at all."""
    return device.type == "cuda" and torch.cuda.is_available()


class CapturedStep:
    """`step` (no arguments, reads and writes only static tensors) run eagerly for the warm-up,
    then captured and replayed. `failed` holds why a capture failed; the caller then keeps
    calling `step` eagerly (nothing of the failed capture ran)."""

    def __init__(self, step: Callable[[], None], device: torch.device, warmup: int = WARMUP_STEPS) -> None:
        self.step = step
        self.device = device
        self.warmup = warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = ""
        self._warmed = 0
        self._side: torch.cuda.Stream | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> None:
        """One training step: eager during the warm-up and after a failed capture, else a replay."""
        if self.graph is not None:
            self.graph.replay()
        elif self.failed:
            self.step()
        elif self._warmed < self.warmup:
            self._warm_step()
        else:
            self._capture()
            if self.graph is not None:
                self.graph.replay()  # the capture only recorded this batch's step
            else:
                self.step()

    def _warm_step(self) -> None:
        if self._side is None:
            try:
                self._side = torch.cuda.Stream(self.device)
            except Exception as exc:  # no usable CUDA runtime after all: nothing ran yet
                self.failed = _first_line(exc)
                self.step()
                return
        current = torch.cuda.current_stream(self.device)
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side):
            self.step()
        current.wait_stream(self._side)
        self._warmed += 1

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.step()
        except Exception as exc:  # an op that cannot be captured, an old driver, ...
            self.failed = _first_line(exc)
            return
        self.graph = graph


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
