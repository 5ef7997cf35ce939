"""The headless printer: a consumer that turns run events into terminal lines.

On a terminal it draws a batch progress bar that redraws in place (at most 10 times a
second); on a pipe or a nohup log it prints plain lines only, one per epoch. When the
stream goes away (the SSH session closed, the pipe reader quit), the printer falls silent
and the run goes on to its checkpoint: printing is never a reason for a run to fail.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from actlab.engine.events import (ActivationSwapped, BatchProgress, CheckpointSaved, EpochDone, Event, RunFailed,
                                  RunFinished, RunStarted, StateChanged)

BAR_WIDTH = 30


def format_epoch(e: EpochDone, max_epochs: int) -> str:
    width = len(str(max_epochs))
    best = "  *best" if e.improved else ""
    return (f"epoch {e.epoch:>{width}}/{max_epochs}  train loss {e.train_loss:.4f} acc {e.train_acc * 100:6.2f}%  "
            f"val loss {e.val_loss:.4f} acc {e.val_acc * 100:6.2f}%  {e.seconds:6.1f}s{best}")


class HeadlessPrinter:
    """Prints one line per epoch, and a progress bar when the stream is a terminal."""

    def __init__(self, stream: TextIO | None = None, *, progress: bool | None = None, verbose: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.progress = self.stream.isatty() if progress is None else progress
        self.verbose = verbose
        self.max_epochs = 0
        self._bar_shown = False
        self._last_bar = 0.0

    def _line(self, text: str) -> None:
        self._clear_bar()
        print(text, file=self.stream, flush=True)

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\x1b[2K")
            self._bar_shown = False

    def _gone(self) -> None:
        """The stream broke (hung-up terminal: EIO, closed pipe: EPIPE): print nothing more.

        For the process's own stdout/stderr the descriptor is pointed at /dev/null, so the
        interpreter's final flush does not fail again (which would turn the exit code into 120).
        """
        self.progress = self.verbose = False
        self._bar_shown = False
        broken = self.stream
        self.stream = open(os.devnull, "w")
        if broken in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, broken.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass

    def note(self, text: str) -> None:
        """A one-line note from the command itself (e.g. why a resume starts over)."""
        try:
            self._line(f"note: {text}")
        except (OSError, ValueError):
            self._gone()

    def __call__(self, event: Event) -> None:
        try:
            self._print(event)
        except (OSError, ValueError):  # ValueError: the stream was closed under us
            self._gone()

    def _print(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.max_epochs = event.max_epochs
            if event.dataset_note:
                self._line(f"note: {event.dataset_note}")
            shape = "-".join(str(s) for s in (event.input_size, *event.hidden_sizes, event.num_classes))
            resumed = f", resumed after epoch {event.start_epoch}" if event.start_epoch else ""
            self._line(f"run {event.run_id}: {event.activation} MLP {shape} on {event.dataset} "
                       f"({event.train_size}/{event.val_size}/{event.test_size}), {event.device}{resumed}")
            self._line(f"run folder: {event.run_dir}")
        elif isinstance(event, BatchProgress):
            if self.progress:
                now = time.monotonic()
                if now - self._last_bar >= 0.1 or event.step == event.steps:
                    self._last_bar = now
                    filled = int(BAR_WIDTH * event.step / max(1, event.steps))
                    bar = "#" * filled + "." * (BAR_WIDTH - filled)
                    self.stream.write(f"\r\x1b[2Kepoch {event.epoch}/{self.max_epochs} [{bar}] "
                                      f"{event.step}/{event.steps}")
                    self.stream.flush()
                    self._bar_shown = True
        elif isinstance(event, EpochDone):
            self._line(format_epoch(event, self.max_epochs))
        elif isinstance(event, CheckpointSaved):
            if self.verbose or event.reason in ("manual", "interrupt"):
                self._line(f"checkpoint ({event.reason}) saved: {event.path}")
        elif isinstance(event, StateChanged):
            self._line(f"run {event.state}")
        elif isinstance(event, ActivationSwapped):
            self._line(f"activation swapped: {event.old} -> {event.new} (epoch {event.epoch})")
        elif isinstance(event, RunFinished):
            test = f", test acc {event.test_acc * 100:.2f}%" if event.test_acc is not None else ""
            why = f" ({event.message})" if event.message else ""
            self._line(f"{event.status}{why}: best val acc {event.best_val_acc * 100:.2f}% at epoch "
                       f"{event.best_epoch}{test}, {event.epochs_run} epochs in {event.seconds:.1f}s")
        elif isinstance(event, RunFailed):
            self._clear_bar()  # the command prints the error itself, on stderr
