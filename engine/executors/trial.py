"""One trial in a worker: an ordinary run folder, fresh or resumed, through the engine's front door.

A trial's folder has a fixed name (its trial id), so a study that resumes finds it again:
the worker opens it with `lab.open_run(..., run_dir=...)` the first time and continues it with
`lab.resume_run` after that (which starts at epoch 1 while there is no checkpoint yet).
A folder whose log already ends the run is reported, not run again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

from .. import lab, runs
from ..config import LabConfig, config_from_dict
from ..errors import UserError
from ..events import Consumer
from ..study import FINAL_STATUSES, INTERRUPTED
from .base import TrialOutcome, TrialTask

#: splits kept per worker process (each seed has its own train/val split)
DATA_CACHE_SIZE = 2


class DataCache:
    """A worker's loaded datasets, keyed by everything that changes the splits (LRU)."""

    def __init__(self, size: int = DATA_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self.loads = 0

    def get(self, config: LabConfig):
        d = config.data
        key = (d.dataset, d.source, d.cache_dir, d.normalization, d.val_size, d.fallback, config.run.seed,
               config.run.device)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        data = lab.load_data(config)
        self.loads += 1
        self._items[key] = data
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return data


def finished_outcome(trial_id: str, run_dir: Path, init_only: bool) -> TrialOutcome | None:
    """The outcome recorded in a run folder's log when the run has ended for good, else None."""
    if not (run_dir / runs.CONFIG_FILE).exists():
        return None
    try:
        table = lab.read_run(run_dir)
    except (UserError, OSError):
        return None
    status = _trial_status(table.status, init_only, table.epochs)
    if status not in FINAL_STATUSES:  # a failed run is continued from its last checkpoint
        return None
    best = max((e["val_acc"] for e in table.epochs), default=None)
    seconds = sum(e["seconds"] for e in table.epochs)
    return TrialOutcome(trial_id, status, best, table.test_acc, len(table.epochs), seconds, "already done")


def _trial_status(run_status: str, init_only: bool, epochs) -> str:
    if init_only and run_status == "stopped":  # stopped at initialisation on purpose
        return "finished"
    if run_status in ("interrupted", "stopped", "running"):
        return INTERRUPTED
    return run_status


def run_trial(task: TrialTask, *, consumers: Iterable[Consumer] = (), control: lab.RunControl | None = None,
              data_cache: DataCache | None = None, worker: str = "") -> TrialOutcome:
    """Run (or continue) one trial to its end; never raises for a trial that fails."""
    started = time.monotonic()
    run_dir = Path(task.run_dir)
    done = finished_outcome(task.trial_id, run_dir, task.init_only)
    if done is not None:
        return done
    control = control or lab.RunControl()
    try:
        config = config_from_dict(task.config, source=f"trial {task.trial_id}")
        data = (data_cache or DataCache()).get(config)
        if task.init_only:
            control.stop("stopped")  # applied before the first batch: init statistics, then a checkpoint
        if (run_dir / runs.CONFIG_FILE).exists():  # begun before (maybe killed before its first checkpoint)
            run = lab.resume_run(run_dir, consumers=consumers, control=control, data=data)
        else:
            run = lab.open_run(config, consumers=consumers, control=control, data=data, run_dir=run_dir)
        result = run.run()
    except UserError as exc:  # bad data folder, unreadable checkpoint: this trial fails, the study goes on
        return TrialOutcome(task.trial_id, "failed", message=str(exc), seconds=time.monotonic() - started,
                            worker=worker)
    except Exception as exc:  # a bug must not take the worker down with it
        return TrialOutcome(task.trial_id, "failed", message=f"{type(exc).__name__}: {exc}",
                            seconds=time.monotonic() - started, worker=worker)
    status = _trial_status(result.status, task.init_only, result.history)
    return TrialOutcome(task.trial_id, status, result.best_val_acc if result.epochs_run else None, result.test_acc,
                        result.epochs_run, time.monotonic() - started, result.message, worker)
