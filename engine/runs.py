"""Run folders: `runs/<run-id>/` with `config.json`, `events.jsonl` and `checkpoints/`.

A run folder is self-describing: the config it trained with (with the dataset it really
used), the event log and the checkpoints are enough to watch, resume or tabulate it later.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import LabConfig, config_from_dict
from .errors import ConfigError, UserError
from .events import EVENTS_FILE, EpochDone, LayerStats, RunFailed, RunFinished, RunStarted, read_events

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def new_run_id(config: LabConfig, runs_dir: Path) -> str:
    """`<date>-<time>-<activation>-s<seed>[-<name>]`, made unique within runs_dir."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parts = [stamp, config.model.activation, f"s{config.run.seed}"]
    if config.run.name:
        parts.append("".join(c if c.isalnum() or c in "-_" else "-" for c in config.run.name))
    base = "-".join(parts)
    run_id, n = base, 1
    while (runs_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def create_run_dir(config: LabConfig) -> tuple[str, Path]:
    """Make a fresh run folder; a clear UserError when the runs folder is unwritable."""
    runs_dir = Path(config.run.runs_dir)
    run_id = new_run_id(config, runs_dir)
    run_dir = runs_dir / run_id
    try:
        (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise UserError(f"run.runs_dir = {str(runs_dir)!r}: cannot create run folder ({exc.strerror or exc})") from None
    return run_id, run_dir


def write_config(run_dir: Path, config: LabConfig) -> None:
    """config.json, written atomically (temp file + rename)."""
    path = run_dir / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(config.to_dict(), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write run config ({exc.strerror or exc})") from None


def read_config(run_dir: Path) -> LabConfig:
    path = Path(run_dir) / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except FileNotFoundError:
        raise UserError(f"{run_dir}: not a run folder (no {CONFIG_FILE})") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable run config ({exc})") from None
    return config_from_dict(data, source=str(path))


def checkpoint_path(run_dir: Path, which: str = LAST) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / which


@dataclass(frozen=True)
class RunTable:
    """A run folder read back: one row per epoch, the per-layer stats, how it ended."""

    run_id: str
    started: RunStarted | None
    epochs: list[dict[str, Any]]  # epoch, train_loss, train_acc, val_loss, val_acc, seconds, activation
    layer_stats: dict[int, dict[str, dict[str, float]]]  # epoch -> layer -> metric -> value
    status: str  # "running" (no terminal event yet), or the RunFinished status, or "failed"
    test_acc: float | None

    def column(self, layer: str, metric: str) -> list[tuple[int, float]]:
        """(epoch, value) pairs of one per-layer metric, e.g. column("act1", "dead_exact_frac").

        Raises UnknownColumnError (a KeyError and a UserError) naming the run's layers, or the
        layer's metrics, when the run never logged that layer or metric.
        """
        layers_seen = sorted({name for layers in self.layer_stats.values() for name in layers})
        if layer not in layers_seen:
            raise UnknownColumnError(f"{self.run_id}: no layer {layer!r}; layers: {', '.join(layers_seen) or 'none'}")
        metrics = sorted({m for layers in self.layer_stats.values() for m in layers.get(layer, {})})
        if metric not in metrics:
            raise UnknownColumnError(f"{self.run_id}: layer {layer!r} has no metric {metric!r}; "
                                     f"metrics: {', '.join(metrics)}")
        return [(e, layers[layer][metric]) for e, layers in sorted(self.layer_stats.items())
                if layer in layers and metric in layers[layer]]


class UnknownColumnError(UserError, KeyError):
    """RunTable.column was asked for a layer or metric the run never logged."""

    def __str__(self) -> str:  # the message as is (KeyError would quote it)
        return str(self.args[0]) if self.args else ""


def read_run(run_dir: str | os.PathLike[str]) -> RunTable:
    """Tabulate a run folder from its events.jsonl (truncated last line tolerated)."""
    run_dir = Path(run_dir)
    if not (run_dir / EVENTS_FILE).exists():
        raise UserError(f"{run_dir}: not a run folder (no {EVENTS_FILE})")
    started, epochs, stats, status, test_acc = None, {}, {}, "running", None
    for event in read_events(run_dir):
        if isinstance(event, RunStarted):
            started = event
            status = "running"
        elif isinstance(event, EpochDone):
            epochs[event.epoch] = dict(epoch=event.epoch, train_loss=event.train_loss, train_acc=event.train_acc,
                                       val_loss=event.val_loss, val_acc=event.val_acc, seconds=event.seconds,
                                       activation=event.activation)
        elif isinstance(event, LayerStats):
            stats[event.epoch] = event.layers
        elif isinstance(event, RunFinished):
            status, test_acc = event.status, event.test_acc
        elif isinstance(event, RunFailed):
            status = "failed"
    run_id = started.run_id if started else run_dir.name
    return RunTable(run_id, started, [epochs[k] for k in sorted(epochs)], stats, status, test_acc)
