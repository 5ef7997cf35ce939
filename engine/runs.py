"""Run folders: `runs/<run-id>/` with `config.json`, `events.jsonl` and `checkpoints/`.

A run folder is self-describing: the config it trained with (with the dataset it really
used), the event log and the checkpoints are enough to watch, resume or tabulate it later.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import LabConfig, config_from_dict, parse_text, read_config_text
from .errors import RunLockedError, UserError
from .events import EVENTS_FILE, EpochDone, LayerStats, RunFailed, RunFinished, RunStarted, read_events
from .metrics import TRAINED_EPOCH

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def new_run_id(config: LabConfig, runs_dir: Path) -> str:
    """`<date>-<time>-<activation>-s<seed>[-<name>]`, made unique within runs_dir.

    The name keeps ASCII letters, digits, `-` and `_` (anything else becomes `-`), so the id
    stays far below the file system's 255-byte limit (run.name is at most 64 characters).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parts = [stamp, config.model.activation, f"s{config.run.seed}"]
    if config.run.name:
        parts.append("".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in config.run.name))
    base = "-".join(parts)
    run_id, n = base, 1
    while (runs_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def create_run_dir(config: LabConfig, run_dir: Path | None = None) -> tuple[str, Path]:
    """Make a fresh run folder (a new id under run.runs_dir, or exactly `run_dir`, which must not
    hold a run yet); a clear UserError when it cannot be made."""
    if run_dir is not None:
        if (run_dir / CONFIG_FILE).exists():
            raise UserError(f"{run_dir}: already holds a run ({CONFIG_FILE}); resume it instead")
        run_id, exist_ok, where = run_dir.name, True, str(run_dir)
    else:
        runs_dir = Path(config.run.runs_dir)
        run_id, exist_ok, where = new_run_id(config, runs_dir), False, f"run.runs_dir = {str(runs_dir)!r}"
        run_dir = runs_dir / run_id
    try:
        (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=exist_ok)
        (run_dir / LOCK_FILE).touch()  # part of the folder from the start (see RunLock)
    except OSError as exc:
        raise UserError(f"{where}: cannot create run folder ({exc.strerror or exc})") from None
    return run_id, run_dir


def write_config(run_dir: Path, config: LabConfig) -> None:
    """config.json, written atomically (temp file + rename); a failed write (full disk)
    leaves neither a temp file nor a partial config.json."""
    path = run_dir / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.tmp")
    text = json.dumps(config.to_dict(), indent=2) + "\n"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        reason = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise UserError(f"{path}: cannot write run config ({reason})") from None


def read_config(run_dir: Path) -> LabConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    text = read_config_text(path, what="run config")  # a FIFO, a device or a huge file: one line
    data = parse_text(text, source=str(path), json_format=True)
    return config_from_dict(data, source=str(path))


# --- the run folder's lock -------------------------------------------------------------------

LOCK_FILE = "run.lock"


class RunLock:
    """An exclusive `flock` on `<run_dir>/run.lock`, held while one process trains the folder.

    The kernel drops a flock when its process dies (even by kill -9), so a lock is never
    stale: the file may stay behind, but only a live holder locks it. The file says who holds
    it (pid, host, start time) for the message a second trainer gets and for `lock_holder`.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise RunLockedError naming the holder (one line)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UserError(f"{self.path.parent}: cannot lock the run folder ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return self  # a file system without locks (some network mounts): train unlocked
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(f"{self.path.parent}: cannot lock the run folder ({exc.strerror or exc})") from None
            holder = lock_holder(self.path.parent) or {}
            who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
                   + (f" since {holder['started']}" if holder.get("started") else "")) if holder else "another process"
            raise RunLockedError(f"{self.path.parent}: another actlab is training this run folder ({who}); "
                                 "wait for it to end or stop it first") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError:
            pass  # a full disk: the lock itself holds, only the holder's name is missing
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def lock_run_dir(run_dir: str | os.PathLike[str]) -> RunLock:
    """Lock a run folder for training (see RunLock); RunLockedError when someone else trains it."""
    return RunLock(run_dir).acquire()


def lock_holder(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who trains `run_dir` now: {"pid", "host", "started"}, or None when nobody holds its lock.

    For readers (watch, studies): a live writer holds the lock; a dead one (exited, killed)
    does not, whatever the lock file still says. Reading never blocks and never takes the lock
    away from a trainer.
    """
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            try:
                info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
            except ValueError:
                info = {}
            info = info if isinstance(info, dict) else {}
            return {"pid": info.get("pid"), "host": info.get("host"), "started": info.get("started")}
        fcntl.flock(fd, fcntl.LOCK_UN)  # we got it: nobody trains the folder
        return None
    finally:
        os.close(fd)


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
    #: layer -> metric -> value of the probes' trained table (the LayerStats at metrics.TRAINED_EPOCH:
    #: exact dead counts on the best checkpoint's weights after training); not an epoch of `layer_stats`
    trained: dict[str, dict[str, float]] | None = None

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
    trained = None
    for event in read_events(run_dir):
        if isinstance(event, RunStarted):
            started = event
            status = "running"
        elif isinstance(event, EpochDone):
            epochs[event.epoch] = dict(epoch=event.epoch, train_loss=event.train_loss, train_acc=event.train_acc,
                                       val_loss=event.val_loss, val_acc=event.val_acc, seconds=event.seconds,
                                       activation=event.activation)
        elif isinstance(event, LayerStats):
            if event.epoch == TRAINED_EPOCH:
                trained = event.layers
            else:
                stats[event.epoch] = event.layers
        elif isinstance(event, RunFinished):
            status, test_acc = event.status, event.test_acc
        elif isinstance(event, RunFailed):
            status = "failed"
    run_id = started.run_id if started else run_dir.name
    return RunTable(run_id, started, [epochs[k] for k in sorted(epochs)], stats, status, test_acc, trained)
