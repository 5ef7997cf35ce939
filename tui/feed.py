"""Where the app's events come from: a live training session, or a run folder being watched.

Both sources sit behind one interface, `Feed`. The app calls `feed.run(sink, cancelled)` in a
named thread worker; the feed calls `sink(item)` from that thread with engine events and
`messages` items, and nothing else crosses threads. `sink` is `EventBuffer.put`: the app
drains the buffer on a UI timer, so the training thread never touches a widget.

- `LiveFeed` trains the lab's configuration and takes commands from the UI thread (pick
  another activation, hot-swap, pause, save, queue all, close). Its engine is injectable:
  `TorchEngine` is the real one, imported lazily inside the worker so the app paints before
  PyTorch has loaded; tests pass a fake that records commands and emits scripted events.
- `WatchFeed` follows a run folder's `events.jsonl` as it grows (`EventFollower`), for a run
  started with `actlab run --headless` under nohup or tmux. It takes no commands.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from actlab.engine.events import BatchProgress, EventFollower, RunStarted

from .feed_items import Catalog, Curve, FeedError, FeedStatus, WriterStatus

Sink = Callable[[object], None]

#: f(x) and f'(x) are drawn on this interval
CURVE_RANGE = (-5.0, 5.0)
CURVE_POINTS = 201


class ReadOnlyFeed(Exception):
    """The feed takes no commands (a watched run folder)."""


class NoRunInProgress(Exception):
    """A command that needs a run in progress (hot swap, pause, save) came with none."""


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- the buffer between the threads ---------------------------------------------------------

class EventBuffer:
    """Thread-safe hand-over from the feed thread to the UI timer.

    Batch progress collapses at the door (only the latest matters), so a fast GPU run costs
    the UI one progress update per tick however many batches it trained.
    """

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._progress: BatchProgress | None = None

    def put(self, item: object) -> None:
        if isinstance(item, BatchProgress):
            self._progress = item  # one reference assignment: atomic
        else:
            self._items.append(item)

    def take(self) -> list[object]:
        """Everything put since the last take, in order; the latest progress last."""
        items = []
        while True:
            try:
                items.append(self._items.popleft())
            except IndexError:
                break
        progress, self._progress = self._progress, None
        if progress is not None:
            items.append(progress)
        return items


# --- the interface ----------------------------------------------------------------------------

class Feed:
    """A source of events for the app; commands are refused unless `live`."""

    live = False
    description = ""

    def run(self, sink: Sink, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Produce events into `sink` until closed or cancelled (runs in the worker thread)."""
        raise NotImplementedError

    def planned(self) -> tuple[str, ...]:
        """Activations queued to train after the current run."""
        return ()

    @property
    def busy(self) -> bool:
        """A run is in progress (commands reach it)."""
        return False

    def select(self, name: str) -> None:
        raise ReadOnlyFeed(self.description)

    def queue(self, names: Iterable[str]) -> list[str]:
        raise ReadOnlyFeed(self.description)

    def swap(self, name: str) -> None:
        raise ReadOnlyFeed(self.description)

    def pause(self) -> None:
        raise ReadOnlyFeed(self.description)

    def resume(self) -> None:
        raise ReadOnlyFeed(self.description)

    def save(self) -> None:
        raise ReadOnlyFeed(self.description)

    def close(self) -> None:
        """Stop producing; a live run is stopped with a checkpoint."""

    def wait(self, timeout: float | None = None) -> bool:
        """Whether `run` has returned (waiting up to `timeout` seconds)."""
        return True


class WorkerFeed(Feed):
    """A feed whose `run` is one call of `work` in the worker thread; `wait` waits for that
    call to return (at once when it never started)."""

    def __init__(self) -> None:
        self.started = False
        self.finished = threading.Event()

    def work(self, sink: Sink, cancelled: Callable[[], bool]) -> None:
        raise NotImplementedError

    def work_ended(self) -> None:
        """Clean up after `work` returned or raised, before `wait` returns."""

    def run(self, sink: Sink, cancelled: Callable[[], bool] = lambda: False) -> None:
        self.started = True
        try:
            self.work(sink, cancelled)
        finally:
            self.work_ended()
            self.finished.set()

    def wait(self, timeout: float | None = None) -> bool:
        return not self.started or self.finished.wait(timeout)


# --- the engine behind a live feed ------------------------------------------------------------

class Engine(Protocol):
    """What `LiveFeed` needs from the training engine (the real one is `TorchEngine`)."""

    def catalog(self, extra: Iterable[str] = ()) -> Catalog: ...
    def load_data(self, config: Any) -> Any: ...
    def new_control(self) -> Any: ...
    def new_run(self, config: Any, *, consumers: list[Sink], control: Any, data: Any) -> Any: ...
    def canonical(self, name: str) -> str: ...
    def resume_run(self, run_dir: str, *, consumers: list[Sink], control: Any, epochs: int | None) -> Any: ...


@dataclass(frozen=True)
class ResumeRequest:
    """A planned continuation of a run folder: to its own end, or to `epochs` in all."""

    run_dir: str
    epochs: int | None = None

    @property
    def label(self) -> str:
        name = Path(self.run_dir).name
        return f"{name} to epoch {self.epochs}" if self.epochs else f"resume {name}"


def _info_field(info: Any, key: str, index: int) -> Any:
    """A field of `activation_info(name)`, whether it is a dataclass, a mapping or a tuple."""
    if info is None:
        return None
    if isinstance(info, dict):
        return info.get(key)
    if hasattr(info, key):
        return getattr(info, key)
    if isinstance(info, (tuple, list)) and len(info) > index:
        return info[index]
    return None


class TorchEngine:
    """The real engine: `actlab.engine.training`, imported on first use (in the worker)."""

    def catalog(self, extra: Iterable[str] = ()) -> Catalog:
        from actlab.engine import activations

        names = tuple(activations.activation_names())
        aliases = {n: activations.canonical_name(n) for n in (*names, *extra) if n}
        curves = {}
        for name in dict.fromkeys(aliases.values()):
            try:
                curves[name] = self.curve(name)
            except Exception:  # an activation that cannot be sampled is drawn without a curve
                continue
        return Catalog(names=names, curves=curves, aliases=aliases)

    def curve(self, name: str, **config: Any) -> Curve:
        """f and f' on CURVE_RANGE, f' by autograd (once per activation)."""
        import torch

        from actlab.engine import activations

        module = activations.create_activation(name, **config)
        x = torch.linspace(*CURVE_RANGE, CURVE_POINTS, requires_grad=True)
        y = module(x)
        (dy,) = torch.autograd.grad(y.sum(), x)
        try:
            info = activations.activation_info(name)
        except Exception:
            info = None
        formula = _info_field(info, "formula", 0) or getattr(module, "formula", "") or ""
        smooth, sparse = _info_field(info, "smooth", 2), _info_field(info, "sparse", 1)
        return Curve(name=activations.canonical_name(name), xs=tuple(x.detach().tolist()),
                     ys=tuple(y.detach().tolist()), dys=tuple(dy.tolist()), formula=str(formula),
                     smooth=None if smooth is None else bool(smooth), sparse=None if sparse is None else bool(sparse))

    def canonical(self, name: str) -> str:
        from actlab.engine.activations import canonical_name

        return canonical_name(name)

    def load_data(self, config: Any) -> Any:
        """The splits every run of the session shares (loaded once, through the front door)."""
        from actlab.engine import lab

        return lab.load_data(config)

    def new_control(self) -> Any:
        from actlab.engine.control import RunControl

        return RunControl()

    def new_run(self, config: Any, *, consumers: list[Sink], control: Any, data: Any) -> Any:
        """A fresh run with the probes its config asks for (the same as a headless run's)."""
        from actlab.engine import lab

        return lab.open_run(config, consumers=consumers, control=control, data=data)

    def resume_run(self, run_dir: str, *, consumers: list[Sink], control: Any, epochs: int | None) -> Any:
        """The run folder continued from its checkpoint (extended to `epochs` in all when given)."""
        from actlab.engine import lab

        return lab.resume_run(run_dir, consumers=consumers, control=control, epochs=epochs)


# --- live ---------------------------------------------------------------------------------------

class LiveFeed(WorkerFeed):
    """Trains the lab's configuration, one run at a time, steered from the UI thread.

    Every run uses the same config (seed included) with only the activation changed, so
    runs compare fairly; the dataset is loaded once and shared by all runs.
    """

    live = True

    def __init__(self, config: Any, engine: Engine | None = None, *, resume: ResumeRequest | None = None) -> None:
        super().__init__()
        self.config = config
        self.engine: Engine = engine if engine is not None else TorchEngine()
        self.description = "live session"
        self._cond = threading.Condition()
        self.opened_on = resume  # the run folder this session opened on, if any
        self._plan: deque[str | ResumeRequest] = deque([resume or config.model.activation])
        self._control: Any = None
        self._current: str | None = None
        self._closing = False
        self._superseded = False  # the run being prepared was replaced by a pick

    # -- commands (UI thread) ------------------------------------------------------------

    def planned(self) -> tuple[str, ...]:
        with self._cond:
            return tuple(item.label if isinstance(item, ResumeRequest) else item for item in self._plan)

    @property
    def busy(self) -> bool:
        return self._control is not None

    @property
    def current(self) -> str | None:
        """The activation of the run in progress (as picked)."""
        return self._current

    def select(self, name: str | ResumeRequest) -> None:
        """Stop the current run (it checkpoints) and train `name` (or continue a run folder)
        next; clears the queue."""
        with self._cond:
            self._plan.clear()
            self._plan.append(name)
            if self._control is not None:
                self._control.stop("stopped")
                self._superseded = True
            self._cond.notify_all()

    def queue(self, names: Iterable[str]) -> list[str]:
        """Train `names` one after another once the current run ends; the names added."""
        added = []
        with self._cond:
            for name in names:
                if name not in self._plan and name != self._current:
                    self._plan.append(name)
                    added.append(name)
            self._cond.notify_all()
        return added

    def _require_control(self) -> Any:
        control = self._control
        if control is None:
            raise NoRunInProgress("no run in progress")
        return control

    def resume_run(self, run_dir: str, epochs: int | None = None) -> None:
        """Stop the current run and continue `run_dir` (to `epochs` in all, if given)."""
        self.select(ResumeRequest(str(run_dir), epochs))

    def swap(self, name: str) -> None:
        """Hot-swap the running model's activation (ValueError for an unknown name).

        The name is canonicalised once, here; lab.toml's `activation_config` goes with it
        when it is the configured activation (as for a pick by number key)."""
        control = self._require_control()
        canonical = self.engine.canonical(name)
        control.swap_activation(canonical, **self.activation_params(canonical))

    def pause(self) -> None:
        self._require_control().pause()

    def resume(self) -> None:
        self._require_control().resume()

    def save(self) -> None:
        self._require_control().save()

    def close(self) -> None:
        """Stop the session: the run in progress stops after its batch and checkpoints."""
        with self._cond:
            self._closing = True
            self._plan.clear()
            if self._control is not None:
                self._control.stop("interrupted")
            self._cond.notify_all()

    # -- the worker ----------------------------------------------------------------------

    def activation_params(self, name: str) -> dict[str, Any]:
        """lab.toml's hyper-parameters for `name`: those of the configured activation, else none."""
        model = self.config.model
        return dict(model.activation_config) if self._same(name, model.activation) else {}

    def config_for(self, name: str) -> Any:
        """The lab's config with only the activation changed (its lab.toml hyper-parameters
        apply to the configured activation only; others get their defaults)."""
        return self.config.replace(**{"model.activation": name, "model.activation_config": self.activation_params(name)})

    def _same(self, a: str, b: str) -> bool:
        if a == b:
            return True
        try:
            return self.engine.canonical(a) == self.engine.canonical(b)
        except Exception:
            return False

    def work_ended(self) -> None:
        with self._cond:
            self._control = self._current = None

    def work(self, sink: Sink, cancelled: Callable[[], bool]) -> None:
        sink(FeedStatus("loading", "loading PyTorch…"))
        try:
            sink(self.engine.catalog(extra=[self.config.model.activation]))
        except Exception as exc:
            sink(FeedError(f"the training engine did not load: {one_line(exc)}"))
            return
        data = None
        while True:
            with self._cond:
                if not self._plan and not self._closing:
                    sink(FeedStatus("idle", "pick an activation (1-0, n/p) or queue them all (a)"))
                while not self._plan and not self._closing and not cancelled():
                    self._cond.wait(0.25)
                if self._closing or cancelled():
                    return
                name = self._plan.popleft()
                control = self.engine.new_control()
                self._control, self._current, self._superseded = control, str(getattr(name, "label", name)), False
            try:
                if isinstance(name, ResumeRequest):
                    sink(FeedStatus("starting", f"{name.label}…"))
                    self.engine.resume_run(name.run_dir, consumers=[sink], control=control, epochs=name.epochs).run()
                    continue
                config = self.config_for(name)
                if data is None:
                    sink(FeedStatus("loading", f"loading {config.data.dataset}…"))
                    data = self.engine.load_data(config)
                if self._closing or cancelled():
                    return
                if self._superseded:  # picked away while the data loaded: never start it
                    continue
                sink(FeedStatus("starting", f"starting {name}…"))
                self.engine.new_run(config, consumers=[sink], control=control, data=data).run()
            except Exception as exc:  # data unreadable, or anything the run itself did not catch
                sink(FeedError(one_line(exc)))
            finally:
                with self._cond:
                    self._control = self._current = None


# --- read-only feeds -------------------------------------------------------------------------------

class ReadOnlyLoop(WorkerFeed):
    """A read-only feed that runs until closed: `work(sink, cancelled)` follows its source in
    the worker thread; `close()` sets `stopping`, which `work` waits on between polls."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = threading.Event()

    def running(self, cancelled: Callable[[], bool]) -> bool:
        """Neither closed nor cancelled."""
        return not self.stopping.is_set() and not cancelled()

    def close(self) -> None:
        self.stopping.set()


class WatchFeed(ReadOnlyLoop):
    """Follows a run folder's events.jsonl; read-only.

    Everything already in the file arrives at once (the whole history), then new lines as
    they are written. A truncated last line waits for its newline. The activation curves
    are computed after the history is shown (that needs PyTorch, imported in this thread).
    """

    #: how often the run folder's lock is read to tell whether its writer is alive
    WRITER_CHECK = 1.0

    def __init__(self, run_dir: str | Path, *, interval: float = 0.25, engine: Any = None,
                 curves: bool = True) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.description = f"watching {self.run_dir} (read-only)"
        self.interval = interval
        self.engine = engine if engine is not None else (TorchEngine() if curves else None)

    def work(self, sink: Sink, cancelled: Callable[[], bool]) -> None:
        try:
            follower = EventFollower(self.run_dir)
            sink(FeedStatus("watching", f"watching {self.run_dir}"))
            activations: set[str] = set()

            def forward(events: list) -> None:
                for event in events:
                    if isinstance(event, RunStarted):
                        activations.add(event.activation)
                    sink(event)

            forward(follower.poll())
            if self.engine is not None and not self.stopping.is_set():
                try:
                    sink(self.engine.catalog(extra=sorted(activations)))
                except Exception:  # curves are a nicety here; the log is what matters
                    pass
            checked = 0.0
            while self.running(cancelled):
                forward(follower.poll())
                if time.monotonic() - checked >= self.WRITER_CHECK:
                    checked = time.monotonic()
                    sink(writer_status(self.run_dir))
                self.stopping.wait(self.interval)
        except Exception as exc:
            sink(FeedError(f"cannot follow {self.run_dir}: {one_line(exc)}"))


def writer_status(run_dir: Path) -> WriterStatus:
    """Whether a process holds the run folder's lock (`runs.lock_holder`).

    Unknown when the folder has no lock file (written by an actlab without locks, or the
    trainer has not taken it yet): the app then judges by silence alone."""
    from actlab.engine import runs

    lock_holder = getattr(runs, "lock_holder", None)
    lock_file = Path(run_dir) / getattr(runs, "LOCK_FILE", "run.lock")
    if lock_holder is None or not lock_file.is_file():
        return WriterStatus(known=False)
    try:
        holder = lock_holder(run_dir)
    except OSError:
        return WriterStatus(known=False)
    if not holder:
        return WriterStatus(known=True, alive=False)
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}" if isinstance(holder, dict) else str(holder)
    return WriterStatus(known=True, alive=True, holder=who)
