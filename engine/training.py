"""The training loop: one run of the lab, steered by commands, reported by events.

Design points:
- Whole splits live on the device as tensors; a batch is an `index_select` of a seeded
  permutation, so there is no per-sample Python work in the loop.
- Losses and correct counts accumulate on the device and are read back once per epoch
  (plus a cheap finiteness check every few dozen batches), never with `.item()` per batch.
- Commands (pause, resume, stop, save, hot swap) arrive through a thread-safe queue and are
  applied between batches, so a stop takes at most one batch.
- Every state the next batch depends on (weights, optimizer, RNGs, the shuffle generator's
  state at the start of the epoch, the batch index and the partial sums of the epoch) is in
  the checkpoint, so a resumed run reproduces the uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import runs
from .checkpoints import load_weights, model_config_of, read_checkpoint, save_checkpoint
from .config import LabConfig, check_names
from .data import DataSplits, load_dataset
from .device import describe_device, resolve_device
from .errors import CheckpointError, UserError
from .events import (ActivationSwapped, BatchProgress, CheckpointSaved, Consumer, EpochDone, Event, EventBus,
                     EventLog, LayerStats, RunFailed, RunFinished, RunStarted, StateChanged, StepStats)
from .model import MLP, MLPConfig, count_parameters

#: check the running loss for NaN/inf every this many batches (one device sync each)
FINITE_CHECK_EVERY = 32
#: at most this many EpochDone events kept in memory (long runs stay flat)
HISTORY_LIMIT = 1000


# --- commands ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    kind: str  # "pause", "resume", "stop", "save", "swap"
    args: dict[str, Any] = field(default_factory=dict)


class RunControl:
    """Thread-safe remote control of a run; commands apply between batches."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def pause(self) -> None:
        self._queue.put(Command("pause"))

    def resume(self) -> None:
        self._queue.put(Command("resume"))

    def stop(self, status: str = "stopped") -> None:
        """End the run after the current batch; status "stopped" or "interrupted"."""
        self._queue.put(Command("stop", {"status": status}))

    def save(self) -> None:
        self._queue.put(Command("save"))

    def swap_activation(self, name: str, **config: Any) -> None:
        """Queue a hot swap; an unknown name raises ValueError here, in the caller's thread."""
        from .activations import canonical_name

        self._queue.put(Command("swap", {"name": canonical_name(name), "config": config}))

    def get(self, timeout: float | None = None) -> Command | None:
        try:
            if timeout is None:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


class _Stop(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class _Diverged(Exception):
    pass


# --- probes interface -------------------------------------------------------------------

class NoProbes:
    """The probe hooks the loop calls; this one does nothing (probes off)."""

    def attach(self, model: nn.Module) -> None: ...
    def detach(self) -> None: ...
    def init_stats(self, model: nn.Module, data: DataSplits) -> LayerStats | None: return None
    def epoch_start(self, epoch: int) -> None: ...
    def after_backward(self, model: nn.Module) -> None: ...
    def after_step(self, model: nn.Module) -> None: ...
    def epoch_stats(self, epoch: int, model: nn.Module, data: DataSplits) -> LayerStats | None: return None
    def step_stats(self, epoch: int) -> StepStats | None: return None
    def nonfinite_layer(self) -> str | None: return None

    def set_run_id(self, run_id: str) -> None:
        self.run_id = run_id


# --- the run ----------------------------------------------------------------------------

@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    epochs_run: int
    best_epoch: int
    best_val_acc: float
    test_acc: float | None
    test_loss: float | None
    history: list[EpochDone]
    message: str = ""


@dataclass
class _Progress:
    """Everything about where the run stands, saved in each checkpoint."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed within the epoch in progress
    step: int = 0  # optimizer steps overall
    best_val_acc: float = -1.0
    best_epoch: int = 0
    since_best: int = 0
    shuffle_state: torch.Tensor | None = None  # generator state at the start of the epoch in progress
    loss_sum: float = 0.0  # partial sums of the epoch in progress
    correct: int = 0
    seen: int = 0


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole split, one read-back at the end."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            logits = model(xb)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
            correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(1, x.shape[0])
    return loss_sum.item() / n, correct.item() / n


def make_optimizer(config: LabConfig, model: nn.Module) -> torch.optim.Optimizer:
    t = config.train
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


class TrainingRun:
    """One run: build or restore, train epoch by epoch, checkpoint, report.

    `consumers` receive every event; the run also logs them to its folder's events.jsonl.
    Give `data` to reuse splits already loaded (tests, the app's repeated runs).
    """

    def __init__(self, config: LabConfig, *, consumers: Iterable[Consumer] = (), control: RunControl | None = None,
                 data: DataSplits | None = None, probes: Any = None, resume_dir: str | Path | None = None,
                 step_stats_interval: float = 0.5) -> None:
        self.config = config
        self.control = control or RunControl()
        self.bus = EventBus(consumers)
        self._data = data
        self._probes = probes
        self._resume_dir = Path(resume_dir) if resume_dir is not None else None
        self._step_stats_interval = step_stats_interval
        self.history: deque[EpochDone] = deque(maxlen=HISTORY_LIMIT)
        self.run_id = ""
        self.run_dir: Path | None = None
        self._log: EventLog | None = None
        self._paused = False
        self._partial: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- setup -----------------------------------------------------------------------

    def _setup(self) -> None:
        check_names(self.config)
        self.device = resolve_device(self.config.run.device)
        resumed = self._resume_dir is not None
        checkpoint = None
        if resumed:
            self.run_dir = self._resume_dir
            self.run_id = self.run_dir.name
            checkpoint = read_checkpoint(runs.checkpoint_path(self.run_dir), map_location="cpu")
        d = self.config.data
        if self._data is None:
            self._data = load_dataset(d.dataset, device=self.device, seed=self.config.run.seed, val_size=d.val_size,
                                      normalization=d.normalization, source=d.source or None,
                                      cache_dir=d.cache_dir or None, fallback=d.fallback)
        self.data = self._data
        if self.data.train_x.device != self.device:
            self.data = dataclasses.replace(
                self.data, **{k: getattr(self.data, k).to(self.device) for k in
                              ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")})
        if not resumed:
            self.config = self.config.replace(**{"data.dataset": self.data.name})
            self.run_id, self.run_dir = runs.create_run_dir(self.config)
            runs.write_config(self.run_dir, self.config)

        m = self.config.model
        model_config = MLPConfig(input_size=self.data.input_size, num_classes=self.data.num_classes,
                                 hidden_sizes=tuple(m.hidden_sizes), activation=m.activation,
                                 activation_config=dict(m.activation_config), dropout=m.dropout)
        if checkpoint is not None:
            model_config = model_config_of(checkpoint, runs.checkpoint_path(self.run_dir))
        torch.manual_seed(self.config.run.seed)
        self.model = MLP(model_config).to(self.device)
        self.optimizer = make_optimizer(self.config, self.model)
        self.shuffle = torch.Generator(device="cpu")
        self.shuffle.manual_seed(self.config.run.seed)
        self.progress = _Progress()
        if checkpoint is not None:
            self._restore(checkpoint)
        self._log = EventLog(self.run_dir)
        self.bus.subscribe(self._log)
        if self._probes is None:
            self._probes = NoProbes()
        self._probes.set_run_id(self.run_id)

    def _restore(self, ck: dict[str, Any]) -> None:
        path = runs.checkpoint_path(self.run_dir)
        load_weights(self.model, ck, path)
        try:
            if ck.get("optimizer") is not None:
                self.optimizer.load_state_dict(ck["optimizer"])
            p = ck["progress"]
            self.progress = _Progress(epoch=int(p["epoch"]), batch=int(p["batch"]), step=int(p["step"]),
                                      best_val_acc=float(p["best_val_acc"]), best_epoch=int(p["best_epoch"]),
                                      since_best=int(p["since_best"]), shuffle_state=p.get("shuffle_state"),
                                      loss_sum=float(p["loss_sum"]), correct=int(p["correct"]),
                                      seen=int(p["seen"]))
            rng = ck["rng"]
            torch.set_rng_state(rng["torch"])
            if torch.cuda.is_available() and rng.get("cuda"):
                torch.cuda.set_rng_state_all(rng["cuda"])
            if self.progress.shuffle_state is not None and self.progress.batch > 0:
                self.shuffle.set_state(self.progress.shuffle_state)
            else:
                self.shuffle.set_state(rng["shuffle"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot resume from this checkpoint ({exc})") from None

    # -- checkpoints -----------------------------------------------------------------

    def _checkpoint_payload(self) -> dict[str, Any]:
        p = self.progress
        if p.batch > 0 and self._partial is not None:  # mid-epoch: bring the partial sums over
            p.loss_sum, p.correct = float(self._partial[0].item()), int(self._partial[1].item())
        return {
            "run_id": self.run_id,
            "model_config": self.model.config.to_dict(),
            "model_state": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lab_config": self.config.to_dict(),
            "epoch": p.epoch,
            "step": p.step,
            "progress": {"epoch": p.epoch, "batch": p.batch, "step": p.step, "best_val_acc": p.best_val_acc,
                         "best_epoch": p.best_epoch, "since_best": p.since_best,
                         "shuffle_state": p.shuffle_state, "loss_sum": p.loss_sum, "correct": p.correct,
                         "seen": p.seen},
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    "shuffle": self.shuffle.get_state()},
        }

    def _save(self, which: str, reason: str) -> None:
        path = save_checkpoint(runs.checkpoint_path(self.run_dir, which), self._checkpoint_payload())
        self.bus.emit(CheckpointSaved(run_id=self.run_id, epoch=self.progress.epoch, step=self.progress.step,
                                      path=str(path), reason=reason))

    # -- commands --------------------------------------------------------------------

    def _handle_commands(self, epoch: int) -> None:
        """Apply queued commands; while paused, wait here (still answering stop)."""
        while True:
            command = self.control.get(timeout=0.1 if self._paused else None)
            if command is None:
                if self._paused:
                    continue
                return
            if command.kind == "pause" and not self._paused:
                self._paused = True
                self.bus.emit(StateChanged(run_id=self.run_id, state="paused"))
            elif command.kind == "resume" and self._paused:
                self._paused = False
                self.bus.emit(StateChanged(run_id=self.run_id, state="running"))
            elif command.kind == "stop":
                raise _Stop(command.args.get("status", "stopped"))
            elif command.kind == "save":
                self._save(runs.LAST, "manual")
            elif command.kind == "swap":
                self._swap(epoch, command.args["name"], command.args.get("config", {}))

    def _swap(self, epoch: int, name: str, config: dict[str, Any]) -> None:
        old = self.model.config.activation
        self.model.swap_activation(name, **config)
        # learned activation parameters (prelu) join the optimizer; old ones leave it
        self.optimizer.param_groups[0]["params"] = list(self.model.parameters())
        self._probes.detach()
        self._probes.attach(self.model)
        self.bus.emit(ActivationSwapped(run_id=self.run_id, epoch=epoch, step=self.progress.step, old=old,
                                        new=self.model.config.activation,
                                        new_config=dict(self.model.config.activation_config)))

    # -- the loop --------------------------------------------------------------------

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        data, model, p = self.data, self.model, self.progress
        n = data.train_x.shape[0]
        batch_size = min(self.config.train.batch_size, n)
        steps = n // batch_size
        if p.batch == 0:
            p.shuffle_state = self.shuffle.get_state()
            p.loss_sum, p.correct, p.seen = 0.0, 0, 0
        perm = torch.randperm(n, generator=self.shuffle).to(self.device)
        loss_sum = torch.tensor(p.loss_sum, device=self.device, dtype=torch.float64)
        correct = torch.tensor(p.correct, device=self.device, dtype=torch.int64)
        self._partial = (loss_sum, correct)
        model.train()
        self._probes.epoch_start(epoch)
        last_stats = time.monotonic()
        for b in range(p.batch, steps):
            self._handle_commands(epoch)
            idx = perm[b * batch_size:(b + 1) * batch_size]
            x = data.train_x.index_select(0, idx)
            y = data.train_y.index_select(0, idx)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._probes.after_backward(model)
            self.optimizer.step()
            self._probes.after_step(model)
            loss_sum += loss.detach().double() * batch_size
            correct += (logits.detach().argmax(1) == y).sum()
            p.batch, p.step, p.seen = b + 1, p.step + 1, p.seen + batch_size
            if (b + 1) % FINITE_CHECK_EVERY == 0 and not math.isfinite(loss_sum.item()):
                raise _Diverged()
            self.bus.emit(BatchProgress(run_id=self.run_id, epoch=epoch, step=b + 1, steps=steps,
                                        global_step=p.step))
            now = time.monotonic()
            if now - last_stats >= self._step_stats_interval:
                last_stats = now
                self._emit(self._probes.step_stats(epoch))
        self._emit(self._probes.step_stats(epoch))
        self._partial = None
        total = loss_sum.item()
        if not math.isfinite(total):
            raise _Diverged()
        seen = max(1, p.seen)
        return total / seen, correct.item() / seen

    def _emit(self, event: Event | None) -> None:
        if event is not None:
            self.bus.emit(event)

    def _find_nonfinite(self) -> str:
        layer = self._probes.nonfinite_layer()
        if layer:
            return layer
        for name, module in self.model.layers.named_children():
            for param in module.parameters(recurse=False):
                if not torch.isfinite(param).all() or (param.grad is not None and not torch.isfinite(param.grad).all()):
                    return name
        return "unknown layer"

    def run(self) -> RunResult:
        """Train to the end (or until stopped); never raises for a failed run: see RunFailed."""
        started = time.monotonic()
        status, message = "finished", ""
        try:
            self._setup()
            self._announce()
            self._probes.attach(self.model)
            if self.progress.epoch == 0 and self.progress.batch == 0:
                self._emit(self._probes.init_stats(self.model, self.data))
            status, message = self._loop()
        except UserError as exc:
            return self._fail(exc, started, user=True)
        except Exception as exc:  # the run failed; report, do not crash the caller
            return self._fail(exc, started)
        finally:
            if self._probes is not None:
                self._probes.detach()
        return self._finish(status, message, started)

    def _announce(self) -> None:
        d, m = self.data, self.model.config
        self.bus.emit(RunStarted(
            run_id=self.run_id, run_dir=str(self.run_dir), config=self.config.to_dict(), dataset=d.name,
            dataset_note=d.note, device=describe_device(self.device), input_size=m.input_size,
            num_classes=m.num_classes, hidden_sizes=tuple(m.hidden_sizes), activation=m.activation,
            activation_config=dict(m.activation_config), max_epochs=self.config.train.epochs,
            steps_per_epoch=d.train_x.shape[0] // min(self.config.train.batch_size, d.train_x.shape[0]),
            train_size=d.train_x.shape[0], val_size=d.val_x.shape[0], test_size=d.test_x.shape[0],
            param_count=count_parameters(self.model), start_epoch=self.progress.epoch))

    def _loop(self) -> tuple[str, str]:
        t, p = self.config.train, self.progress
        if t.patience and p.since_best >= t.patience and p.batch == 0:
            return "early-stopped", f"no better validation accuracy for {t.patience} epochs"
        while p.epoch < t.epochs:
            epoch = p.epoch + 1
            epoch_started = time.monotonic()
            try:
                train_loss, train_acc = self._train_epoch(epoch)
            except _Stop as stop:
                self._save(runs.LAST, "interrupt" if stop.status == "interrupted" else "manual")
                return stop.status, ""
            except _Diverged:
                layer = self._find_nonfinite()
                return "diverged", f"non-finite loss in epoch {epoch}; first non-finite values in {layer}"
            val_loss, val_acc = evaluate(self.model, self.data.val_x, self.data.val_y)
            if not math.isfinite(val_loss):
                return "diverged", f"non-finite validation loss in epoch {epoch}; first in {self._find_nonfinite()}"
            p.epoch, p.batch = epoch, 0
            improved = val_acc > p.best_val_acc
            if improved:
                p.best_val_acc, p.best_epoch, p.since_best = val_acc, epoch, 0
            else:
                p.since_best += 1
            self._emit(self._probes.epoch_stats(epoch, self.model, self.data))
            done = EpochDone(run_id=self.run_id, epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                             val_loss=val_loss, val_acc=val_acc, seconds=time.monotonic() - epoch_started,
                             lr=self.optimizer.param_groups[0]["lr"], activation=self.model.config.activation,
                             best_val_acc=p.best_val_acc, best_epoch=p.best_epoch, improved=improved)
            self.history.append(done)
            self.bus.emit(done)
            p.shuffle_state = None
            if improved:
                self._save(runs.BEST, "best")
            self._save(runs.LAST, "last")
            if t.patience and p.since_best >= t.patience and p.epoch < t.epochs:
                return "early-stopped", f"no better validation accuracy for {t.patience} epochs"
        return "finished", ""

    def _test_best(self) -> tuple[float | None, float | None]:
        best = runs.checkpoint_path(self.run_dir, runs.BEST)
        if not best.exists():
            return None, None
        ck = read_checkpoint(best, map_location="cpu")
        model = MLP(model_config_of(ck, best)).to(self.device)
        load_weights(model, ck, best)
        return evaluate(model, self.data.test_x, self.data.test_y)

    def _finish(self, status: str, message: str, started: float) -> RunResult:
        test_loss = test_acc = None
        if status != "interrupted":
            try:
                test_loss, test_acc = self._test_best()
            except UserError as exc:
                message = f"{message}; test skipped: {exc}".lstrip("; ")
        p = self.progress
        self.bus.emit(RunFinished(run_id=self.run_id, status=status, epochs_run=p.epoch, best_epoch=p.best_epoch,
                                  best_val_acc=max(p.best_val_acc, 0.0), test_acc=test_acc, test_loss=test_loss,
                                  seconds=time.monotonic() - started, message=message))
        self._close()
        return RunResult(self.run_id, self.run_dir, status, p.epoch, p.best_epoch, max(p.best_val_acc, 0.0),
                         test_acc, test_loss, list(self.history), message)

    def _fail(self, exc: BaseException, started: float, user: bool = False) -> RunResult:
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not user:
            error = f"{type(exc).__name__}: {error}"
        event = RunFailed(run_id=self.run_id, error=error, error_type=type(exc).__name__,
                          details="" if user else traceback.format_exc())
        self.bus.emit(event)
        self._close()
        p = getattr(self, "progress", _Progress())
        result = RunResult(self.run_id, self.run_dir or Path("."), "failed", p.epoch, p.best_epoch,
                           max(p.best_val_acc, 0.0), None, None, list(self.history), error)
        result.exception = exc  # type: ignore[attr-defined]
        return result

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()


def train(config: LabConfig, **kwargs: Any) -> RunResult:
    """Start a fresh run of `config` and train it to the end."""
    return TrainingRun(config, **kwargs).run()


def resume(run_dir: str | Path, **kwargs: Any) -> RunResult:
    """Continue an interrupted run from its last checkpoint."""
    config = runs.read_config(Path(run_dir))
    return TrainingRun(config, resume_dir=run_dir, **kwargs).run()
