"""The study view: `actlab study` on a terminal, or `actlab open STUDY_DIR`.

A grid of trials with their live status, the mean validation accuracy per epoch of each
group with its 95% confidence band, and the grouped table with confidence intervals and
p-values against the baseline group: the same `engine/stats.py` code as `actlab compare`.

`StudyFeed` polls the study folder in a thread (study.json, and each trial's events.jsonl
followed incrementally) and hands the app one frozen `StudySnapshot` whenever something
changed; tests feed the app snapshots of their own.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from actlab.engine.events import EpochDone, EventFollower, RunFailed, RunFinished, RunStarted

from .charts import Chart
from .colours import hex_colour, overlay_colour, overlay_rgb
from .feed import EventBuffer, ReadOnlyLoop, Sink

#: how often the study folder is read (the manifest and every running trial's log)
POLL_INTERVAL = 0.5
#: glyph per trial status, readable without colour
STATUS_GLYPHS = {"pending": "·", "running": "▶", "finished": "✓", "early-stopped": "✓", "diverged": "✗",
                 "failed": "✗", "interrupted": "■", "stopped": "■"}
STATUS_COLOURS = {"running": "success", "finished": "primary", "early-stopped": "primary", "diverged": "error",
                  "failed": "error", "interrupted": "warning", "stopped": "warning"}


@dataclass(frozen=True)
class TrialView:
    """One trial as the screen shows it."""

    trial_id: str
    group: str
    index: int
    status: str
    epochs: int = 0
    max_epochs: int = 0
    val_acc: tuple[float, ...] = ()  # per epoch, fractions
    best_val_acc: float | None = None
    test_acc: float | None = None


@dataclass(frozen=True)
class StudySnapshot:
    """The whole study at one instant: what the feed hands the app."""

    study_id: str
    trials: tuple[TrialView, ...]
    baseline: str = ""  # the group the others are compared with ("" : the first group)
    metric: str = "test_acc"

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(t.group for t in self.trials))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out


# --- reading a study folder ------------------------------------------------------------------

class TrialLog:
    """One trial's events.jsonl, followed as it grows."""

    def __init__(self, run_dir: Path) -> None:
        self.follower = EventFollower(run_dir)
        self.val: dict[int, float] = {}
        self.status = ""
        self.max_epochs = 0
        self.best: float | None = None
        self.test: float | None = None

    def poll(self) -> bool:
        changed = False
        for event in self.follower.poll():
            changed = True
            if isinstance(event, RunStarted):
                self.status, self.max_epochs = "running", event.max_epochs
            elif isinstance(event, EpochDone):
                self.val[event.epoch] = event.val_acc
                self.best = event.best_val_acc
            elif isinstance(event, RunFinished):
                self.status, self.test = event.status, event.test_acc
                self.best = event.best_val_acc if event.epochs_run else self.best
            elif isinstance(event, RunFailed):
                self.status = "failed"
        return changed


class StudyFeed(ReadOnlyLoop):
    """Follows a study folder; read-only (the study itself runs elsewhere, or in `work`)."""

    def __init__(self, study_dir: str | Path, *, interval: float = POLL_INTERVAL) -> None:
        super().__init__()
        self.study_dir = Path(study_dir)
        self.description = f"following the study {self.study_dir}"
        self.interval = interval
        self.logs: dict[str, TrialLog] = {}

    def snapshot(self) -> StudySnapshot | None:
        """Read the manifest and every trial's new events; None while there is no manifest."""
        from actlab.engine.study import read_manifest

        try:
            manifest = read_manifest(self.study_dir)
        except Exception:  # not there yet, or being replaced: the next poll reads it
            return None
        trials = []
        for record in sorted(manifest.trials, key=lambda r: r.index):
            log = self.logs.get(record.trial_id)
            run_dir = self.study_dir / record.run_dir
            if log is None and (run_dir / "events.jsonl").exists():
                log = self.logs[record.trial_id] = TrialLog(run_dir)
            if log is not None:
                log.poll()
            val = tuple(log.val[e] for e in sorted(log.val)) if log else ()
            status = record.status
            if log is not None and log.status and status not in ("finished", "early-stopped", "diverged", "failed"):
                status = log.status  # the log is newer than the manifest while a trial runs
            trials.append(TrialView(record.trial_id, record.group, record.index, status, epochs=len(val),
                                    max_epochs=log.max_epochs if log else 0, val_acc=val,
                                    best_val_acc=record.best_val_acc if record.best_val_acc is not None
                                    else (log.best if log else None),
                                    test_acc=record.test_acc if record.test_acc is not None
                                    else (log.test if log else None)))
        return StudySnapshot(manifest.study_id, tuple(trials))

    def work(self, sink: Sink, cancelled: Callable[[], bool]) -> None:
        last = None
        while self.running(cancelled):
            snap = self.snapshot()
            if snap is not None and snap != last:
                sink(snap)
                last = snap
            self.stopping.wait(self.interval)


# --- the widgets ----------------------------------------------------------------------------------

def group_rows(snapshot: StudySnapshot):
    """`stats.group_table` over the done trials' metric, the first group as the baseline."""
    from actlab.engine.stats import group_table

    values: dict[str, list[float]] = {}
    for t in snapshot.trials:
        value = getattr(t, snapshot.metric, None)
        if value is not None and math.isfinite(value):
            values.setdefault(t.group, []).append(float(value))
    if not values:
        return []
    baseline = snapshot.baseline if snapshot.baseline in values else next(iter(values))
    return group_table(values, baseline=baseline)


class TrialGrid(Widget):
    """A row per group, a cell per trial: status glyph and best validation accuracy."""

    DEFAULT_CSS = "TrialGrid { height: auto; }"
    data: reactive[StudySnapshot | None] = reactive(None, layout=True)

    def render(self) -> Table | Text:
        snap = self.data
        if snap is None or not snap.trials:
            return Text("reading the study…", style="dim italic")
        by_group: dict[str, list[TrialView]] = {}
        for t in snap.trials:
            by_group.setdefault(t.group, []).append(t)
        width = max(len(v) for v in by_group.values())
        table = Table(show_edge=False, pad_edge=False, padding=(0, 1), box=None, show_header=False)
        table.add_column("group", no_wrap=True)
        for _ in range(width):
            table.add_column(justify="right", no_wrap=True)
        theme = self.app.current_theme
        for i, (group, trials) in enumerate(by_group.items()):
            cells: list[Text | str] = [Text("■ ", style=overlay_colour(i)) + Text(group)]
            for t in trials:
                colour = getattr(theme, STATUS_COLOURS.get(t.status, ""), None) or ""
                acc = "" if t.best_val_acc is None else f"{t.best_val_acc * 100:.1f}"
                running = f" {t.epochs}/{t.max_epochs}" if t.status == "running" and t.max_epochs else ""
                cells.append(Text(f"{STATUS_GLYPHS.get(t.status, '?')}{acc}{running}", style=colour))
            table.add_row(*cells)
        return table


class BandChart(Chart):
    """Mean validation accuracy per epoch of each group, with its 95% confidence band."""

    data: reactive[StudySnapshot | None] = reactive(None)

    def watch_data(self) -> None:
        self.replot()

    def draw(self, plt: Any) -> None:
        from actlab.engine.stats import band

        snap = self.data
        self.border_title = "mean val acc % per epoch · 95% CI band (dotted)"
        if snap is None:
            self.refresh()
            return
        last = 1
        for i, group in enumerate(snap.groups):
            curves = [[v * 100 for v in t.val_acc] for t in snap.trials if t.group == group and t.val_acc]
            if not curves:
                continue
            mean, low, high = band(curves)
            epochs = list(range(1, len(mean) + 1))
            colour = overlay_rgb(i)
            plt.plot(epochs, low, color=colour, marker="·")
            plt.plot(epochs, high, color=colour, marker="·")
            plt.plot(epochs, mean, color=colour, marker="braille", label=group)
            last = max(last, len(mean))
        plt.xlim(0.5, max(2, last) + 0.5)
        step = max(1, math.ceil(last / 8))
        plt.xticks(list(range(1, max(2, last) + 1, step)))
        plt.grid(False, False)
        self.refresh()


class StudyApp(App[int]):
    """The study screen; `q` leaves (a study running in this process is stopped first)."""

    TITLE = "actlab study"
    CSS = """
    #study-head { height: 1; padding: 0 1; background: $panel; }
    #study-top { height: 1fr; }
    #grid-box, #table-box { border: round $panel-lighten-2; border-title-color: $text-muted; padding: 0 1; }
    #grid-box { width: 1fr; }
    #bands { width: 1fr; border: round $panel-lighten-2; border-title-color: $text-muted; }
    #table-box { height: auto; max-height: 45%; overflow-x: auto; }
    #groups { width: auto; text-wrap: nowrap; }
    """
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("question_mark", "help", "Help", key_display="?")]

    def __init__(self, feed: Any, *, stop: Callable[[], None] | None = None, refresh_hz: float = 4.0) -> None:
        """`stop`: stops a study running in this process (`q` calls it before leaving)."""
        super().__init__()
        self.feed = feed
        self.stop = stop
        self.buffer = EventBuffer()
        self.refresh_hz = refresh_hz
        self.snapshot: StudySnapshot | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="study-head")
        with Horizontal(id="study-top"):
            with VerticalScroll(id="grid-box"):
                yield TrialGrid(id="grid")
            yield BandChart(id="bands")
        with ScrollableContainer(id="table-box"):  # the table scrolls sideways on a narrow terminal
            yield Static("", id="groups")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#grid-box").border_title = "trials · ✓ done ▶ running · pending ✗ failed · best val %"
        self.query_one("#table-box").border_title = "groups · test acc, 95% CI, Welch p vs the baseline (first group)"
        self.set_interval(1 / self.refresh_hz, self.apply_pending, name="drain")
        self.run_worker(self._feed_work, name="feed", thread=True, exit_on_error=False)

    def _feed_work(self) -> None:
        worker = get_current_worker()
        self.feed.run(self.buffer.put, lambda: worker.is_cancelled)

    def apply_pending(self) -> None:
        """Show the newest snapshot the feed produced (tests call this)."""
        snaps = [item for item in self.buffer.take() if isinstance(item, StudySnapshot)]
        if not snaps:
            return
        snap = self.snapshot = snaps[-1]
        counts = snap.counts()
        done = sum(counts.get(s, 0) for s in ("finished", "early-stopped", "diverged", "failed"))
        parts = ", ".join(f"{n} {status}" for status, n in counts.items())
        self.query_one("#study-head", Static).update(
            Text.assemble(("actlab study ", "bold"), (snap.study_id, f"bold {hex_colour(overlay_rgb(0))}"),
                          f"  │  {done}/{len(snap.trials)} trials done ({parts})"))
        self.query_one(TrialGrid).data = snap
        self.query_one(BandChart).data = snap
        self.query_one("#groups", Static).update(self.group_text(snap))

    def group_text(self, snap: StudySnapshot) -> Text:
        from actlab.engine.stats import format_group_table

        rows = group_rows(snap)
        if not rows:
            return Text("no trial has finished yet", style="dim italic")
        return Text(format_group_table(rows, metric=snap.metric), no_wrap=True, overflow="crop")

    def action_help(self) -> None:
        self.notify("q quits (a study running here stops with a checkpoint per trial); "
                    "the study folder can be reopened with actlab open", timeout=6)

    async def action_quit(self) -> None:
        if self.stop is not None:
            self.stop()
        self.feed.close()
        self.exit(0)


def run_study_app(study_dir: str | Path) -> int:
    """The study view on a terminal, following `study_dir` (`actlab open STUDY_DIR`)."""
    app = StudyApp(StudyFeed(study_dir))
    code = app.run()
    app.feed.close()
    return code or 0


class StudyWork(threading.Thread):
    """The study itself, in a thread beside the view; `join_result()` re-raises its error."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(name="study", daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # handed to the caller's thread by join_result
            self.error = exc

    def join_result(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def run_beside_study_view(study_dir: str | Path, work: Callable[[], Any], stop: Callable[[], None]) -> None:
    """`actlab study` on a terminal: run `work` (the study) in a thread while the view follows
    the study folder; `q` calls `stop` (each running trial stops with a checkpoint) and this
    returns once the study has stopped. Signal handlers stay with the caller's main thread."""
    runner = StudyWork(work)
    runner.start()
    app = StudyApp(StudyFeed(study_dir), stop=stop)
    try:
        app.run()
    finally:
        app.feed.close()
        if runner.is_alive():
            stop()
    runner.join_result()
