"""Modal screens: the help (from help.md) and the hot-swap picker."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

HELP_FILE = Path(__file__).with_name("help.md")
KEYS = "1234567890"


class HelpScreen(ModalScreen[None]):
    """The keys and panels, from help.md."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark,f1,q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        from textual.widgets import Markdown  # markdown-it loads only when help opens

        with VerticalScroll(id="help-body"):
            yield Markdown(HELP_FILE.read_text(encoding="utf-8"))
        yield Footer()

    def on_mount(self) -> None:
        body = self.query_one("#help-body")
        body.border_title = "help · escape closes"
        body.focus()


class SwapPicker(ModalScreen[str | None]):
    """Pick the activation to hot-swap to: a number key, or arrows and enter."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        *[Binding(key, f"choose({i})", show=False) for i, key in enumerate(KEYS)],
    ]

    def __init__(self, names: tuple[str, ...], current: str, highlight: int) -> None:
        super().__init__()
        self.names = names
        self.current = current
        self.highlight = highlight

    def compose(self) -> ComposeResult:
        options = [Option(f"{KEYS[i] if i < len(KEYS) else ' '}  {name}" + ("   (current)" if name == self.current else ""),
                          id=name) for i, name in enumerate(self.names)]
        with Vertical(id="swap-box"):
            yield Static(f"Hot-swap [b]{self.current}[/] to… (same weights, training goes on)", id="swap-prompt")
            yield OptionList(*options, id="swap-list")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#swap-box").border_title = "hot swap · 1-0 or enter · escape cancels"
        options = self.query_one(OptionList)
        options.highlighted = self.highlight
        options.focus()

    def action_choose(self, index: int) -> None:
        if index < len(self.names):
            self.dismiss(self.names[index])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)
