"""`summary.json`: a run's headline numbers in one small file, kept current while it trains.

Listing thousands of runs must not parse thousands of event logs, so every run keeps a
summary next to its events.jsonl: written when the run starts, after every epoch and when it
ends (finished, stopped, interrupted, failed), each time atomically (temp file, fsync,
rename), so a kill leaves the previous complete summary. `RunSummary` folds events into the
summary; the same fold reads an old run folder's events.jsonl when it has no summary.json,
so both ways give the same numbers. This module does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import LabConfig
from .events import EVENTS_FILE, EpochDone, Event, LayerStats, RunFailed, RunFinished, RunStarted, read_events
from .metrics import ACTIVATION, SIZE, TRAINED_EPOCH, dead_fraction

SUMMARY_FILE = "summary.json"
SUMMARY_FORMAT = 1

#: config keys that never tell two experiments apart (where files live, labels, the app) or
#: that have a column of their own; left out of `differences` and of the config hash
NOT_EXPERIMENT_KEYS = frozenset({"run.seed", "run.runs_dir", "run.name", "run.device", "run.study",
                                 "data.source", "data.cache_dir", "data.fallback"})
OWN_COLUMN_KEYS = frozenset({"model.activation", "data.dataset"})
NOT_EXPERIMENT_SECTIONS = ("ui.", "probes.")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"lr": 0.1}}` -> `{"train.lr": 0.1}` (dicts of dicts only; other values kept)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name.count(".") == 0 and prefix == "":
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _experiment_keys(flat: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items()
            if k not in NOT_EXPERIMENT_KEYS and not k.startswith(NOT_EXPERIMENT_SECTIONS)}


def config_hash(config: Mapping[str, Any]) -> str:
    """12 hex digits naming the experiment: equal for runs that differ only in seed, device,
    folders, labels, probes or app settings (so the seeds of one setting share a hash)."""
    keys = _experiment_keys(flatten(config))
    text = json.dumps(keys, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


_DEFAULTS: dict[str, Any] = {}


def config_defaults() -> dict[str, Any]:
    """The lab's default config, flattened (`{"train.lr": 0.01, ...}`)."""
    if not _DEFAULTS:
        _DEFAULTS.update(flatten(LabConfig().to_dict()))
    return _DEFAULTS


def config_differences(config: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment keys whose value differs from the lab's defaults (`{"train.lr": 0.1}`),
    leaving out those with columns of their own (activation, dataset, seed)."""
    defaults = config_defaults()
    out = {}
    for key, value in sorted(_experiment_keys(flatten(config)).items()):
        if key in OWN_COLUMN_KEYS:
            continue
        if key in defaults:
            if value != defaults[key]:
                out[key] = value
        elif value not in (None, "", [], {}):  # a key newer than this reader: shown when set
            out[key] = value
    return out


def config_changes(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every config key whose value differs from the lab's defaults, placement and probes
    included (what `--where probes.enabled=false` looks up; `differences` is the short list)."""
    defaults = config_defaults()
    return {key: value for key, value in sorted(flatten(config).items())
            if key not in ("run.runs_dir",) and value != defaults.get(key)}


def activation_dead_fraction(stats: LayerStats) -> float | None:
    """The unit-weighted dead fraction over every activation layer of one LayerStats, or None."""
    dead = units = 0.0
    for layer, values in stats.layers.items():
        kind = stats.kinds.get(layer)
        if kind is not None and kind != ACTIVATION:
            continue
        frac = dead_fraction(values)
        if frac is None:
            continue
        size = float(values.get(SIZE, 1.0) or 1.0)
        dead += frac * size
        units += size
    return dead / units if units else None


@dataclass
class RunSummary:
    """Folds a run's events into its summary (`add` each event in order, then `to_dict`)."""

    run_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    activation: str | None = None
    activations: list[str] = field(default_factory=list)
    max_epochs: int | None = None
    started: float | None = None
    status: str = "running"
    message: str = ""
    epochs: int = 0
    best_val_acc: float | None = None
    best_epoch: int | None = None
    final_val_acc: float | None = None
    test_acc: float | None = None
    peak_dead: float | None = None
    last_dead: tuple[int, float] | None = None  # (epoch, dead fraction) of the newest epoch measured
    trained_dead: float | None = None  # exact, on the best weights after training (TRAINED_EPOCH)
    epoch_seconds: dict[int, float] = field(default_factory=dict)
    val_acc: dict[int, float] = field(default_factory=dict)  # epoch -> validation accuracy
    events: int = 0

    def add(self, event: Event) -> None:
        self.events += 1
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
            self.config = dict(event.config)
            self.dataset = event.dataset
            self.max_epochs = event.max_epochs
            if self.started is None:  # a resumed run keeps the day it began
                self.started = event.time
            self.status, self.message = "running", ""
            self._use_activation(event.activation)
        elif isinstance(event, EpochDone):
            self.run_id = self.run_id or event.run_id
            self.epochs = max(self.epochs, event.epoch)
            self.best_val_acc, self.best_epoch = event.best_val_acc, event.best_epoch
            self.final_val_acc = event.val_acc
            self.epoch_seconds[event.epoch] = event.seconds  # a replayed epoch (resume) counts once
            self.val_acc[event.epoch] = event.val_acc
            self._use_activation(event.activation)
        elif isinstance(event, LayerStats):
            frac = activation_dead_fraction(event)
            if frac is not None:
                self.peak_dead = frac if self.peak_dead is None else max(self.peak_dead, frac)
                if event.epoch == TRAINED_EPOCH:
                    self.trained_dead = frac
                elif self.last_dead is None or event.epoch >= self.last_dead[0]:
                    self.last_dead = (event.epoch, frac)
        elif isinstance(event, RunFinished):
            self.status, self.message = event.status, event.message
            self.epochs = max(self.epochs, event.epochs_run)
            self.best_val_acc, self.best_epoch = event.best_val_acc, event.best_epoch
            self.test_acc = event.test_acc
        elif isinstance(event, RunFailed):
            self.status, self.message = "failed", event.error

    @property
    def final_dead(self) -> float | None:
        """Dead fraction at the end: the exact count on the best weights when the run measured
        it (finished or early-stopped runs), else the newest epoch's."""
        if self.trained_dead is not None:
            return self.trained_dead
        return self.last_dead[1] if self.last_dead is not None else None

    def _use_activation(self, name: str) -> None:
        self.activation = name
        if not self.activations or self.activations[-1] != name:
            self.activations.append(name)

    def to_dict(self) -> dict[str, Any]:
        """What summary.json holds. Accuracies and dead fractions are in [0, 1]; `activation`
        is the one the run started with (`activations`: every one, hot swaps included);
        `peak_dead` the highest unit-weighted dead fraction of any measurement, `final_dead`
        the one at the end (`trained_dead`, exact on the best weights, when measured);
        `config_hash` names the setting whatever the seed; `differences` are the experiment
        keys changed from the defaults, `config_changes` every changed key."""
        run = self.config.get("run", {}) if isinstance(self.config.get("run"), dict) else {}
        model = self.config.get("model", {}) if isinstance(self.config.get("model"), dict) else {}
        seconds = list(self.epoch_seconds.values())
        return {
            "format": SUMMARY_FORMAT,
            "run_id": self.run_id,
            "study": run.get("study") or None,
            "activation": self.activations[0] if self.activations else model.get("activation"),
            "activations": list(self.activations),
            "dataset": self.dataset,
            "seed": run.get("seed"),
            "status": self.status,
            "message": self.message,
            "epochs": self.epochs,
            "max_epochs": self.max_epochs,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "final_val_acc": self.final_val_acc,
            "test_acc": self.test_acc,
            "peak_dead": self.peak_dead,
            "final_dead": self.final_dead,
            "trained_dead": self.trained_dead,
            "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
            "started": self.started,
            "config_hash": config_hash(self.config) if self.config else None,
            "differences": config_differences(self.config) if self.config else {},
            "config_changes": config_changes(self.config) if self.config else {},
            "val_acc_curve": [self.val_acc[e] for e in sorted(self.val_acc)],
        }


def summarize_events(events: Iterable[Event]) -> dict[str, Any]:
    """The summary a run's events give (what summary.json holds when the run keeps it)."""
    summary = RunSummary()
    for event in events:
        summary.add(event)
    return summary.to_dict()


def write_summary(run_dir: str | os.PathLike[str], summary: Mapping[str, Any]) -> None:
    """Atomically replace `<run_dir>/summary.json` (temp file, fsync, rename); raises OSError."""
    path = Path(run_dir) / SUMMARY_FILE
    tmp = path.with_name(f".{SUMMARY_FILE}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


class SummaryWriter:
    """Event consumer that keeps `<run_dir>/summary.json` current.

    Subscribed by TrainingRun next to the EventLog, before the run's first event; a resumed
    run's earlier events are read from events.jsonl first so the summary covers the whole run.
    It writes after RunStarted, every EpochDone and the terminal event. A refused write
    (full disk) is remembered in `error` and never raised into the training loop; the
    previous summary stays whole.
    """

    WRITE_ON = (RunStarted, EpochDone, RunFinished, RunFailed)

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.error = ""
        self.summary = RunSummary()
        events_file = self.run_dir / EVENTS_FILE
        if events_file.exists():
            try:
                for event in read_events(events_file):
                    self.summary.add(event)
            except OSError:
                pass

    def __call__(self, event: Event) -> None:
        self.summary.add(event)
        if isinstance(event, self.WRITE_ON):
            self.write()

    def write(self) -> None:
        data = self.summary.to_dict()
        data["updated"] = time.time()
        try:
            write_summary(self.run_dir, data)
        except OSError as exc:
            self.error = f"cannot write {self.run_dir / SUMMARY_FILE}: {exc.strerror or exc}"
