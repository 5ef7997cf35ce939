"""The leaderboard: one row per run (this session's and the runs folder's past ones).

Sortable from anywhere (`o`). With focus (`b`) it takes the keys: a cursor (up/down), space
selects a run to overlay its curves on the charts (each run keeps its colour), `r` resumes
a stopped run, `e` trains a finished run for more epochs, `enter` shows a run in the panels
(read-only screens), escape hands the keys back. The widget only posts messages; the app
decides what they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich import box
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from .colours import overlay_colour
from .session import BoardRow
from .textplots import fmt_pct


@dataclass(frozen=True)
class SortKey:
    name: str
    column: str  # header it marks
    key: Callable[[BoardRow], float]
    descending: bool


def _or(value: float | None, missing: float) -> float:
    return missing if value is None else value


SORTS: tuple[SortKey, ...] = (
    SortKey("run order", "#", lambda r: r.number - (10**6 if r.past else 0), False),  # past runs first
    SortKey("best val acc", "best val", lambda r: _or(r.best_val, -1.0), True),
    SortKey("test acc", "test", lambda r: _or(r.test, -1.0), True),
    SortKey("peak dead", "peak dead", lambda r: _or(r.peak_dead, 2.0), False),
    SortKey("seconds per epoch", "s/epoch", lambda r: _or(r.sec_per_epoch, float("inf")), False),
)

COLUMNS = ("#", "activation", "best val", "test", "epochs", "peak dead", "s/epoch", "state")
#: lines above the first row: the column names and the rule under them
HEAD_LINES = 2


def sort_rows(rows: tuple[BoardRow, ...], sort: int) -> list[BoardRow]:
    """Rows in the order of SORTS[sort]; ties keep run order."""
    s = SORTS[sort % len(SORTS)]
    ordered = sorted(rows, key=SORTS[0].key)
    return sorted(ordered, key=s.key, reverse=s.descending)  # stable: ties stay in run order


class Leaderboard(Widget, can_focus=True):
    """Activation, best val acc, test acc, epochs, peak dead %, seconds per epoch, state."""

    DEFAULT_CSS = """
    Leaderboard {
        height: auto;
    }
    """

    BINDINGS = [
        Binding("escape", "leave", "Back"),
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("space", "toggle", "Overlay"),
        Binding("r", "resume", "Resume"),
        Binding("e", "extend", "More epochs"),
        Binding("enter", "show", "Show"),
    ]

    rows: reactive[tuple[BoardRow, ...]] = reactive(tuple, layout=True)
    sort: reactive[int] = reactive(0)
    cursor: reactive[str] = reactive("")  # run id under the cursor ("" : none yet)

    class Picked(Message):
        """A key in the leaderboard: `what` is "toggle", "resume", "extend" or "show"."""

        def __init__(self, what: str, row: BoardRow) -> None:
            super().__init__()
            self.what = what
            self.row = row

    class Left(Message):
        """Escape: the leaderboard hands the keys back."""

    def ordered(self) -> list[BoardRow]:
        return sort_rows(self.rows, self.sort)

    def row_line(self, run_id: str) -> int | None:
        """The line of `run_id`'s row within the widget (for scrolling it into view)."""
        for i, row in enumerate(self.ordered()):
            if row.run_id == run_id:
                return HEAD_LINES + i
        return None

    def under_cursor(self) -> BoardRow | None:
        rows = self.ordered()
        for row in rows:
            if row.run_id == self.cursor:
                return row
        current = [r for r in rows if r.current]
        return current[0] if current else (rows[-1] if rows else None)

    def render(self) -> Table | Text:
        if not self.rows:
            return Text("no runs yet", style="dim italic")
        s = SORTS[self.sort % len(SORTS)]
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False)
        for column in COLUMNS:
            label = column + (" ▼" if s.descending else " ▲") * (column == s.column and s.name != "run order")
            table.add_column(label, justify="left" if column in ("activation", "state") else "right",
                             no_wrap=True, overflow="ellipsis", min_width=10 if column == "activation" else None)
        best = max((r.best_val for r in self.rows if r.best_val is not None), default=None)
        cursor = self.under_cursor() if self.has_focus else None
        for r in self.ordered():
            star = " ★" if best is not None and r.best_val == best and len(self.rows) > 1 else ""
            marker = ">" if cursor is not None and r.run_id == cursor.run_id else ("▶" if r.current else "")
            activation = Text(r.activation)
            if r.colour >= 0:
                activation = Text("■ ", style=overlay_colour(r.colour)) + activation
            style = "bold" if r.current else ("dim" if r.past and r.colour < 0 else None)
            if cursor is not None and r.run_id == cursor.run_id:
                style = "reverse"
            table.add_row(
                f"{marker}{r.number}", activation, fmt_pct(r.best_val, 2) + star, fmt_pct(r.test, 2),
                str(r.epochs), fmt_pct(r.peak_dead), "-" if r.sec_per_epoch is None else f"{r.sec_per_epoch:.2f}",
                r.state + (" (past)" if r.past else ""), style=style)
        return table

    def title(self) -> str:
        keys = "space overlay · r resume · e more epochs · esc back" if self.has_focus else "b: select runs"
        return f"runs · sorted by {SORTS[self.sort % len(SORTS)].name} (o) · {keys}"

    # -- keys (with focus) -------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        rows = self.ordered()
        if not rows:
            return
        here = self.under_cursor()
        index = rows.index(here) if here in rows else 0
        self.cursor = rows[max(0, min(len(rows) - 1, index + delta))].run_id
        self.refresh()

    def _post(self, what: str) -> None:
        row = self.under_cursor()
        if row is not None:
            self.post_message(self.Picked(what, row))

    def action_toggle(self) -> None:
        self._post("toggle")

    def action_resume(self) -> None:
        self._post("resume")

    def action_extend(self) -> None:
        self._post("extend")

    def action_show(self) -> None:
        self._post("show")

    def action_leave(self) -> None:
        self.post_message(self.Left())

    def on_focus(self) -> None:
        row = self.under_cursor()
        if row is not None and not self.cursor:
            self.cursor = row.run_id
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
