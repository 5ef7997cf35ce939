"""The session's leaderboard: one row per run, sortable from the keyboard (`o`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich import box
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

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
    SortKey("run order", "#", lambda r: r.number, False),
    SortKey("best val acc", "best val", lambda r: _or(r.best_val, -1.0), True),
    SortKey("test acc", "test", lambda r: _or(r.test, -1.0), True),
    SortKey("peak dead", "peak dead", lambda r: _or(r.peak_dead, 2.0), False),
    SortKey("seconds per epoch", "s/epoch", lambda r: _or(r.sec_per_epoch, float("inf")), False),
)

COLUMNS = ("#", "activation", "best val", "test", "epochs", "peak dead", "s/epoch", "state")


def sort_rows(rows: tuple[BoardRow, ...], sort: int) -> list[BoardRow]:
    """Rows in the order of SORTS[sort]; ties keep run order."""
    s = SORTS[sort % len(SORTS)]
    ordered = sorted(rows, key=lambda r: r.number)
    return sorted(ordered, key=s.key, reverse=s.descending)  # stable: ties stay in run order


class Leaderboard(Widget):
    """Activation, best val acc, test acc, epochs, peak dead %, seconds per epoch, state."""

    DEFAULT_CSS = """
    Leaderboard {
        height: auto;
    }
    """

    rows: reactive[tuple[BoardRow, ...]] = reactive(tuple, layout=True)
    sort: reactive[int] = reactive(0)

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
        for r in sort_rows(self.rows, self.sort):
            star = " ★" if best is not None and r.best_val == best and len(self.rows) > 1 else ""
            marker = "▶" if r.current else ""
            table.add_row(
                f"{marker}{r.number}", r.activation, fmt_pct(r.best_val, 2) + star, fmt_pct(r.test, 2),
                str(r.epochs), fmt_pct(r.peak_dead), "-" if r.sec_per_epoch is None else f"{r.sec_per_epoch:.2f}",
                r.state, style="bold" if r.current else None)
        return table

    def title(self) -> str:
        return f"leaderboard · sorted by {SORTS[self.sort % len(SORTS)].name} (o)"
