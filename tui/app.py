"""The live lab: a Textual app that trains, shows every layer, and switches activations.

Threads: the feed (`feed.py`) runs in a thread worker named "engine" and only puts items
into an `EventBuffer`; a UI timer at `ui.refresh_hz` (10 Hz by default) drains the buffer,
folds the items into the `Session` model and repaints the panels they changed inside one
`batch_update()`. Keys call the feed's thread-safe commands and repaint the header at once
(the command shows as pending until the engine acknowledges it).

Past runs of the runs folder are read in a second thread worker ("past") and arrive in the
same buffer. Nothing here imports torch: the engine is imported inside the workers, after the
first frame is on screen.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Callable, Iterable

from pathlib import Path

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.geometry import Region
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from .charts import CurveChart, MetricsChart
from .command_palette import LabCommands
from .feed import EventBuffer, Feed, LiveFeed, NoRunInProgress, ReadOnlyFeed
from .feed_items import FeedError
from .header import LabHeader
from .layer_panels import DeadPanel, GradPanel, HistPanel, LayersPanel
from .leaderboard import SORTS, Leaderboard
from .past_runs import load_past_runs, run_folders
from .screens import ActivationPicker, EpochsPrompt, HelpScreen
from .session import (ALL_PANELS, BOARD, CURVE, DEAD, EXTENDABLE_STATES, GRADS, HEADER, HISTS, LAYERS, METRICS,
                      RESUMABLE_STATES, BoardRow, Session)

#: below either size the screen shows one view at a time (`v` pages through them)
COMPACT_WIDTH, COMPACT_HEIGHT = 110, 34
VIEWS = ("all", "train", "act", "layers", "board")
VIEW_NAMES = {"all": "all panels", "train": "training", "act": "activation & histograms",
              "layers": "layers (m: metric)", "board": "leaderboard"}
#: after `q`, wait this long at most for the run to stop and checkpoint
QUIT_WAIT = 0.8
#: the past runs of the runs folder are read this long after the first frame
PAST_RUNS_DELAY = 0.5
KEYS = "1234567890"
#: actions that send commands to the engine (off in watch mode and under a modal screen)
ENGINE_ACTIONS = {"pick", "step", "hot_swap", "queue_all", "toggle_pause", "save", "train_picker"}
SCREEN_ACTIONS = ENGINE_ACTIONS | {"cycle_view", "cycle_sort", "help", "focus_board", "layer_metric"}


class LabApp(App[int]):
    """The live lab (or, with a `WatchFeed`, the same screen for a run folder)."""

    CSS_PATH = "lab.tcss"
    TITLE = "actlab"
    AUTO_FOCUS = None
    COMMANDS = App.COMMANDS | {LabCommands}
    # footer order: what a small terminal must show first (`?` lists every key)
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("v", "cycle_view", "View"),
        Binding("space", "toggle_pause", "Pause"),
        Binding("q", "quit", "Quit"),
        Binding("b", "focus_board", "Runs"),
        Binding("h", "hot_swap", "Swap"),
        Binding("t", "train_picker", "Train"),
        Binding("1", "pick(0)", "Pick", key_display="1…0"),
        *[Binding(key, f"pick({i})", show=False) for i, key in enumerate(KEYS) if i],
        Binding("n", "step(1)", "Next"),
        Binding("p", "step(-1)", "Prev"),
        Binding("a", "queue_all", "All"),
        Binding("s", "save", "Save"),
        Binding("o", "cycle_sort", "Sort"),
        Binding("m", "layer_metric(1)", "Metric"),
        Binding("M", "layer_metric(-1)", show=False),
    ]

    def __init__(self, feed: Feed, *, config: Any = None, clock: Callable[[], float] = time.time,
                 refresh_hz: float | None = None, past: list[Path] | None = None, mode: str = "") -> None:
        """`past`: run folders to show as past runs (default: a live lab's runs folder)."""
        super().__init__()
        self.feed = feed
        self.clock = clock
        self.mode = mode or ("live" if feed.live else "watch")
        self.past = past
        self.config = config
        self.refresh_hz = refresh_hz or (config.ui.refresh_hz if config is not None else 10.0)
        if config is not None:
            self.session = Session(mode=self.mode, dataset=config.data.dataset,
                                   hidden_sizes=config.model.hidden_sizes, activation=config.model.activation,
                                   max_epochs=config.train.epochs, device=config.run.device)
        else:
            self.session = Session(mode=self.mode)
        self.buffer = EventBuffer()
        self.view = "all"
        self.compact = False
        self.engine_worker: Worker | None = None
        self.past_worker: Worker | None = None
        self._quitting = False
        self._left = False
        self._quit_deadline = 0.0
        self._last_pick: str | None = None
        self._last_clock = 0.0
        self._main_screen = None

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield LabHeader(id="header")
        with Horizontal(id="row-top"):
            yield MetricsChart("acc", id="acc", classes="panel")
            yield MetricsChart("loss", id="loss", classes="panel")
            yield CurveChart(id="curve", classes="panel")
        with Horizontal(id="row-mid"):
            with VerticalScroll(id="grads-box", classes="panel"):
                yield GradPanel(id="grads")
            with VerticalScroll(id="dead-box", classes="panel"):
                yield DeadPanel(id="dead")
            with VerticalScroll(id="hists-box", classes="panel"):
                yield HistPanel(id="hists")
        with VerticalScroll(id="layers-box", classes="panel"):
            yield LayersPanel(id="layers")
        with VerticalScroll(id="board-box", classes="panel"):
            yield Leaderboard(id="board")
        yield Footer()

    def on_mount(self) -> None:
        self._main_screen = self.screen
        self.header = self.query_one(LabHeader)
        self.acc = self.query_one("#acc", MetricsChart)
        self.loss = self.query_one("#loss", MetricsChart)
        self.curve = self.query_one(CurveChart)
        self.grads = self.query_one(GradPanel)
        self.dead = self.query_one(DeadPanel)
        self.hists = self.query_one(HistPanel)
        self.layers = self.query_one(LayersPanel)
        self.board = self.query_one(Leaderboard)
        self.board_box = self.query_one("#board-box")
        self.boxes = {name: self.query_one(f"#{name}-box") for name in ("grads", "dead", "hists", "layers")}
        self._apply_layout()
        self._paint(set(ALL_PANELS))
        self.set_interval(1 / self.refresh_hz, self._drain, name="drain")
        # the first frame goes out before the worker starts importing PyTorch
        self.call_after_refresh(self.start_engine)

    def on_resize(self, event: events.Resize) -> None:
        self._apply_layout(event.size)

    def _apply_layout(self, size: tuple[int, int] | None = None) -> None:
        screen = self._main_screen or self.screen
        width, height = size or self.size
        self.compact = width < COMPACT_WIDTH or height < COMPACT_HEIGHT
        view = self.shown_view
        screen.set_class(self.compact, "-compact")
        for name in VIEWS:
            screen.set_class(name == view, f"view-{name}")
        for footer in screen.query(Footer):
            footer.compact = self.compact

    @property
    def shown_view(self) -> str:
        return "train" if self.compact and self.view == "all" else self.view

    # -- the engine link ----------------------------------------------------------------------

    def start_engine(self) -> None:
        """Start the feed in the named thread worker "engine", and the past runs' reader."""
        if self.engine_worker is None:
            self.engine_worker = self.run_worker(self._engine_work, name="engine", group="engine", thread=True,
                                                 exit_on_error=False)
        wanted = self.past is not None or isinstance(self.feed, LiveFeed)
        if wanted and self.past_worker is None:
            # a little later: the first frames and the engine's start need the CPU more than
            # history, unless the history is the run being resumed
            if isinstance(self.feed, LiveFeed) and self.feed.opened_on is not None:
                self.start_past_runs()
            else:
                self.set_timer(PAST_RUNS_DELAY, self.start_past_runs)

    def start_past_runs(self) -> None:
        """Read the past runs in the thread worker "past"."""
        if self.past_worker is None:
            self.past_worker = self.run_worker(self._past_work, name="past", group="past", thread=True,
                                               exit_on_error=False)

    def _past_work(self) -> None:
        """Read the past runs (the given folders, else a live lab's runs folder) into the buffer."""
        worker = get_current_worker()
        folders = list(self.past or [])
        if isinstance(self.feed, LiveFeed):
            if self.feed.opened_on is not None:  # the resumed run's history first
                folders.insert(0, Path(self.feed.opened_on.run_dir))
            if self.past is None:
                folders += run_folders(Path(self.feed.config.run.runs_dir))
        unique = list(dict.fromkeys(p.resolve() for p in folders))
        load_past_runs(unique, self.buffer.put, cancelled=lambda: worker.is_cancelled)

    def _engine_work(self) -> None:
        worker = get_current_worker()
        self.feed.run(self.buffer.put, lambda: worker.is_cancelled)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "engine" and event.state == WorkerState.ERROR:
            self.buffer.put(FeedError(f"the engine stopped: {event.worker.error}"))

    def apply_pending(self) -> None:
        """Fold in and paint everything the feed has produced so far (tests call this)."""
        self._drain()

    def _drain(self) -> None:
        items = self.buffer.take()
        dirty: set[str] = set()
        for item in items:
            dirty |= self.session.apply(item)
        queue = self.feed.planned()
        if queue != self.session.queue:
            self.session.queue = queue
            dirty.add(HEADER)
        now = self.clock()
        if self.session.state == "running" and now - self._last_clock >= 1.0:
            dirty.add(HEADER)  # elapsed time and ETA tick once a second (not while paused)
        if dirty:
            self._paint(dirty, now)
        self._notify_pending()

    def _paint(self, dirty: Iterable[str], now: float | None = None) -> None:
        s = self.session
        dirty = set(dirty)
        now = self.clock() if now is None else now
        with self.batch_update():
            if HEADER in dirty:
                self.header.data = s.header(now)
                self._last_clock = now
            if METRICS in dirty:
                self.acc.data = s.metrics("acc")
                self.loss.data = s.metrics("loss")
            if CURVE in dirty:
                self.curve.curve = s.curve()
                if s.catalog is not None:
                    self.curve.placeholder = "no curve for this activation"
            if DEAD in dirty:
                run = s.current
                self.dead.ended = bool(run and run.ended)
                self.dead.data = s.dead()
                self.boxes["dead"].border_title = self.dead.title()
            if GRADS in dirty:
                self.grads.data = s.grads()
                self.boxes["grads"].border_title = self.grads.title()
            if HISTS in dirty:
                self.hists.data = s.hists()
                self.boxes["hists"].border_title = "histograms · fitted range"
            if LAYERS in dirty:
                self.layers.data = s.layers_view()
                self.boxes["layers"].border_title = self.layers.title()
            if BOARD in dirty:
                self.board.rows = s.board()
                self.board_box.border_title = self.board.title()
                self.call_after_refresh(self.keep_row_visible)

    def keep_row_visible(self) -> None:
        """Scroll the leaderboard so the cursor's row (or the current run's) is on screen."""
        board = self.board
        run_id = board.cursor if board.has_focus and board.cursor else (self.session.current_id or "")
        line = board.row_line(run_id)
        box = self.board_box
        if line is None or box.scroll_y <= line < box.scroll_y + box.scrollable_content_region.height:
            return  # already on screen: no scroll, no repaint
        box.scroll_to_region(Region(0, line, max(1, board.size.width), 1), animate=False, immediate=True)

    def _notify_pending(self) -> None:
        notices, self.session.notices = self.session.notices, []
        for text, severity in notices:
            self.notify(text, severity=severity, timeout=6 if severity == "error" else 3)

    def _after_command(self) -> None:
        """A key changed what is planned or pending: show it now, not at the next tick."""
        self.session.queue = self.feed.planned()
        self._paint({HEADER})
        self._notify_pending()

    # -- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in SCREEN_ACTIONS and self._main_screen is not None and self.screen is not self._main_screen:
            return False  # a modal (help, swap picker) is open: its keys only
        if action in ENGINE_ACTIONS and not self.feed.live:
            return False  # watching a run folder: read-only
        return True

    @property
    def activation_names(self) -> tuple[str, ...]:
        """Every activation the lab offers (keys 1-0 pick the first ten, `t` any)."""
        return self.session.names

    def _say(self, text: str, severity: str = "information") -> None:
        self.notify(text, severity=severity, timeout=3)

    def action_pick(self, index: int) -> None:
        names = self.session.names
        if index >= len(names):
            self._say(f"no activation on key {KEYS[index]}", "warning")
            return
        self.select(names[index])

    def select(self, name: str) -> None:
        """Stop the current run (checkpointed) and train `name` with the same config and seed."""
        run = self.session.current
        same = run is not None and self.session.canonical(run.activation) == self.session.canonical(name)
        if same and not run.ended and not self.session.pending.startswith("switching"):
            self._say(f"already training {name} (h hot-swaps, n/p pick another)")
            return
        try:
            self.feed.select(name)
        except ReadOnlyFeed as exc:
            self._say(str(exc), "warning")
            return
        self._last_pick = name
        self.session.pending = f"switching to {name}"
        self._after_command()

    def action_step(self, delta: int) -> None:
        names = self.session.names
        base = self._last_pick if self.session.pending.startswith("switching") else None
        if base is None:
            run = self.session.current
            base = self.session.canonical(run.activation) if run is not None else self.session.canonical(
                self.session.header(self.clock()).activation)
        index = names.index(base) if base in names else (-1 if delta > 0 else 0)
        self.select(names[(index + delta) % len(names)])

    def action_hot_swap(self) -> None:
        run = self.session.current
        if run is None or run.ended or not self.feed.busy:
            self._say("no run in progress to hot-swap (pick one with 1-0)", "warning")
            return
        names = self.session.names
        current = self.session.canonical(run.activation)
        index = names.index(current) if current in names else -1
        self.push_screen(ActivationPicker(names, current, (index + 1) % len(names)), self._swap_chosen)

    def action_train_picker(self) -> None:
        """Every activation, not just the ten on number keys: a new run of the chosen one."""
        names = self.session.names
        run = self.session.current
        current = self.session.canonical(run.activation) if run is not None else ""
        index = names.index(current) if current in names else -1
        self.push_screen(ActivationPicker(names, current, (index + 1) % len(names), swap=False),
                         self._train_chosen)

    def _train_chosen(self, name: str | None) -> None:
        if name:
            self.select(name)

    def _swap_chosen(self, name: str | None) -> None:
        if name:
            self.swap_to(name)

    def swap_to(self, name: str) -> None:
        """Hot-swap the running model to `name`: same weights, training goes on."""
        run = self.session.current
        if run is not None and self.session.canonical(run.activation) == self.session.canonical(name):
            self._say(f"{name} is already the activation")
            return
        try:
            self.feed.swap(name)
        except (ValueError, NoRunInProgress, ReadOnlyFeed) as exc:
            self._say(f"cannot hot-swap: {exc}", "error")
            return
        self.session.pending = f"swapping to {name}"
        self._after_command()

    def action_queue_all(self) -> None:
        done = self.session.completed_activations()
        wanted = [n for n in self.session.names[:len(KEYS)] if self.session.canonical(n) not in done]
        try:
            added = self.feed.queue(wanted)
        except ReadOnlyFeed as exc:
            self._say(str(exc), "warning")
            return
        if added:
            self._say(f"queued {len(added)}: {', '.join(added)}")
        else:
            self._say("nothing to queue: every activation is trained or queued")
        self._after_command()

    def action_toggle_pause(self) -> None:
        s = self.session
        resume = s.state == "paused" or s.pending == "pausing"
        try:
            if resume:
                self.feed.resume()
            else:
                self.feed.pause()
        except (NoRunInProgress, ReadOnlyFeed) as exc:
            self._say(f"cannot {'resume' if resume else 'pause'}: {exc}", "warning")
            return
        s.pending = "resuming" if resume else "pausing"
        self._after_command()

    def action_save(self) -> None:
        try:
            self.feed.save()
        except (NoRunInProgress, ReadOnlyFeed) as exc:
            self._say(f"cannot save: {exc}", "warning")
            return
        self.session.pending = "saving"
        self._after_command()

    def action_cycle_view(self) -> None:
        views = VIEWS[1:] if self.compact else VIEWS
        current = self.shown_view
        self.view = views[(views.index(current) + 1) % len(views)] if current in views else views[0]
        self._apply_layout()
        self._say(f"view: {VIEW_NAMES[self.shown_view]}")

    def action_cycle_sort(self) -> None:
        self.board.sort = (self.board.sort + 1) % len(SORTS)
        self.board_box.border_title = self.board.title()
        self.call_after_refresh(self.keep_row_visible)

    def action_layer_metric(self, delta: int) -> None:
        """The layers view shows the next (or previous) per-layer metric."""
        name = self.session.step_layer_metric(delta)
        if not name:
            self._say("no layer statistics yet", "warning")
            return
        self._paint({LAYERS})

    # -- the leaderboard: runs of this session and past ones ------------------------------------

    def action_focus_board(self) -> None:
        """The leaderboard takes the keys (space overlays, r resumes, e extends, escape leaves)."""
        if self.shown_view not in ("all", "board"):
            self.view = "board"
            self._apply_layout()
        self.board.focus()
        self.board_box.border_title = self.board.title()
        self.call_after_refresh(self.keep_row_visible)

    def on_leaderboard_left(self, message: Leaderboard.Left) -> None:
        self.set_focus(None)
        self.board_box.border_title = self.board.title()

    def on_leaderboard_picked(self, message: Leaderboard.Picked) -> None:
        row = message.row
        if message.what == "toggle":
            on = self.session.toggle_selected(row.run_id)
            self._paint({METRICS, BOARD})
            self._say(f"run {row.number} {'overlaid on' if on else 'taken off'} the charts")
        elif message.what == "show":
            self.show_run(row)
        elif message.what == "resume":
            self.resume_row(row)
        elif message.what == "extend":
            self.extend_row(row)
        self.call_after_refresh(self.keep_row_visible)

    def show_run(self, row: BoardRow) -> None:
        """Read-only screens: the panels show the run under the cursor."""
        if self.feed.live:
            self._say("the panels follow the run in progress (space overlays a run's curves)")
            return
        self.session.current_id = row.run_id
        self._paint(set(ALL_PANELS))

    def _live_feed(self) -> LiveFeed | None:
        if isinstance(self.feed, LiveFeed):
            return self.feed
        self._say(f"{self.feed.description}: resume with `actlab --resume RUN_DIR`", "warning")
        return None

    def resume_row(self, row: BoardRow) -> None:
        """Continue a stopped or interrupted run from its checkpoint (the current run stops first)."""
        feed = self._live_feed()
        if feed is None:
            return
        killed = row.past and row.state == "running"  # no last line: killed (-9, power) mid-run
        if row.state not in RESUMABLE_STATES and not killed:
            hint = " (e trains it for more epochs)" if row.state in EXTENDABLE_STATES else ""
            self._say(f"run {row.number} is {row.state}: nothing to resume{hint}", "warning")
            return
        feed.resume_run(row.run_dir)
        self.session.pending = f"resuming run {row.number}"
        self._after_command()

    def extend_row(self, row: BoardRow) -> None:
        """Ask how many more epochs, then train the finished run on from its checkpoint."""
        if self._live_feed() is None:
            return
        if row.state not in (*EXTENDABLE_STATES, *RESUMABLE_STATES):
            self._say(f"run {row.number} is {row.state}: it cannot be trained on", "warning")
            return
        self.push_screen(EpochsPrompt(row.number, row.epochs), lambda n: self.extend_run(row, n))

    def extend_run(self, row: BoardRow, more: int | None) -> None:
        """Train `row`'s run for `more` epochs beyond those it has."""
        feed = self._live_feed()
        if feed is None or not more:
            return
        feed.resume_run(row.run_dir, epochs=row.epochs + more)
        self.session.pending = f"training run {row.number} to epoch {row.epochs + more}"
        self._after_command()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Stop the run (it checkpoints after its batch), then leave within a second.

        A second `q` leaves at once."""
        if self._quitting:
            self._leave()
            return
        self._quitting = True
        self.session.pending = "quitting"
        self._paint({HEADER})
        self.feed.close()
        self._quit_deadline = time.monotonic() + QUIT_WAIT
        self.set_interval(0.05, self._check_quit, name="quit")

    def _check_quit(self) -> None:
        if self.feed.wait(0) or time.monotonic() >= self._quit_deadline:
            self._leave()

    def _leave(self) -> None:
        if not self._left:
            self._left = True
            self._drain()
            self.exit(0)

    def on_unmount(self) -> None:
        self.feed.close()


def run_app(app: LabApp, *, grace: float = 0.3, checkpoint_wait: float = 30.0) -> int:
    """Run the app as the `actlab` process; after `q` the process ends within about a second.

    The app runs on its own event loop, closed without joining the worker thread. After
    `q` the engine stops after its current batch and writes its checkpoint; once it has (or
    `grace` seconds after the app ended) the process leaves with `os._exit`: the
    interpreter's own teardown with PyTorch loaded takes seconds and has nothing of ours
    left to do. The one wait longer than a second: `q` during the epoch-end work
    (validation, probes, checkpoints), where the stop is taken only afterwards; the process
    then says so on stderr and waits up to `checkpoint_wait` seconds for the checkpoint
    (ctrl+c leaves at once; checkpoints are written atomically, so leaving early keeps the
    previous one whole). SIGTERM and SIGHUP (an SSH drop) stop the run with a checkpoint
    and end the app; the exit code is then 128 + the signal number, as for a headless run.
    """
    import signal
    import sys

    loop = asyncio.new_event_loop()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        app.feed.close()
        loop.call_soon_threadsafe(app.exit)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            number = getattr(signal, name)
            previous[number] = signal.signal(number, on_signal)
    try:
        app.run(loop=loop)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        app.feed.close()
        loop.close()
    code = 128 + received[0] if received else (app.return_code or 0)
    if not app.feed.wait(grace):
        try:
            print("actlab: the run is in its epoch-end work; waiting for its checkpoint (ctrl+c leaves now)",
                  file=sys.stderr, flush=True)
        except OSError:  # the terminal is gone (SSH drop): wait quietly
            pass
        try:
            app.feed.wait(checkpoint_wait)
        except KeyboardInterrupt:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)
