"""The command palette (ctrl+p): every key's action by name, plus one entry per activation."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from .app import LabApp

KEYS = "1234567890"


def lab_commands(app: "LabApp") -> list[tuple[str, Callable[[], object], str]]:
    """(title, callback, help) for every lab action, in palette order."""
    commands: list[tuple[str, Callable[[], object], str]] = [
        ("Pause / resume training", app.action_toggle_pause, "space"),
        ("Save a checkpoint now", app.action_save, "s"),
        ("Train the next activation", partial(app.action_step, 1), "n: new run, same seed"),
        ("Train the previous activation", partial(app.action_step, -1), "p: new run, same seed"),
        ("Hot-swap the activation…", app.action_hot_swap, "h: same weights, training goes on"),
        ("Queue every activation (full comparison)", app.action_queue_all, "a"),
        ("Change view", app.action_cycle_view, "v: all panels, training, activation, leaderboard"),
        ("Sort the leaderboard", app.action_cycle_sort, "o"),
        ("Help: keys and panels", app.action_help, "? or F1"),
        ("Quit (checkpoint first)", app.action_quit, "q"),
    ]
    for i, name in enumerate(app.session.names):
        key = KEYS[i] if i < len(KEYS) else ""
        commands.append((f"Train {name}", partial(app.action_pick, i), f"{key}: stop this run, start {name}, same seed"))
    for name in app.session.names:
        commands.append((f"Hot-swap to {name}", partial(app.swap_to, name), "same weights, training goes on"))
    return commands


class LabCommands(Provider):
    """Lab actions for the command palette."""

    async def discover(self) -> Hits:
        for title, callback, help_text in lab_commands(self.app):  # type: ignore[arg-type]
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in lab_commands(self.app):  # type: ignore[arg-type]
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)
