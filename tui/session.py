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

from actlab.engine.events import (ActivationSwapped, BatchProgress, CheckpointSaved, EpochDone, LayerStats,
                                  RunFailed, RunFinished, RunStarted, StateChanged, StepStats)

from .messages import LAB_ORDER, Catalog, Curve, FeedError, FeedStatus
from .textplots import fmt_duration

#: epochs of history kept per run (charts), and per-step gradient values kept per layer
EPOCH_HISTORY = 1000
STEP_HISTORY = 512
#: the gradient metric drawn as sparklines
GRAD_METRIC = "grad_mean_abs"
#: watching a log: a running run silent this long is flagged (killed without a last line?)
STALE_AFTER = 30.0

# panel names returned by Session.apply
HEADER, METRICS, CURVE, DEAD, GRADS, HISTS, BOARD = "header", "metrics", "curve", "dead", "grads", "hists", "board"
ALL_PANELS = frozenset({HEADER, METRICS, CURVE, DEAD, GRADS, HISTS, BOARD})

ENDED_STATES = ("finished", "early-stopped", "stopped", "interrupted", "diverged", "failed")
COMPLETE_STATES = ("finished", "early-stopped")
#: pending commands addressed to the run in progress (moot once it ends)
RUN_COMMANDS = ("pausing", "resuming", "saving", "swapping")


# --- snapshots handed to the panels -------------------------------------------------------

@dataclass(frozen=True)
class HeaderData:
    """Everything the header shows, for one instant."""

    mode: str = "live"  # "live" or "watch"
    dataset: str = ""
    shape: str = ""
    device: str = ""
    activation: str = ""
    state: str = "starting"
    pending: str = ""  # a command sent but not yet acknowledged: "pausing", "quitting", ...
    run_number: int = 0
    epoch: int = 0  # epochs completed
    max_epochs: int = 0
    step: int = 0  # batch within the epoch in progress
    steps: int = 0
    elapsed: float | None = None
    eta: float | None = None
    queue: tuple[str, ...] = ()
    message: str = ""  # an error or note, one line
    message_is_error: bool = False
    run_id: str = ""


@dataclass(frozen=True)
class Series:
    """One run's curves on one chart."""

    label: str
    epochs: tuple[int, ...]
    train: tuple[float, ...]
    val: tuple[float, ...]


@dataclass(frozen=True)
class MetricsData:
    metric: str  # "acc" (percent) or "loss"
    current: Series | None = None
    previous: tuple[Series, ...] = ()
    swaps: tuple[tuple[int, str], ...] = ()  # (epoch trained first with the new activation, its name)
    max_epochs: int = 0


@dataclass(frozen=True)
class DeadRow:
    layer: str  # act1 ...
    size: int | None
    dead: float | None  # neurons dead for the whole training set (exactly zero)
    dead_frac: float | None
    saturation: float | None  # share saturated (smooth activations)


@dataclass(frozen=True)
class DeadData:
    rows: tuple[DeadRow, ...] = ()
    epoch: int | None = None  # None: no probe data yet
    show_saturation: bool = False


@dataclass(frozen=True)
class GradData:
    rows: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (layer, recent values)
    per: str = "step"  # what one sparkline cell is: "step" or "epoch"


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
    act_hists: dict = field(default_factory=dict)
    act_hists_epoch: int | None = None
    grad_init_hists: dict = field(default_factory=dict)
    grad_series: dict = field(default_factory=dict)  # layer -> deque of values
    grad_per: str = ""  # "step" once StepStats arrive, else "epoch"
    grad_epoch: int = -1  # last epoch whose layer stats went into grad_series (per-epoch mode)
    peak_dead: float | None = None
    started_at: float = 0.0
    ended_at: float | None = None
    last_checkpoint: str = ""
    last_event_at: float = 0.0  # wall-clock time of its latest event

    @property
    def label(self) -> str:
        return "→".join(self.activations)

    @property
    def sec_per_epoch(self) -> float | None:
        return self.epoch_seconds / self.epoch_count if self.epoch_count else None

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


def _dead_fraction(stats: dict) -> float | None:
    size = stats.get("size")
    dead = stats.get("dead_exact")
    if dead is not None and size:
        return dead / size
    if stats.get("dead_exact_frac") is not None:
        return stats["dead_exact_frac"]
    if stats.get("dead_live") is not None and size:
        return stats["dead_live"] / size
    return None


def _slot_key(name: str) -> tuple[int, str]:
    """Sort act1, act2, ..., act10 and fc1, ..., out in network order."""
    digits = "".join(c for c in name if c.isdigit())
    return (int(digits) if digits else 10**6, name)


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


# --- the session ----------------------------------------------------------------------------

class Session:
    """All runs of this app session, in the order they started."""

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
        """Activations with a run that trained to its end (finished or early-stopped)."""
        return {self.canonical(r.activations[0]) for r in self.runs.values()
                if r.state in COMPLETE_STATES and len(r.activations) == 1}

    # -- folding events --------------------------------------------------------------------

    def apply(self, item: object) -> set[str]:
        """Fold one event or feed message in; the panels that need a repaint."""
        handler = getattr(self, f"_on_{type(item).__name__}", None)
        if handler is None:
            return set()
        changed = handler(item)
        run = self.runs.get(getattr(item, "run_id", ""))
        if run is not None:  # an engine event of a known run
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
        else:  # the same run resumed (a watched log after `actlab run --resume`)
            run.started = e
            run.state, run.message, run.ended_at = "running", "", None
        self.current_id = e.run_id
        self.error = ""
        self.pending = ""
        if e.dataset_note:
            self.notices.append((e.dataset_note, "warning"))
        return set(ALL_PANELS)

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

    def _on_LayerStats(self, e: LayerStats) -> set[str]:
        run = self._run(e.run_id)
        if run is None:
            return set()
        if run.layers_epoch is None or e.epoch >= run.layers_epoch:
            run.layers, run.layers_epoch = dict(e.layers), e.epoch
        acts = {k.split("/", 1)[1]: v for k, v in e.histograms.items() if k.startswith("act/")}
        if acts and (run.act_hists_epoch is None or e.epoch >= run.act_hists_epoch):
            run.act_hists, run.act_hists_epoch = acts, e.epoch
        grads = {k.split("/", 1)[1]: v for k, v in e.histograms.items() if k.startswith("grad_init/")}
        if grads:
            run.grad_init_hists = grads
        for name, stats in e.layers.items():
            if name.startswith("act"):
                frac = _dead_fraction(stats)
                if _finite(frac):
                    run.peak_dead = frac if run.peak_dead is None else max(run.peak_dead, frac)
        if run.grad_per != "step":
            self._epoch_grads(run, e.epoch)
        return {DEAD, HISTS, BOARD, GRADS}

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
        for name, metrics in e.series.items():
            values = metrics.get(GRAD_METRIC)
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
                step, steps = p_step, p_steps
        end = run.ended_at if run.ended else None
        elapsed = max(0.0, (end if end is not None else now) - run.started_at)
        message = run.message if run.ended and run.message else self.error
        error = run.state in ("failed", "diverged") or bool(self.error)
        silent = now - run.last_event_at
        if self.mode == "watch" and run.state == "running" and silent > STALE_AFTER and not message:
            message = f"no new events for {fmt_duration(silent)}: is the run still alive?"
            error = True
        return HeaderData(mode=self.mode, dataset=s.dataset, shape=shape, device=s.device,
                          activation=run.activation, state=run.state, pending=self.pending,
                          run_number=run.number, epoch=epoch, max_epochs=s.max_epochs, step=step,
                          steps=steps, elapsed=elapsed, eta=self._eta(run), queue=self.queue,
                          message=message, message_is_error=error, run_id=run.run_id)

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
        def series(run: RunView) -> Series:
            epochs = tuple(e.epoch for e in run.epochs)
            if metric == "acc":
                train = tuple(e.train_acc * 100 for e in run.epochs)
                val = tuple(e.val_acc * 100 for e in run.epochs)
            else:
                train = tuple(e.train_loss for e in run.epochs)
                val = tuple(e.val_loss for e in run.epochs)
            return Series(run.label, epochs, train, val)

        run = self.current
        previous = tuple(series(r) for r in self.runs.values() if r is not run and r.epochs)
        if run is None:
            return MetricsData(metric, None, previous)
        return MetricsData(metric, series(run), previous, tuple(run.swaps), run.started.max_epochs)

    def curve(self) -> Curve | None:
        run = self.current
        name = run.activation if run is not None else self._planned["activation"]
        return self.curve_for(name) if name else None

    def dead(self) -> DeadData:
        run = self.current
        if run is None:
            return DeadData()
        curve = self.curve_for(run.activation)
        smooth = bool(curve and curve.smooth)
        n = len(run.started.hidden_sizes)
        rows = []
        for i in range(1, n + 1):
            stats = run.layers.get(f"act{i}", {})
            size = stats.get("size") or run.started.hidden_sizes[i - 1]
            frac = _dead_fraction(stats)
            dead = stats.get("dead_exact")
            if dead is None and frac is not None and size:
                dead = frac * size
            sat = stats.get("saturation")
            rows.append(DeadRow(f"act{i}", int(size) if size else None, dead, frac, sat if _finite(sat) else None))
        if run.layers_epoch is None:
            return DeadData(tuple(rows), None, smooth)
        has_sat = any(r.saturation is not None for r in rows)
        return DeadData(tuple(rows), run.layers_epoch, smooth and has_sat)

    def grads(self) -> GradData:
        run = self.current
        if run is None or not run.grad_series:
            return GradData()
        names = sorted((n for n in run.grad_series if not n.startswith("act")), key=_slot_key)
        return GradData(tuple((n, tuple(run.grad_series[n])) for n in names), run.grad_per or "step")

    def hists(self) -> HistData:
        run = self.current
        if run is None:
            return HistData()

        def hists(table: dict) -> tuple[Hist, ...]:
            out = []
            for name in sorted(table, key=_slot_key):
                h = table[name]
                edges, counts = h.get("edges") or [], h.get("counts") or []
                if len(edges) >= 2 and counts:
                    out.append(Hist(name, float(edges[0]), float(edges[-1]), tuple(float(c) for c in counts)))
            return tuple(out)

        return HistData(hists(run.act_hists), run.act_hists_epoch, hists(run.grad_init_hists))

    def board(self) -> tuple[BoardRow, ...]:
        return tuple(BoardRow(number=r.number, run_id=r.run_id, activation=r.label, best_val=r.best_val_acc,
                              test=r.test_acc, epochs=r.epochs_run, peak_dead=r.peak_dead,
                              sec_per_epoch=r.sec_per_epoch, state=r.state, current=r.run_id == self.current_id)
                     for r in self.runs.values())
