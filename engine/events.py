"""The one event stream of a run.

The training loop emits small frozen dataclasses; the headless printer, the JSONL run log
and the Textual app are consumers of the same events. Events hold plain Python values only
(no tensors), so a consumer can never touch live training state, and every event survives a
round trip through one line of JSON. This module does not import torch: the app reads run
logs and paints before PyTorch has finished importing.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

EVENTS_FILE = "events.jsonl"

Consumer = Callable[["Event"], None]


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event: which run, and when (wall-clock seconds)."""

    run_id: str
    time: float = field(default_factory=time.time)

    #: whether the JSONL log keeps every one of these (False: throttled, see EventLog)
    logged_always: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """A run began (or resumed): what it trains, on which data and device."""

    run_dir: str
    config: dict[str, Any]
    dataset: str  # the dataset really used (may differ from the config: offline fallback)
    dataset_note: str
    device: str
    input_size: int
    num_classes: int
    hidden_sizes: tuple[int, ...]
    activation: str
    activation_config: dict[str, Any]
    max_epochs: int
    steps_per_epoch: int
    train_size: int
    val_size: int
    test_size: int
    param_count: int
    start_epoch: int = 0  # epochs already done (non-zero when resumed)


@dataclass(frozen=True, kw_only=True)
class BatchProgress(Event):
    """A training batch finished. No loss here: reading it would sync the device."""

    epoch: int  # 1-based epoch being trained
    step: int  # 1-based batch within the epoch
    steps: int
    global_step: int

    logged_always: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True)
class EpochDone(Event):
    """An epoch finished, with its metrics (accuracies are fractions in [0, 1])."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    lr: float
    activation: str
    best_val_acc: float
    best_epoch: int
    improved: bool


@dataclass(frozen=True, kw_only=True)
class LayerStats(Event):
    """Per-layer probe results for one epoch (epoch 0 = at initialisation; epoch -1,
    `metrics.TRAINED_EPOCH` = the trained table, after training on the best checkpoint's weights).

    `layers` maps a layer name to flat `{metric: value}`; `histograms` maps
    `"<kind>/<layer>"` to `{"edges": [...], "counts": [...]}`.
    """

    epoch: int
    layers: dict[str, dict[str, float]]
    histograms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # layer -> actlab.engine.metrics.LAYER_KINDS


@dataclass(frozen=True, kw_only=True)
class StepStats(Event):
    """Per-step series gathered since the previous StepStats (read back once per interval).

    `series` maps a layer name to `{metric: [value per measured step]}`. The probes measure
    the first step of each epoch and then every `probes.gradients_every`-th step, so the
    values are not consecutive steps; `first_step` is the first measured one.
    """

    epoch: int
    first_step: int
    series: dict[str, dict[str, list[float]]]


@dataclass(frozen=True, kw_only=True)
class CheckpointSaved(Event):
    """A checkpoint reached disk atomically."""

    epoch: int  # epochs completed when it was written
    step: int  # global step
    path: str
    reason: str  # "last", "best", "manual", "interrupt"


@dataclass(frozen=True, kw_only=True)
class StateChanged(Event):
    """The run was paused or resumed by its controller."""

    state: str  # "running" or "paused"


@dataclass(frozen=True, kw_only=True)
class ActivationSwapped(Event):
    """The activation was replaced in place; training goes on with the same weights."""

    epoch: int  # the epoch that trains with the new activation
    step: int
    old: str
    new: str
    new_config: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """How a run ended: the figures of the RunFinished event, and of what `TrainingRun.run()`
    returns (which adds "failed" to the statuses below).

    status: "finished" (all epochs), "early-stopped", "stopped" (by its controller),
    "interrupted" (a signal), "diverged" (non-finite loss or gradient).
    """

    status: str
    epochs_run: int
    best_epoch: int
    best_val_acc: float
    test_acc: float | None
    test_loss: float | None
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class RunFinished(RunOutcome, Event):
    """The run ended without an error (its outcome, and how long it took)."""

    seconds: float


@dataclass(frozen=True, kw_only=True)
class RunFailed(Event):
    """The run raised. `error` is one line for people; `details` the traceback for the log."""

    error: str
    error_type: str
    details: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        BatchProgress,
        EpochDone,
        LayerStats,
        StepStats,
        CheckpointSaved,
        StateChanged,
        ActivationSwapped,
        RunFinished,
        RunFailed,
    )
}

TERMINAL_EVENTS = (RunFinished, RunFailed)


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-able dict with the event's type name under "type"."""
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return {"type": type(event).__name__, **data}


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """The event a dict describes, or None for unknown types (a newer writer)."""
    cls = EVENT_TYPES.get(data.get("type", ""))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if cls is RunStarted and "hidden_sizes" in kwargs:
        kwargs["hidden_sizes"] = tuple(kwargs["hidden_sizes"])
    try:
        return cls(**kwargs)
    except TypeError:
        return None


def event_to_json(event: Event) -> str:
    return json.dumps(event_to_dict(event), separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "item"):  # a stray 0-d numpy/torch scalar
        return value.item()
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def parse_event_line(line: str) -> Event | None:
    """One JSONL line -> event; None for a blank, truncated or foreign line."""
    line = line.strip()
    if not line:
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return event_from_dict(data)


class EventBus:
    """Hands every event to each consumer in turn."""

    def __init__(self, consumers: Iterable[Consumer] = ()) -> None:
        self._consumers: list[Consumer] = list(consumers)

    def subscribe(self, consumer: Consumer) -> None:
        self._consumers.append(consumer)

    def emit(self, event: Event) -> None:
        """Every consumer gets the event even when one before it raises; the first error is
        re-raised afterwards (so a broken terminal printer never keeps an event out of the log)."""
        error: BaseException | None = None
        for consumer in self._consumers:
            try:
                consumer(event)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error


class EventLog:
    """Consumer that appends events to `<run_dir>/events.jsonl`.

    Every event but batch progress is written; progress at most once per
    `progress_interval` seconds so a watcher sees the bar move without a line per batch.
    Lines reach the file as they are written, not when an 8 KB buffer fills: every line is
    flushed to the OS at once (the lines are few: progress and step statistics about twice a
    second each, the rest once per epoch), so a watcher sees a training run's lines within
    its poll interval, also across the silent epoch-end work. Epoch-level events are also
    fsync'd, so a kill loses at most the lines of the epoch in progress, and a kill mid-write
    leaves one truncated last line that every reader skips. When the disk refuses a write
    (full, read-only), the log stops writing, keeps what reached the file, and says why in
    `error`; it never raises into the training loop, which checks `error` once per epoch.
    """

    error: str = ""  # why the log stopped writing, one line ("" while it works)

    def __init__(self, run_dir: str | os.PathLike[str], progress_interval: float = 0.5) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_truncated_tail()
        self._file = open(self.path, "a", encoding="utf-8")
        self._progress_interval = progress_interval
        self._last_progress = -math.inf

    def _repair_truncated_tail(self) -> None:
        """End a truncated last line (left by a kill) so appended events start cleanly."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")

    def __call__(self, event: Event) -> None:
        if self._file.closed:
            return
        if not event.logged_always:
            now = time.monotonic()
            if now - self._last_progress < self._progress_interval:
                return
            self._last_progress = now
        try:
            self._file.write(event_to_json(event) + "\n")
        except OSError as exc:
            self._broken(exc)
            return
        self.flush(sync=isinstance(event, (EpochDone, LayerStats, CheckpointSaved, RunStarted, *TERMINAL_EVENTS)))

    def flush(self, sync: bool = True) -> None:
        """Hand the written lines to the OS (readers see them); `sync` also fsyncs them to disk."""
        if self._file.closed:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._broken(exc)
            return
        if not sync:
            return
        try:
            os.fsync(self._file.fileno())
        except OSError:
            pass

    def _broken(self, exc: OSError) -> None:
        reason = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        self.error = f"cannot write the run log {self.path}: {reason}"
        try:
            self._file.close()  # may fail again flushing the same bytes; the file is closed anyway
        except OSError:
            pass

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            try:
                self._file.close()
            except OSError as exc:
                self._broken(exc)


def read_events(run_dir_or_file: str | os.PathLike[str]) -> list[Event]:
    """All readable events of a run folder (or events file); bad or truncated lines skipped."""
    path = Path(run_dir_or_file)
    if path.is_dir():
        path = path / EVENTS_FILE
    with open(path, encoding="utf-8", errors="replace") as f:
        return [e for e in map(parse_event_line, f) if e is not None]


class EventFollower:
    """Reads an events file as it grows: each `poll()` returns the complete new events.

    A partial last line is kept until its newline arrives, so a writer caught mid-line (or
    killed mid-line) never yields a broken event.
    """

    def __init__(self, run_dir_or_file: str | os.PathLike[str]) -> None:
        path = Path(run_dir_or_file)
        self.path = path / EVENTS_FILE if path.is_dir() else path
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[Event]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when data ended with a newline
        events = (parse_event_line(line.decode("utf-8", errors="replace")) for line in lines)
        return [e for e in events if e is not None]

    def follow(self, interval: float = 0.25, stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
        """Yield events as they arrive until a terminal event or `stop()`."""
        while not stop():
            for event in self.poll():
                yield event
                if isinstance(event, TERMINAL_EVENTS):
                    return
            time.sleep(interval)
