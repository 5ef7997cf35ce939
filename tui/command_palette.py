"""The command palette (ctrl+p): every key's action by name, plus one entry per activation.

The palette knows the app only through `LabActions`, so this module never imports the app
(no import cycle: app -> command_palette).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Protocol

from textual.command import DiscoveryHit, Hit, Hits, Provider

KEYS = "1234567890"


class LabActions(Protocol):
    """What the palette calls on the app."""

    @property
    def activation_names(self) -> tuple[str, ...]: ...
    def action_toggle_pause(self) -> None: ...
    def action_save(self) -> None: ...
    def action_step(self, delta: int) -> None: ...
    def action_hot_swap(self) -> None: ...
    def action_train_picker(self) -> None: ...
    def action_queue_all(self) -> None: ...
    def action_cycle_view(self) -> None: ...
    def action_cycle_sort(self) -> None: ...
    def action_focus_board(self) -> None: ...
    def action_layer_metric(self, delta: int) -> None: ...
    def action_help(self) -> None: ...
    async def action_quit(self) -> None: ...
    def select(self, name: str) -> None: ...
    def swap_to(self, name: str) -> None: ...


def lab_commands(app: LabActions) -> list[tuple[str, Callable[[], object], str]]:
    """(title, callback, help) for every lab action, in palette order."""
    commands: list[tuple[str, Callable[[], object], str]] = [
        ("Pause / resume training", app.action_toggle_pause, "space"),
        ("Save a checkpoint now", app.action_save, "s"),
        ("Train the next activation", partial(app.action_step, 1), "n: new run, same seed"),
        ("Train the previous activation", partial(app.action_step, -1), "p: new run, same seed"),
        ("Train an activation…", app.action_train_picker, "t: every activation, new run, same seed"),
        ("Hot-swap the activation…", app.action_hot_swap, "h: same weights, training goes on"),
        ("Queue every activation (full comparison)", app.action_queue_all, "a"),
        ("Runs: select, overlay, resume, extend", app.action_focus_board, "b: the leaderboard takes the keys"),
        ("Change view", app.action_cycle_view, "v: all panels, training, activation, layers, leaderboard"),
        ("Next layer metric", partial(app.action_layer_metric, 1), "m (layers view)"),
        ("Sort the leaderboard", app.action_cycle_sort, "o"),
        ("Help: keys and panels", app.action_help, "? or F1"),
        ("Quit (checkpoint first)", app.action_quit, "q"),
    ]
    for i, name in enumerate(app.activation_names):
        key = KEYS[i] if i < len(KEYS) else "t"
        commands.append((f"Train {name}", partial(app.select, name), f"{key}: stop this run, start {name}, same seed"))
    for name in app.activation_names:
        commands.append((f"Hot-swap to {name}", partial(app.swap_to, name), "same weights, training goes on"))
    return commands


class LabCommands(Provider):
    """Lab actions for the command palette."""

    def _actions(self) -> LabActions:
        return self.app  # type: ignore[return-value]  # the LabApp, which implements LabActions

    async def discover(self) -> Hits:
        for title, callback, help_text in lab_commands(self._actions()):
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in lab_commands(self._actions()):
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)
