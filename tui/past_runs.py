"""Past runs for the app: find run folders (a runs folder, one run, or a study) and read them.

Reading goes through the engine's front door, `lab.read_run` (which loads no PyTorch); each
table reaches the app as a `PastRun` item in the same buffer as the live events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from actlab.engine.events import EVENTS_FILE

from .feed import ReadOnlyLoop, Sink, TorchEngine
from .feed_items import FeedStatus, PastRun

#: the newest this many run folders of a runs folder are loaded
PAST_LIMIT = 100
STUDY_FILE = "study.json"
CONFIG_FILE = "config.json"  # engine.runs.CONFIG_FILE (engine.runs is imported in the reader thread only)


def is_run_folder(path: Path) -> bool:
    return (path / EVENTS_FILE).is_file() and (path / CONFIG_FILE).is_file()


def is_study_folder(path: Path) -> bool:
    return (path / STUDY_FILE).is_file()


def run_folders(root: Path, limit: int = PAST_LIMIT) -> list[Path]:
    """Run folders directly under `root`, oldest first (the newest `limit` of them)."""
    try:
        found = [p for p in Path(root).iterdir() if p.is_dir() and is_run_folder(p)]
    except OSError:
        return []
    found.sort(key=lambda p: ((p / EVENTS_FILE).stat().st_mtime, p.name))
    return found[-limit:]


def study_trials(study_dir: Path) -> list[Path]:
    """The run folders of a study: those its manifest names, else every run folder under it."""
    study_dir = Path(study_dir)
    named: list[Path] = []
    try:
        manifest = json.loads((study_dir / STUDY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    for trial in manifest.get("trials", []) if isinstance(manifest, dict) else []:
        run_dir = trial.get("run_dir") if isinstance(trial, dict) else None
        if isinstance(run_dir, str) and run_dir:
            path = Path(run_dir)
            named.append(path if path.is_absolute() else study_dir / path)
    if named:
        return [p for p in named if is_run_folder(p)]
    return sorted({p.parent for p in study_dir.glob(f"**/{EVENTS_FILE}") if is_run_folder(p.parent)})


def open_targets(path: Path) -> list[Path]:
    """What `actlab open PATH` shows: one run folder, a study's trials, or a runs folder's runs."""
    path = Path(path)
    if is_run_folder(path):
        return [path]
    if is_study_folder(path):
        return study_trials(path)
    return run_folders(path)


def load_past_runs(folders: Iterable[Path], sink: Callable[[object], None], *,
                   cancelled: Callable[[], bool] = lambda: False) -> int:
    """Read each folder (`lab.read_run`) into a `PastRun`; unreadable ones are skipped. The count."""
    from actlab.engine.errors import UserError
    from actlab.engine.lab import read_run

    count = 0
    for folder in folders:
        if cancelled():
            break
        try:
            table = read_run(folder)
        except (OSError, UserError, ValueError):  # a folder being deleted, a foreign file: not a run to show
            continue
        sink(PastRun(table, str(folder)))
        count += 1
    return count


class OpenFeed(ReadOnlyLoop):
    """`actlab open DIR|STUDY`: past runs only, read-only; nothing trains."""

    def __init__(self, path: str | Path, *, curves: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.description = f"{self.path} is open read-only"
        self.engine = TorchEngine() if curves else None

    def work(self, sink: Sink, cancelled: Callable[[], bool]) -> None:
        folders = open_targets(self.path)
        sink(FeedStatus("loading", f"reading {len(folders)} run folders…"))
        count = load_past_runs(folders, sink, cancelled=lambda: not self.running(cancelled))
        sink(FeedStatus("open", f"{count} runs from {self.path} (read-only) · b selects · enter shows a run"))
        if self.engine is not None and self.running(cancelled):
            try:
                sink(self.engine.catalog())
            except Exception:  # curves are a nicety here
                pass
        while self.running(cancelled):
            self.stopping.wait(0.25)
