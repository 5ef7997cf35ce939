"""The header: what is training where, its state, epoch, time, and the batch progress bar."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from .session import HeaderData
from .textplots import fmt_duration

#: a glyph per state, so the state reads the same without colour (NO_COLOR)
STATE_GLYPHS = {
    "running": "▶", "paused": "⏸", "starting": "…", "loading": "…", "idle": "·", "watching": "…", "open": "·",
    "finished": "✓", "early-stopped": "✓", "stopped": "■", "interrupted": "■", "diverged": "✗", "failed": "✗",
}
#: theme colour per state
STATE_COLOURS = {
    "running": "success", "paused": "warning", "finished": "primary", "early-stopped": "primary",
    "diverged": "error", "failed": "error", "stopped": "secondary", "interrupted": "secondary",
}


class LabHeader(Widget):
    """Three lines: the setup, the run's state and clock, the batch progress bar."""

    DEFAULT_CSS = """
    LabHeader {
        height: 3;
        background: $panel;
        padding: 0 1;
    }
    """

    data: reactive[HeaderData] = reactive(HeaderData, layout=False)

    def _colour(self, name: str) -> str:
        theme = self.app.current_theme
        return getattr(theme, name, None) or theme.foreground or ""

    def render(self) -> Text:
        d = self.data
        width = max(10, self.content_size.width)
        lines = [self._setup_line(d), self._state_line(d), self._progress_line(d, width)]
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return Text("\n").join(lines)

    def _setup_line(self, d: HeaderData) -> Text:
        accent = self._colour("accent")
        line = Text()
        line.append("actlab", style=f"bold {accent}")
        if d.mode in ("watch", "open"):
            line.append(f" {d.mode}", style="bold")
        line.append("  │  ", style="dim")
        line.append(d.activation or "?", style=f"bold {accent}")
        if d.run_number:
            line.append(f" (run {d.run_number})", style="dim")
        for part in (d.dataset or "…", f"MLP {d.shape}" if d.shape else "", d.device):
            if part:
                line.append("  │  ", style="dim")
                line.append(part)
        return line

    def _state_line(self, d: HeaderData) -> Text:
        line = Text()
        colour = STATE_COLOURS.get(d.state)
        style = f"bold {self._colour(colour)}" if colour else "bold"
        line.append(f"{STATE_GLYPHS.get(d.state, '•')} {d.state}", style=style)
        if d.pending:
            line.append(f"  ({d.pending}…)", style=f"italic {self._colour('warning')}")
        if d.max_epochs:
            line.append("   epoch ", style="dim")
            line.append(f"{d.epoch}/{d.max_epochs}", style="bold")
        if d.elapsed is not None:
            line.append("   elapsed ", style="dim")
            line.append(fmt_duration(d.elapsed))
            if d.state == "running":
                line.append("   ETA ", style="dim")
                line.append(fmt_duration(d.eta))
        if d.queue:
            shown = ", ".join(d.queue[:3]) + (f" +{len(d.queue) - 3}" if len(d.queue) > 3 else "")
            line.append("   next: ", style="dim")
            line.append(shown)
        return line

    def _progress_line(self, d: HeaderData, width: int) -> Text:
        line = Text()
        if d.steps and d.state in ("running", "paused") and d.step:
            label = f"epoch {d.epoch} "  # the header's epoch: the one in progress
            counts = f" {d.step}/{d.steps} {d.step / d.steps * 100:3.0f}%"
            bar_width = max(10, min(60, width // 2) - len(label) - len(counts))
            filled = d.step / d.steps * bar_width
            full = int(filled)
            line.append(label, style="dim")
            line.append("━" * full, style=self._colour("accent"))
            if full < bar_width:
                line.append("╸" if filled - full >= 0.5 else "─", style=self._colour("accent"))
                line.append("─" * (bar_width - full - 1), style="dim")
            line.append(counts)
            line.append("  ")
        if d.message:
            style = f"bold {self._colour('error')}" if d.message_is_error else "dim"
            line.append(d.message, style=style)
        elif d.note:  # e.g. the offline fallback: it stays while the run is shown
            line.append(d.note, style=f"italic {self._colour('warning')}")
        return line
