"""Modal screens: the help (from help.md), the activation picker (hot swap or new run) and
the "how many more epochs" prompt."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, OptionList, Static
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


class ActivationPicker(ModalScreen[str | None]):
    """Pick an activation, to hot-swap to or to train: a number key for the first ten, the
    arrows and enter for any of them (the list scrolls)."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        *[Binding(key, f"choose({i})", show=False) for i, key in enumerate(KEYS)],
    ]

    def __init__(self, names: tuple[str, ...], current: str, highlight: int, *, swap: bool = True) -> None:
        super().__init__()
        self.names = names
        self.current = current
        self.highlight = highlight
        self.swap = swap

    def compose(self) -> ComposeResult:
        options = [Option(f"{KEYS[i] if i < len(KEYS) else ' '}  {name}" + ("   (current)" if name == self.current else ""),
                          id=name) for i, name in enumerate(self.names)]
        prompt = (f"Hot-swap [b]{self.current}[/] to… (same weights, training goes on)" if self.swap
                  else "Train… (a new run, same config and seed)")
        with Vertical(id="swap-box"):
            yield Static(prompt, id="swap-prompt")
            yield OptionList(*options, id="swap-list")
        yield Footer()

    def on_mount(self) -> None:
        what = "hot swap" if self.swap else "train"
        self.query_one("#swap-box").border_title = f"{what} · 1-0 or ↑↓ enter · escape cancels"
        options = self.query_one(OptionList)
        options.highlighted = self.highlight
        options.focus()

    def action_choose(self, index: int) -> None:
        if index < len(self.names):
            self.dismiss(self.names[index])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)


class EpochsPrompt(ModalScreen[int | None]):
    """How many more epochs to train a run for (enter confirms, escape cancels)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]
    DEFAULT_MORE = 5

    def __init__(self, number: int, epochs: int) -> None:
        super().__init__()
        self.number = number
        self.epochs = epochs

    def compose(self) -> ComposeResult:
        with Vertical(id="epochs-box"):
            yield Static(f"Train run {self.number} ({self.epochs} epochs so far) for how many more epochs?",
                         id="epochs-prompt")
            yield Input(str(self.DEFAULT_MORE), type="integer", id="epochs-input")
            yield Static("", id="epochs-error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#epochs-box").border_title = "more epochs · enter trains · escape cancels"
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            more = int(event.value)
        except ValueError:
            more = 0
        if more < 1:
            self.query_one("#epochs-error", Static).update("a whole number of epochs, at least 1")
            return
        self.dismiss(more)
