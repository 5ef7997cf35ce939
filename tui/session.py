"""The app's model of a session: every run seen so far, folded from the event stream.

`Session.apply(item)` takes one engine event (or a feed message) and returns the names of
the panels it changed; the app repaints only those, once per UI tick. The panels get frozen
snapshots (`HeaderData`, `MetricsData`, ...) built here, never the session's own deques,
so a widget cannot mutate the model and a reactive compares old and new by value.
This module imports neither torch nor textual.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

from actlab.engine import metrics
from actlab.engine.events import (ActivationSwapped, BatchProgress, CheckpointSaved, EpochDone, LayerStats,
                                  RunFailed, RunFinished, RunStarted, StateChanged, StepStats)

from .feed_items import LAB_ORDER, Catalog, Curve, FeedError, FeedStatus, PastRun, WriterStatus
from .textplots import fmt_duration

#: epochs of history kept per run (charts), and per-step gradient values kept per layer
EPOCH_HISTORY = 1000
STEP_HISTORY = 512
#: the gradient metric drawn as sparklines
GRAD_METRIC = metrics.GRAD_MEAN_ABS
#: watching a log whose writer cannot be asked (no lock to read): a running run silent for
#: this many epoch-lengths (and at least STALE_AFTER seconds) is flagged
STALE_AFTER = 30.0
STALE_EPOCHS = 3
#: first-layer mean |grad| this many times below the output layer's: vanishing gradients
VANISHING_RATIO = 1e-2

# panel names returned by Session.apply
HEADER, METRICS, CURVE, DEAD, GRADS, HISTS, BOARD = "header", "metrics", "curve", "dead", "grads", "hists", "board"
LAYERS = "layers"
ALL_PANELS = frozenset({HEADER, METRICS, CURVE, DEAD, GRADS, HISTS, BOARD, LAYERS})
#: states a run can be continued from (`r` in the leaderboard, `actlab --resume`)
RESUMABLE_STATES = ("stopped", "interrupted")
#: states a finished run can be extended from ("train N more epochs")
EXTENDABLE_STATES = ("finished", "early-stopped")

ENDED_STATES = ("finished", "early-stopped", "stopped", "interrupted", "diverged", "failed")
COMPLETE_STATES = ("finished", "early-stopped")
#: pending commands addressed to the run in progress (moot once it ends)
RUN_COMMANDS = ("pausing", "resuming", "saving", "swapping")


# --- snapshots handed to the panels -------------------------------------------------------

@dataclass(frozen=True)
class HeaderData:
    """Everything the header shows, for one instant."""

    mode: str = "live"  # "live", "watch" or "open"
    dataset: str = ""
    shape: str = ""
    device: str = ""
    activation: str = ""
    state: str = "starting"
    pending: str = ""  # a command sent but not yet acknowledged: "pausing", "quitting", ...
    run_number: int = 0
    epoch: int = 0  # the epoch in progress while a batch of it has run, else epochs completed
    max_epochs: int = 0
    step: int = 0  # batch within the epoch in progress
    steps: int = 0
    elapsed: float | None = None  # training time: the clock stops while paused
    eta: float | None = None
    queue: tuple[str, ...] = ()
    message: str = ""  # an error or note, one line
    message_is_error: bool = False
    run_id: str = ""
    note: str = ""  # stays on screen: e.g. the dataset's offline fallback


@dataclass(frozen=True)
class Series:
    """One run's curves on one chart."""

    label: str
    epochs: tuple[int, ...]
    train: tuple[float, ...]
    val: tuple[float, ...]
    colour: int = -1  # index into colours.OVERLAY for a selected run; -1: not overlaid


@dataclass(frozen=True)
class MetricsData:
    metric: str  # "acc" (percent) or "loss"
    current: Series | None = None
    previous: tuple[Series, ...] = ()  # earlier runs of the session, drawn grey
    swaps: tuple[tuple[int, str], ...] = ()  # (epoch trained first with the new activation, its name)
    max_epochs: int = 0
    overlays: tuple[Series, ...] = ()  # runs selected in the leaderboard, each in its own colour
    chance: float | None = None  # accuracy of guessing (percent), drawn so a flat run reads as flat


@dataclass(frozen=True)
class DeadRow:
    layer: str
    size: int | None
    dead: float | None  # neurons dead for the whole training set (exactly zero)
    dead_frac: float | None
    saturation: float | None  # share saturated (|f'(z)| below the threshold)


@dataclass(frozen=True)
class DeadData:
    rows: tuple[DeadRow, ...] = ()
    epoch: int | None = None  # None: no probe data yet
    show_saturation: bool = False
    has_run: bool = False


@dataclass(frozen=True)
class GradData:
    rows: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (layer, recent values)
    per: str = "step"  # what one sparkline cell is: "step" or "epoch"
    warning: str = ""  # vanishing gradients, one line


@dataclass(frozen=True)
class Hist:
    layer: str
    lo: float
    hi: float
    counts: tuple[float, ...]


@dataclass(frozen=True)
class HistData:
    acts: tuple[Hist, ...] = ()
    act_epoch: int | None = None
    grads: tuple[Hist, ...] = ()  # gradients at initialisation


@dataclass(frozen=True)
class LayerRow:
    layer: str
    kind: str
    values: tuple[float, ...]  # one per epoch with layer stats, oldest first


@dataclass(frozen=True)
class LayersData:
    """Every per-layer metric the probes recorded, one metric at a time over epochs."""

    metric: str = ""
    metrics: tuple[str, ...] = ()  # every metric any layer reported, in first-seen order
    epochs: tuple[int, ...] = ()
    rows: tuple[LayerRow, ...] = ()


@dataclass(frozen=True)
class BoardRow:
    number: int
    run_id: str
    activation: str  # "relu" or "relu→gelu" after a hot swap
    best_val: float | None
    test: float | None
    epochs: int
    peak_dead: float | None
    sec_per_epoch: float | None
    state: str
    current: bool
    past: bool = False  # from the runs folder, not trained in this session
    colour: int = -1  # overlay colour when selected
    run_dir: str = ""


# --- one run ------------------------------------------------------------------------------

@dataclass
class RunView:
    """What the app knows about one run (mutated only by `Session.apply`)."""

    run_id: str
    number: int
    started: RunStarted
    activation: str
    activations: list[str]
    state: str = "running"
    message: str = ""
    epochs: deque = field(default_factory=lambda: deque(maxlen=EPOCH_HISTORY))  # EpochDone
    swaps: list[tuple[int, str]] = field(default_factory=list)
    epochs_run: int = 0
    best_val_acc: float | None = None
    test_acc: float | None = None
    epoch_seconds: float = 0.0
    epoch_count: int = 0
    progress: tuple[int, int, int] | None = None  # epoch, step, steps
    progress_mark: tuple[int, float, int] | None = None  # epoch, time, step when first seen
    progress_rate: float | None = None  # steps per second in the epoch in progress
    layers: dict = field(default_factory=dict)
    layers_epoch: int | None = None
    layer_history: dict = field(default_factory=dict)  # epoch -> layer -> metric -> value
    trained: dict = field(default_factory=dict)  # layer -> metric -> value on the best weights, after training
    kinds: dict = field(default_factory=dict)  # layer -> metrics.LAYER_KINDS
    act_hists: dict = field(default_factory=dict)
    act_hists_epoch: int | None = None
    grad_init_hists: dict = field(default_factory=dict)
    grad_series: dict = field(default_factory=dict)  # layer -> deque of values
    grad_per: str = ""  # "step" once StepStats arrive, else "epoch"
    grad_epoch: int = -1  # last epoch whose layer stats went into grad_series (per-epoch mode)
    peak_dead: float | None = None
    started_at: float = 0.0
    ended_at: float | None = None
    paused_at: float | None = None
    paused_total: float = 0.0
    last_checkpoint: str = ""
    last_event_at: float = 0.0  # wall-clock time of its latest event
    past: bool = False
    note: str = ""
    folder: str = ""  # the run folder as read from disk ("" : the one its RunStarted names)

    @property
    def label(self) -> str:
        return "→".join(self.activations)

    @property
    def sec_per_epoch(self) -> float | None:
        return self.epoch_seconds / self.epoch_count if self.epoch_count else None

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    def elapsed(self, now: float) -> float:
        """Training time so far: wall clock since the start, less the time spent paused."""
        end = self.ended_at if self.ended and self.ended_at is not None else now
        if self.paused_at is not None:
            end = min(end, self.paused_at)
        return max(0.0, end - self.started_at - self.paused_total)

    def kind(self, layer: str) -> str:
        """The layer's kind as the probes said, else what its metrics show it to be."""
        kind = self.kinds.get(layer)
        if kind:
            return kind
        stats = self.layers.get(layer, {})
        if metrics.SIZE in stats:
            return metrics.ACTIVATION
        if GRAD_METRIC in stats:
            return metrics.LINEAR
        return ""

    def layer_names(self, kind: str) -> list[str]:
        """The run's layers of one kind, in the order the probes reported them."""
        return [name for name in self.layers if self.kind(name) == kind]


def histograms_of(histograms: dict, kind: str) -> dict:
    """layer -> histogram of one kind, from LayerStats.histograms' "<kind>/<layer>" keys."""
    prefix = f"{kind}/"
    return {key[len(prefix):]: value for key, value in histograms.items() if key.startswith(prefix)}


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _epoch_event(run_id: str, row: dict, best: float, best_epoch: int) -> EpochDone:
    """An EpochDone rebuilt from one row of `read_run`'s table."""
    return EpochDone(run_id=run_id, time=0.0, epoch=row["epoch"], train_loss=row["train_loss"],
                     train_acc=row["train_acc"], val_loss=row["val_loss"], val_acc=row["val_acc"],
                     seconds=row["seconds"], lr=0.0, activation=row["activation"], best_val_acc=best,
                     best_epoch=best_epoch, improved=best_epoch == row["epoch"])


# --- the session ----------------------------------------------------------------------------

class Session:
    """All runs of this app session (and the past runs loaded with it), in the order seen."""

    def __init__(self, *, mode: str = "live", dataset: str = "", hidden_sizes: Iterable[int] = (),
                 activation: str = "", max_epochs: int = 0, device: str = "") -> None:
        self.mode = mode
        self.runs: dict[str, RunView] = {}
        self.current_id: str | None = None
        self.catalog: Catalog | None = None
        self.names: tuple[str, ...] = LAB_ORDER
        self.feed_status: FeedStatus | None = None
        self.error: str = ""
        self.pending: str = ""
        self.queue: tuple[str, ...] = ()
        self.notices: list[tuple[str, str]] = []  # (text, severity) for the app to toast
        self.selected: list[str] = []  # run ids overlaid on the charts, in selection order
        self.layer_metric: str = ""  # the metric the layers view shows ("" until one is known)
        self.writer: WriterStatus | None = None  # watch mode: whether the run's process is alive
        # what the header shows before the first RunStarted (from the config)
        self._planned = dict(dataset=dataset, hidden=tuple(hidden_sizes), activation=activation,
                             max_epochs=max_epochs, device=device)

    # -- queries -------------------------------------------------------------------------

    @property
    def current(self) -> RunView | None:
        return self.runs.get(self.current_id) if self.current_id else None

    @property
    def state(self) -> str:
        run = self.current
        if run is not None:
            return run.state
        if self.error:
            return "failed"
        return self.feed_status.state if self.feed_status else "starting"

    def canonical(self, name: str) -> str:
        if self.catalog is not None:
            return self.catalog.aliases.get(name, name)
        return name

    def curve_for(self, name: str) -> Curve | None:
        if self.catalog is None:
            return None
        return self.catalog.curves.get(self.canonical(name))

    def completed_activations(self) -> set[str]:
        """Activations with a run of this session that trained to its end (finished or early-stopped)."""
        return {self.canonical(r.activations[0]) for r in self.runs.values()
                if r.state in COMPLETE_STATES and len(r.activations) == 1 and not r.past}

    def toggle_selected(self, run_id: str) -> bool:
        """Overlay a run on the charts, or take it off; whether it is selected now."""
        if run_id in self.selected:
            self.selected.remove(run_id)
            return False
        if run_id in self.runs:
            self.selected.append(run_id)
            return True
        return False

    # -- folding events --------------------------------------------------------------------

    def apply(self, item: object) -> set[str]:
        """Fold one event or feed message in; the panels that need a repaint."""
        handler = getattr(self, f"_on_{type(item).__name__}", None)
        if handler is None:
            return set()
        changed = handler(item)
        run = self.runs.get(getattr(item, "run_id", ""))
        if run is not None and not isinstance(item, PastRun):  # an engine event of a known run
            run.last_event_at = max(run.last_event_at, item.time)
        return changed

    def _run(self, run_id: str) -> RunView | None:
        return self.runs.get(run_id)

    def _on_RunStarted(self, e: RunStarted) -> set[str]:
        run = self.runs.get(e.run_id)
        if run is None:
            run = RunView(run_id=e.run_id, number=len(self.runs) + 1, started=e, activation=e.activation,
                          activations=[e.activation], started_at=e.time)
            self.runs[e.run_id] = run
        else:  # the same run resumed (in the app, or a watched log after `actlab run --resume`)
            prior = run.elapsed(run.ended_at) if run.ended_at is not None else run.epoch_seconds
            run.started = e
            run.started_at = e.time - prior
            run.paused_total, run.paused_at = 0.0, None
            run.state, run.message, run.ended_at, run.past = "running", "", None, False
        run.note = e.dataset_note
        self.current_id = e.run_id
        self.error = ""
        self.pending = ""
        return set(ALL_PANELS)

    def _on_PastRun(self, item: PastRun) -> set[str]:
        """A run folder read from disk: a row in the leaderboard, curves to overlay."""
        table = item.table
        if table.started is None:
            return set()
        run = self.runs.get(table.run_id)
        if run is None:
            s = table.started
            run = RunView(run_id=table.run_id, number=len(self.runs) + 1, started=s, activation=s.activation,
                          activations=[s.activation], started_at=s.time, past=True, state=table.status)
            self.runs[table.run_id] = run
            run.test_acc = table.test_acc
            run.note = s.dataset_note
            if run.ended:
                run.ended_at = s.time + sum(row["seconds"] for row in table.epochs)
        run.folder = run.folder or item.folder
        first = run.epochs[0].epoch if run.epochs else None
        best, best_epoch, earlier = None, 0, []
        for row in table.epochs:
            if best is None or row["val_acc"] > best:
                best, best_epoch = row["val_acc"], row["epoch"]
            if first is None or row["epoch"] < first:
                earlier.append(_epoch_event(run.run_id, row, best, best_epoch))
                run.epoch_seconds += row["seconds"]
                run.epoch_count += 1
                if row["activation"] != run.activations[-1]:
                    run.swaps.append((row["epoch"], row["activation"]))
                    run.activations.append(row["activation"])
        if earlier:
            run.epochs.extendleft(reversed(earlier))
            run.epochs_run = max(run.epochs_run, earlier[-1].epoch)
            run.activation = run.epochs[-1].activation
            run.best_val_acc = max(best, run.best_val_acc or 0.0)
        for epoch, layers in table.layer_stats.items():
            self._peak_dead(run, layers)
            if epoch == metrics.TRAINED_EPOCH:
                run.trained = run.trained or dict(layers)
            else:
                run.layer_history.setdefault(epoch, layers)
        trained = getattr(table, "trained", None)  # RunTable.trained: newer readers keep it apart
        if trained:
            run.trained = dict(trained)
            self._peak_dead(run, trained)
        if run.layer_history and run.layers_epoch is None:
            run.layers_epoch = max(run.layer_history)
            run.layers = dict(run.layer_history[run.layers_epoch])
        return {METRICS, BOARD, LAYERS}

    def _on_WriterStatus(self, w: WriterStatus) -> set[str]:
        self.writer = w
        return {HEADER}

    def _on_BatchProgress(self, e: BatchProgress) -> set[str]:
        run = self._run(e.run_id)
        if run is None:
            return set()
        run.progress = (e.epoch, e.step, e.steps)
        mark = run.progress_mark
        if mark is None or mark[0] != e.epoch or e.step < mark[2]:
            run.progress_mark = (e.epoch, e.time, e.step)
        elif e.time > mark[1] and e.step > mark[2]:
            run.progress_rate = (e.step - mark[2]) / (e.time - mark[1])
        return {HEADER}

    def _on_EpochDone(self, e: EpochDone) -> set[str]:
        run = self._run(e.run_id)
        if run is None:
            return set()
        if run.epochs and run.epochs[-1].epoch >= e.epoch:  # a resumed run repeats nothing, but be safe
            while run.epochs and run.epochs[-1].epoch >= e.epoch:
                run.epochs.pop()
        run.epochs.append(e)
        run.epochs_run = e.epoch
        run.best_val_acc = e.best_val_acc
        run.epoch_seconds += e.seconds
        run.epoch_count += 1
        if run.activation != e.activation:
            run.activation = e.activation
        return {HEADER, METRICS, BOARD}

    def _peak_dead(self, run: RunView, layers: dict) -> None:
        for name, stats in layers.items():
            frac = metrics.dead_fraction(stats)
            if _finite(frac):
                run.peak_dead = frac if run.peak_dead is None else max(run.peak_dead, frac)

    def _on_LayerStats(self, e: LayerStats) -> set[str]:
        run = self._run(e.run_id)
        if run is None:
            return set()
        if e.kinds:
            run.kinds.update(e.kinds)
        if e.epoch == metrics.TRAINED_EPOCH:  # the probes' trained table (best weights): not an epoch
            run.trained = dict(e.layers)
            self._peak_dead(run, e.layers)
            return {DEAD, BOARD}
        if run.layers_epoch is None or e.epoch >= run.layers_epoch:
            run.layers, run.layers_epoch = dict(e.layers), e.epoch
        run.layer_history[e.epoch] = e.layers
        acts = histograms_of(e.histograms, metrics.HIST_ACTIVATION)
        if acts and (run.act_hists_epoch is None or e.epoch >= run.act_hists_epoch):
            run.act_hists, run.act_hists_epoch = acts, e.epoch
        grads = histograms_of(e.histograms, metrics.HIST_GRAD_INIT)
        if grads:
            run.grad_init_hists = grads
        self._peak_dead(run, e.layers)
        if run.grad_per != "step":
            self._epoch_grads(run, e.epoch)
        return {DEAD, HISTS, BOARD, GRADS, LAYERS}

    def _epoch_grads(self, run: RunView, epoch: int) -> None:
        """Without per-step series, one sparkline cell per epoch from the layer stats."""
        if run.layers_epoch != epoch or epoch <= run.grad_epoch:
            return
        run.grad_epoch = epoch
        for name, stats in run.layers.items():
            value = stats.get(GRAD_METRIC)
            if _finite(value):
                series = run.grad_series.setdefault(name, deque(maxlen=STEP_HISTORY))
                series.append(float(value))
                run.grad_per = "epoch"

    def _on_StepStats(self, e: StepStats) -> set[str]:
        run = self._run(e.run_id)
        if run is None:
            return set()
        if run.grad_per != "step":
            run.grad_series.clear()
            run.grad_per = "step"
        for name, series in e.series.items():
            values = series.get(GRAD_METRIC)
            if values:
                run.grad_series.setdefault(name, deque(maxlen=STEP_HISTORY)).extend(
                    float(v) if v is not None else math.nan for v in values)
        return {GRADS}

    def _on_CheckpointSaved(self, e: CheckpointSaved) -> set[str]:
        run = self._run(e.run_id)
        if run is not None:
            run.last_checkpoint = e.path
        if e.reason == "manual" and self.pending == "saving":
            self.pending = ""
            self.notices.append((f"checkpoint saved: {e.path}", "information"))
        return {HEADER}

    def _on_StateChanged(self, e: StateChanged) -> set[str]:
        run = self._run(e.run_id)
        if run is None:
            return set()
        if e.state == "paused" and run.paused_at is None:
            run.paused_at = e.time
        elif e.state == "running" and run.paused_at is not None:
            run.paused_total += max(0.0, e.time - run.paused_at)
            run.paused_at = None
        run.state = e.state
        if self.pending in ("pausing", "resuming"):
            self.pending = ""
        return {HEADER, BOARD}

    def _on_ActivationSwapped(self, e: ActivationSwapped) -> set[str]:
        run = self._run(e.run_id)
        if run is None:
            return set()
        run.swaps.append((e.epoch, e.new))
        run.activation = e.new
        run.activations.append(e.new)
        if self.pending.startswith("swapping"):
            self.pending = ""
        self.notices.append((f"hot swap: {e.old} → {e.new} from epoch {e.epoch}, same weights", "information"))
        return {HEADER, METRICS, CURVE, DEAD, BOARD}

    def _on_RunFinished(self, e: RunFinished) -> set[str]:
        run = self._run(e.run_id)
        if run is None:
            return set()
        run.state, run.message, run.ended_at = e.status, e.message, e.time
        run.test_acc = e.test_acc
        run.epochs_run = e.epochs_run
        run.best_val_acc = e.best_val_acc if e.epochs_run else run.best_val_acc
        self._run_ended()
        if e.status == "diverged":
            self.notices.append((f"run {run.number} diverged: {e.message}", "error"))
        return set(ALL_PANELS - {CURVE})

    def _on_RunFailed(self, e: RunFailed) -> set[str]:
        run = self._run(e.run_id)
        if run is not None:
            run.state, run.message, run.ended_at = "failed", e.error, e.time
        else:  # failed before RunStarted (bad data folder, unknown activation): no run to show
            self.error = e.error
        self._run_ended()
        self.notices.append((f"run failed: {e.error}", "error"))
        return set(ALL_PANELS - {CURVE})

    def _run_ended(self) -> None:
        """Commands to the ended run are moot; a switch or a quit is still under way."""
        if self.pending.startswith(RUN_COMMANDS):
            self.pending = ""

    def _on_Catalog(self, c: Catalog) -> set[str]:
        self.catalog = c
        if c.names:
            self.names = tuple(c.names)
        return {HEADER, CURVE, DEAD}

    def _on_FeedStatus(self, s: FeedStatus) -> set[str]:
        self.feed_status = s
        return {HEADER}

    def _on_FeedError(self, e: FeedError) -> set[str]:
        self.error = e.error
        self._run_ended()
        if self.pending.startswith("switching"):
            self.pending = ""  # the new run will not start
        self.notices.append((e.error, "error"))
        return {HEADER}

    # -- snapshots -------------------------------------------------------------------------

    def header(self, now: float) -> HeaderData:
        run = self.current
        p = self._planned
        if run is None:
            hidden = "-".join(str(h) for h in p["hidden"])
            status = self.feed_status.detail if self.feed_status else ""
            return HeaderData(mode=self.mode, dataset=p["dataset"], shape=f"?-{hidden}-?" if hidden else "",
                              device=p["device"], activation=p["activation"], state=self.state,
                              pending=self.pending, max_epochs=p["max_epochs"], queue=self.queue,
                              message=self.error or status, message_is_error=bool(self.error))
        s = run.started
        shape = "-".join(str(n) for n in (s.input_size, *s.hidden_sizes, s.num_classes))
        epoch, step, steps = run.epochs_run, 0, s.steps_per_epoch
        if run.progress is not None and not run.ended:
            p_epoch, p_step, p_steps = run.progress
            if p_epoch > run.epochs_run:
                epoch, step, steps = p_epoch, p_step, p_steps
        message = run.message if run.ended and run.message else self.error
        error = run.state in ("failed", "diverged") or bool(self.error)
        stale = self._stale(run, now)
        if stale and not message:
            message, error = stale, True
        return HeaderData(mode=self.mode, dataset=s.dataset, shape=shape, device=s.device,
                          activation=run.activation, state=run.state, pending=self.pending,
                          run_number=run.number, epoch=epoch, max_epochs=s.max_epochs, step=step,
                          steps=steps, elapsed=run.elapsed(now), eta=self._eta(run), queue=self.queue,
                          message=message, message_is_error=error, run_id=run.run_id, note=run.note)

    def _stale(self, run: RunView, now: float) -> str:
        """Watching a log: a warning when the run's writer is really gone, else ""."""
        if self.mode != "watch" or run.state not in ("running", "paused"):
            return ""
        silent = now - run.last_event_at
        writer = self.writer
        if writer is not None and writer.known:
            if writer.alive:
                return ""
            return f"the run's process is gone (last event {fmt_duration(silent)} ago); resume it with actlab --resume"
        if run.state == "paused":
            return ""
        limit = max(STALE_AFTER, STALE_EPOCHS * (run.sec_per_epoch or 0.0))
        if silent > limit:
            return f"no new events for {fmt_duration(silent)}: is the run still alive?"
        return ""

    def _eta(self, run: RunView) -> float | None:
        if run.ended or run.state == "paused":
            return None
        s = run.started
        remaining_epochs = s.max_epochs - run.epochs_run
        if remaining_epochs <= 0:
            return 0.0
        per_epoch = run.sec_per_epoch
        if per_epoch is None and run.progress_rate:
            per_epoch = s.steps_per_epoch / run.progress_rate
        if per_epoch is None:
            return None
        done_in_epoch = 0.0
        if run.progress is not None and run.progress[0] > run.epochs_run and run.progress[2]:
            done_in_epoch = run.progress[1] / run.progress[2]
        return max(0.0, (remaining_epochs - done_in_epoch) * per_epoch)

    def metrics(self, metric: str) -> MetricsData:
        def series(run: RunView, colour: int = -1) -> Series:
            epochs = tuple(e.epoch for e in run.epochs)
            if metric == "acc":
                train = tuple(e.train_acc * 100 for e in run.epochs)
                val = tuple(e.val_acc * 100 for e in run.epochs)
            else:
                train = tuple(e.train_loss for e in run.epochs)
                val = tuple(e.val_loss for e in run.epochs)
            return Series(f"#{run.number} {run.label}", epochs, train, val, colour)

        run = self.current
        overlays = tuple(series(self.runs[i], self.colour_of(i)) for i in self.selected
                         if i in self.runs and self.runs[i] is not run and self.runs[i].epochs)
        previous = tuple(series(r) for r in self.runs.values()
                         if r is not run and r.epochs and not r.past and r.run_id not in self.selected)
        chance = None
        if metric == "acc" and run is not None and run.started.num_classes:
            chance = 100.0 / run.started.num_classes
        if run is None:
            return MetricsData(metric, None, previous, overlays=overlays)
        return MetricsData(metric, series(run), previous, tuple(run.swaps), run.started.max_epochs,
                           overlays=overlays, chance=chance)

    def colour_of(self, run_id: str) -> int:
        """A selected run's colour index: fixed by its run number, so it never changes."""
        run = self.runs.get(run_id)
        if run is None or run_id not in self.selected:
            return -1
        return run.number

    def curve(self) -> Curve | None:
        run = self.current
        name = run.activation if run is not None else self._planned["activation"]
        return self.curve_for(name) if name else None

    def dead(self) -> DeadData:
        run = self.current
        if run is None:
            return DeadData()
        rows = []
        trained = run.ended and bool(run.trained)  # the exact count on the best weights, once trained
        table = run.trained if trained else run.layers
        for name in run.layer_names(metrics.ACTIVATION):
            stats = table.get(name, {})
            size = stats.get(metrics.SIZE)
            frac = metrics.dead_fraction(stats)
            dead = stats.get(metrics.DEAD_EXACT)
            if dead is None and frac is not None and size:
                dead = frac * size
            sat = stats.get(metrics.SATURATION)
            rows.append(DeadRow(name, int(size) if size else None, dead, frac, sat if _finite(sat) else None))
        if run.layers_epoch is None:
            return DeadData(tuple(rows), None, False, True)
        # saturation where it occurs: any layer with a measured share above zero
        has_sat = any(r.saturation for r in rows)
        return DeadData(tuple(rows), -1 if trained else run.layers_epoch, has_sat, True)

    def grads(self) -> GradData:
        run = self.current
        if run is None or not run.grad_series:
            return GradData()
        linear = run.layer_names(metrics.LINEAR)
        names = [n for n in linear if n in run.grad_series] or [n for n in run.grad_series
                                                                 if run.kind(n) != metrics.ACTIVATION]
        rows = tuple((n, tuple(run.grad_series[n])) for n in names)
        return GradData(rows, run.grad_per or "step", self._vanishing(run, names))

    def _vanishing(self, run: RunView, names: list[str]) -> str:
        """A warning when the first layer's gradients are orders of magnitude below the output's."""
        if len(names) < 2:
            return ""
        first, last = run.layers.get(names[0], {}).get(GRAD_METRIC), run.layers.get(names[-1], {}).get(GRAD_METRIC)
        if not (_finite(first) and _finite(last)) or last <= 0:
            return ""
        ratio = first / last
        if ratio >= VANISHING_RATIO:
            return ""
        orders = math.log10(last / first) if first > 0 else math.inf
        return (f"vanishing gradients: {names[0]} |g| is {orders:.1f} orders of magnitude below {names[-1]}"
                if math.isfinite(orders) else f"vanishing gradients: {names[0]} gets no gradient")

    def hists(self) -> HistData:
        run = self.current
        if run is None:
            return HistData()

        def hists(table: dict, order: list[str]) -> tuple[Hist, ...]:
            out = []
            for name in [n for n in order if n in table] + [n for n in table if n not in order]:
                h = table[name]
                edges, counts = h.get("edges") or [], h.get("counts") or []
                if len(edges) >= 2 and counts:
                    out.append(fitted(name, edges, counts))
            return tuple(out)

        return HistData(hists(run.act_hists, run.layer_names(metrics.ACTIVATION)), run.act_hists_epoch,
                        hists(run.grad_init_hists, run.layer_names(metrics.LINEAR)))

    def layers_view(self) -> LayersData:
        """The metric picked with `m`, per layer, over every epoch with layer stats."""
        run = self.current
        if run is None or not run.layer_history:
            return LayersData()
        names: dict[str, None] = {}
        layers: dict[str, None] = {}
        for epoch in sorted(run.layer_history):
            for layer, stats in run.layer_history[epoch].items():
                layers.setdefault(layer)
                for key in stats:
                    names.setdefault(key)
        available = tuple(names)
        metric = self.layer_metric if self.layer_metric in names else (available[0] if available else "")
        epochs = tuple(sorted(run.layer_history))
        rows = []
        for layer in layers:
            values = [run.layer_history[e].get(layer, {}).get(metric) for e in epochs]
            if any(v is not None for v in values):
                rows.append(LayerRow(layer, run.kind(layer),
                                     tuple(float(v) if v is not None else math.nan for v in values)))
        return LayersData(metric, available, epochs, tuple(rows))

    def step_layer_metric(self, delta: int) -> str:
        """Show the next (or previous) metric in the layers view; its name."""
        available = self.layers_view().metrics
        if not available:
            return ""
        current = self.layer_metric if self.layer_metric in available else available[0]
        self.layer_metric = available[(available.index(current) + delta) % len(available)]
        return self.layer_metric

    def board(self) -> tuple[BoardRow, ...]:
        return tuple(BoardRow(number=r.number, run_id=r.run_id, activation=r.label, best_val=r.best_val_acc,
                              test=r.test_acc, epochs=r.epochs_run, peak_dead=r.peak_dead,
                              sec_per_epoch=r.sec_per_epoch, state=r.state, current=r.run_id == self.current_id,
                              past=r.past, colour=self.colour_of(r.run_id), run_dir=r.folder or r.started.run_dir)
                     for r in self.runs.values())


def fitted(layer: str, edges: list[float], counts: list[float]) -> Hist:
    """A histogram cropped to the bins that hold values: the range fits the data, so a
    sigmoid layer (0..1) or a tanh layer (-1..1) fills the width instead of a few cells."""
    nonzero = [i for i, c in enumerate(counts) if c]
    if not nonzero:
        return Hist(layer, float(edges[0]), float(edges[-1]), tuple(float(c) for c in counts))
    lo, hi = nonzero[0], nonzero[-1] + 1
    return Hist(layer, float(edges[lo]), float(edges[hi]), tuple(float(c) for c in counts[lo:hi]))
