"""The training loop: one run of the lab, steered by commands, reported by events.

Design points:
- Whole splits live on the device as tensors; a batch is an `index_select` of a seeded
  permutation, so there is no per-sample Python work in the loop.
- Losses and correct counts accumulate on the device in persistent tensors. A non-finite
  loss makes the running sum non-finite for good (the device-side flag); it is looked at
  every few dozen batches without waiting for the device (`NonFiniteWatch`). The epoch's
  train and validation sums and the weights' finiteness come back in one packed read.
- On CUDA the step (forward, backward, optimizer, sums) can be replayed as a CUDA graph
  (`train.cuda_graphs`, see step_graph.py).
- Checkpoints are written once per epoch from a host copy taken in one transfer; best.pt is
  a hard link to (or a copy of) the same bytes as last.pt.
- Commands (pause, resume, stop, save, hot swap) arrive through a thread-safe queue and are
  applied between batches, so a stop takes at most one batch.
- Every state the next batch depends on (weights, optimizer, RNGs, the shuffle generator's
  state at the start of the epoch, the batch index and the partial sums of the epoch) is in
  the checkpoint, so a resumed run reproduces the uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import runs
from .checkpoints import load_weights, model_config_of, read_checkpoint, remove_stale_temps, save_checkpoint
from .config import LabConfig, apply_recipe, check_memory, check_names
from .data import DataSplits, load_config_data
from .device import describe_device, host_copy, resolve_device
from .errors import CheckpointError, ConfigError, StorageError, UserError
from .events import (ActivationSwapped, BatchProgress, CheckpointSaved, Consumer, EpochDone, Event, EventBus,
                     EventLog, LayerStats, RunFailed, RunFinished, RunOutcome, RunStarted, StateChanged)
from .control import RunControl
from .model import MLP, MLPConfig, count_parameters
from .probes.base import NoProbes, Probes
from .step_graph import CapturedStep, graphs_supported
from .summary import SummaryWriter

#: look at the running loss for NaN/inf every this many batches (never waiting for the device)
FINITE_CHECK_EVERY = 32
#: the phases of an epoch, as timed in `TrainingRun.phase_seconds`
PHASES = ("train", "validate", "probes", "events", "checkpoints")
#: at most this many EpochDone events kept in memory (long runs stay flat)
HISTORY_LIMIT = 1000


class _Stop(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class _Diverged(Exception):
    pass


# --- the run ----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RunResult(RunOutcome):
    """What `run()` returns: the outcome (status "failed" with the exception, too), the run
    folder and the epochs' history."""

    run_id: str
    run_dir: Path
    history: list[EpochDone]
    exception: BaseException | None = None


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


def evaluate_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """(summed cross-entropy, correct count) over a whole split, as one float64 device tensor
    of 2 (nothing read back: the caller reads it with whatever else it needs)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, device=x.device, dtype=torch.float64)
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            logits = model(xb)
            sums[0] += F.cross_entropy(logits, yb, reduction="sum").double()
            sums[1] += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return sums


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole split, one read-back at the end."""
    loss_sum, correct = evaluate_sums(model, x, y, batch_size).tolist()
    n = max(1, x.shape[0])
    return loss_sum / n, correct / n


class NonFiniteWatch:
    """Notices a non-finite running loss sum without stalling the device.

    A NaN or inf loss makes the float64 running sum non-finite for the rest of the epoch, so the
    sum is the device-side flag. On the CPU it is simply read. On an accelerator, `check` starts
    a non-blocking copy into pinned host memory and looks at the previous copy only once the
    device reports it done, so a divergence is seen a check or two late but no step waits.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._async = device.type == "cuda"
        self._host = torch.zeros((), dtype=torch.float64, pin_memory=True) if self._async else None
        self._event: torch.cuda.Event | None = None

    def diverged(self, running_sum: torch.Tensor) -> bool:
        """Whether a finished copy showed a non-finite sum (then starts the next copy)."""
        if not self._async:
            return not math.isfinite(running_sum.item())
        seen = False
        if self._event is not None and self._event.query():  # query never waits
            seen = not math.isfinite(float(self._host))
            self._event = None
        if self._event is None:
            self._host.copy_(running_sum.detach(), non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        return seen


def make_optimizer(config: LabConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (or Adam) with PyTorch's fused kernel where this PyTorch and device have one (one
    pass over each parameter instead of several ops per parameter; the same update up to float
    rounding), else the foreach kernels, else the plain loop."""
    t = config.train
    if t.optimizer == "adam":
        cls, kwargs = torch.optim.Adam, {"lr": t.lr, "weight_decay": t.weight_decay}
    else:
        cls, kwargs = torch.optim.SGD, {"lr": t.lr, "momentum": t.momentum, "weight_decay": t.weight_decay}
    for impl in ({"fused": True}, {"foreach": True}, {}):
        try:
            optimizer = cls(model.parameters(), **kwargs, **impl)
            break
        except (RuntimeError, TypeError, ValueError):  # no such kernel for this device or PyTorch
            continue
    flags = {key: optimizer.defaults.get(key) for key in ("fused", "foreach")}

    def keep_kernel(opt: torch.optim.Optimizer) -> None:
        # load_state_dict brings back the saved groups' flags; a checkpoint from another device
        # or PyTorch must not switch this optimizer to a kernel that is missing here
        for group in opt.param_groups:
            group.update(flags)
        _sync_optimizer_state(opt)  # a checkpoint saved before a newcomer's first step

    if hasattr(optimizer, "register_load_state_dict_post_hook"):  # PyTorch >= 2.1
        optimizer.register_load_state_dict_post_hook(keep_kernel)
    return optimizer


def _sync_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After a hot swap changed the optimizer's parameters (prelu's slopes come or go).

    State of parameters that left is dropped (`state_dict()` fails on state it cannot name).
    In an SGD optimizer that has stepped, each newcomer gets a zero momentum buffer: fused SGD
    cannot step a mix of parameters with and without one, and momentum * 0 + grad = grad is
    exactly the first step's buffer.
    """
    current = {param for group in optimizer.param_groups for param in group["params"]}
    for param in [p for p in optimizer.state if p not in current]:
        del optimizer.state[param]
    for group in optimizer.param_groups:
        if not group.get("momentum"):
            continue
        states = [optimizer.state.get(param, {}) for param in group["params"]]
        if any("momentum_buffer" in state for state in states):
            for param, state in zip(group["params"], states):
                if "momentum_buffer" not in state:
                    optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)


class TrainingRun:
    """One run: build or restore, train epoch by epoch, checkpoint, report.

    `consumers` receive every event; the run also logs them to its folder's events.jsonl.
    Give `data` to reuse splits already loaded (tests, the app's repeated runs).
    """

    def __init__(self, config: LabConfig, *, consumers: Iterable[Consumer] = (), control: RunControl | None = None,
                 data: DataSplits | None = None, probes: Probes | None = None, resume_dir: str | Path | None = None,
                 step_stats_interval: float = 0.5, fresh_patience: bool = False,
                 run_dir: str | Path | None = None) -> None:
        self.config = config
        self._named_dir = Path(run_dir) if run_dir is not None else None  # a fresh run in this folder
        self._fresh_patience = fresh_patience  # an extended run: early stopping counts from the resume
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
        self._last_metrics: dict[str, float] = {}  # the newest finished epoch's metrics, kept in checkpoints
        self._last_saved = ""  # "epoch N" of the newest checkpoint on disk, for error messages
        #: seconds spent in each of PHASES, summed over the epochs run (read by bench/bench_run.py)
        self.phase_seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        #: the clock of `phase_seconds` (a benchmark may set time.process_time)
        self.phase_clock: Callable[[], float] = time.perf_counter
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None  # static batch buffers (x, y)
        self._sums: tuple[torch.Tensor, torch.Tensor] | None = None  # static (loss sum, correct count)
        self._graphs = "off"  # "off", or "auto"/"on" on a device that can capture
        self._step_graph: CapturedStep | None = None
        self._watch: NonFiniteWatch | None = None
        self._graph_note = ""  # why the step is not captured, said once
        #: CUDA graphs captured so far (one at the start, one more after each hot swap)
        self.graph_captures = 0

    # -- setup -----------------------------------------------------------------------

    def prepare(self) -> None:
        """Build or restore everything the first step needs (model, optimizer, data, run folder, log)."""
        check_names(self.config)
        self.device = resolve_device(self.config.run.device)
        graphs = getattr(self.config.train, "cuda_graphs", "off")
        if graphs == "on" and not graphs_supported(self.device):
            raise ConfigError(f"train.cuda_graphs = 'on' needs a CUDA device; this run trains on {self.device.type} "
                              f"(use 'auto' or 'off')")
        self._graphs = graphs if graphs_supported(self.device) else "off"
        resumed = self._resume_dir is not None
        checkpoint = None
        if resumed:
            self.run_dir = self._resume_dir
            self.run_id = self.run_dir.name
            self._lock = runs.lock_run_dir(self.run_dir)  # one trainer per folder; a second gets one line
            last = runs.checkpoint_path(self.run_dir)
            remove_stale_temps(last.parent)  # left by a writer killed mid-write
            # no last.pt yet (killed before the first epoch ended): the run starts over in its folder
            if last.exists() or last.is_symlink():
                checkpoint = read_checkpoint(last, map_location="cpu", run_config=self.config)
        if self._data is None:
            self._data = load_config_data(self.config, self.device)
        self.data = self._data
        if self.data.train_x.device != self.device:
            self.data = dataclasses.replace(
                self.data, **{k: getattr(self.data, k).to(self.device) for k in
                              ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")})
        if not resumed:  # the dataset really used, and its recipe for the keys the user left unset
            self.config = apply_recipe(self.config.replace(**{"data.dataset": self.data.name}), self.data.name)
        check_memory(self.config, self.device, self.data.input_size, self.data.num_classes)  # before allocating
        if not resumed:
            self.run_id, self.run_dir = runs.create_run_dir(self.config, self._named_dir)
            self._lock = runs.lock_run_dir(self.run_dir)
            runs.write_config(self.run_dir, self.config)

        m = self.config.model
        model_config = MLPConfig(input_size=self.data.input_size, num_classes=self.data.num_classes,
                                 hidden_sizes=tuple(m.hidden_sizes), activation=m.activation,
                                 activation_config=dict(m.activation_config), dropout=m.dropout)
        if checkpoint is not None:
            model_config = model_config_of(checkpoint, runs.checkpoint_path(self.run_dir))
            _check_fits_data(model_config, self.data, runs.checkpoint_path(self.run_dir))
        torch.manual_seed(self.config.run.seed)
        self.model = MLP(model_config).to(self.device)
        self.optimizer = make_optimizer(self.config, self.model)
        self.shuffle = torch.Generator(device="cpu")
        self.shuffle.manual_seed(self.config.run.seed)
        self.progress = _Progress()
        if checkpoint is not None:
            self._restore(checkpoint)
            if self._fresh_patience:
                self.progress.since_best = 0
        try:
            self._log = EventLog(self.run_dir)
        except OSError as exc:
            raise UserError(f"{self.run_dir}: cannot write the run log ({exc.strerror or exc})") from None
        self.bus.subscribe(self._log)
        self.bus.subscribe(SummaryWriter(self.run_dir))  # summary.json, kept current (engine/summary.py)
        if self._probes is None:  # probes follow the config unless the caller chose
            from .probes import build_probes

            self._probes = build_probes(self.config.probes)
        self._probes.set_run_id(self.run_id)

    @property
    def probes(self) -> Probes:
        """The probe set this run calls (set by `prepare`)."""
        return self._probes

    def epoch_stats(self, epoch: int) -> LayerStats | None:
        """The probes' end-of-epoch statistics for `epoch` (full passes; no event emitted)."""
        return self._probes.epoch_stats(epoch, self.model, self.data)

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
            # stopped inside an epoch (even before its first batch, when the generator had
            # already drawn that epoch's permutation): replay from the epoch's start state
            if self.progress.shuffle_state is not None:
                self.shuffle.set_state(self.progress.shuffle_state)
            else:
                self.shuffle.set_state(rng["shuffle"])
            self._last_metrics = dict(ck.get("metrics") or {})
            self._last_saved = f"epoch {self.progress.epoch}" + (
                f", batch {self.progress.batch}" if self.progress.batch else "") + f": {path}"
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot resume from this checkpoint ({exc})") from None

    # -- checkpoints -----------------------------------------------------------------

    def _host_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model state, optimizer state) on the CPU, taken in one transfer per dtype; mid-epoch
        the running sums come along in the same transfers (into `progress`)."""
        model_state, optimizer_state = self.model.state_dict(), self.optimizer.state_dict()
        leaves: dict[Any, torch.Tensor] = {("model", key): value for key, value in model_state.items()}
        for pid, state in optimizer_state["state"].items():
            leaves.update({("optimizer", pid, key): value for key, value in state.items()
                           if isinstance(value, torch.Tensor)})
        partial = self.progress.batch > 0 and self._partial is not None
        if partial:  # mid-epoch: bring the partial sums over
            leaves[("sums", "loss")], leaves[("sums", "correct")] = self._partial
        host = host_copy(leaves)
        for key in model_state:
            model_state[key] = host[("model", key)]
        optimizer_state["state"] = {pid: {key: host.get(("optimizer", pid, key), value) for key, value in state.items()}
                                    for pid, state in optimizer_state["state"].items()}
        if partial:
            self.progress.loss_sum = float(host[("sums", "loss")])
            self.progress.correct = int(host[("sums", "correct")])
        return model_state, optimizer_state

    def _checkpoint_payload(self) -> dict[str, Any]:
        model_state, optimizer_state = self._host_state()
        p = self.progress
        return {
            "run_id": self.run_id,
            "model_config": self.model.config.to_dict(),
            "model_state": model_state,
            "optimizer": optimizer_state,
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
            "metrics": dict(self._last_metrics),
        }

    def _save(self, which: str, reason: str, best_too: bool = False) -> None:
        """Write a checkpoint atomically; never one with NaN/inf weights (raises _Diverged).

        `best_too`: the same bytes also become best.pt (a hard link, renamed into place
        before last.pt: a kill between the two replays this epoch on resume).
        A failed write (full disk, unwritable folder) raises StorageError; the files that were
        on disk before stay as they were.
        """
        payload = self._checkpoint_payload()
        if not (_all_finite(payload["model_state"]) and math.isfinite(self.progress.loss_sum)):
            raise _Diverged()
        path = runs.checkpoint_path(self.run_dir, which)
        also = (runs.checkpoint_path(self.run_dir, runs.BEST),) if best_too else ()
        try:
            save_checkpoint(path, payload, also=also)
        except CheckpointError as exc:
            kept = f"; the newest checkpoint on disk ({self._last_saved}) is intact" if self._last_saved else ""
            raise StorageError(f"{exc}{kept}") from None
        if which == runs.LAST:
            self._last_saved = f"epoch {self.progress.epoch}" + (
                f", batch {self.progress.batch}" if self.progress.batch else "") + f": {path}"
        written = [(other, "best") for other in also] + [(path, reason)]
        for saved, why in written:
            self.bus.emit(CheckpointSaved(run_id=self.run_id, epoch=self.progress.epoch, step=self.progress.step,
                                          path=str(saved), reason=why))

    def _weights_finite_flag(self) -> torch.Tensor:
        """A device bool: every weight finite (not read back here)."""
        flags = [torch.isfinite(p).all() for p in self.model.parameters()]
        return torch.stack(flags).all() if flags else torch.ones((), dtype=torch.bool, device=self.device)

    def _check_log(self) -> None:
        """The run log stopped taking writes (full disk): the run cannot be recorded, stop it."""
        error = getattr(self._log, "error", None)
        if error:
            kept = f"; the newest checkpoint on disk ({self._last_saved}) is intact" if self._last_saved else ""
            raise StorageError(f"{error}{kept}")

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
        _sync_optimizer_state(self.optimizer)
        self._probes.detach()
        self._probes.attach(self.model)
        self._step_graph = None  # new parameters (and modules): warm up and capture again
        self.bus.emit(ActivationSwapped(run_id=self.run_id, epoch=epoch, step=self.progress.step, old=old,
                                        new=self.model.config.activation,
                                        new_config=dict(self.model.config.activation_config)))

    # -- the loop --------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """Train one epoch (from `progress.batch` on); (mean loss, accuracy) over its batches."""
        loss_sum, correct = torch.stack([t.double() for t in self.train_steps(epoch)]).tolist()
        return self._train_means(loss_sum, correct)

    def _train_means(self, loss_sum: float, correct: float) -> tuple[float, float]:
        if not math.isfinite(loss_sum):
            raise _Diverged()
        seen = max(1, self.progress.seen)
        return loss_sum / seen, correct / seen

    def train_steps(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's training steps; returns its (loss sum, correct count) as device tensors,
        not read back. No step waits for the device: on CUDA a run of these steps passes
        `torch.cuda.set_sync_debug_mode("error")` (tests/test_cuda.py)."""
        data, p = self.data, self.progress
        n = data.train_x.shape[0]
        batch_size = min(self.config.train.batch_size, n)
        steps = n // batch_size
        if p.batch == 0:
            p.shuffle_state = self.shuffle.get_state()
            p.loss_sum, p.correct, p.seen = 0.0, 0, 0
        perm = torch.randperm(n, generator=self.shuffle)
        if self.device.type == "cuda":
            perm = perm.pin_memory().to(self.device, non_blocking=True)
        else:
            perm = perm.to(self.device)
        x, y, loss_sum, correct = self._static_buffers(batch_size)
        loss_sum.fill_(p.loss_sum)
        correct.fill_(p.correct)
        self._partial = (loss_sum, correct)
        self.model.train()
        self._probes.epoch_start(epoch, steps - p.batch)
        if self._watch is None or self._watch.device != self.device:
            self._watch = NonFiniteWatch(self.device)  # one per run: its pinned buffer is allocated once
        watch = self._watch
        last_stats = time.monotonic()
        for b in range(p.batch, steps):
            self._handle_commands(epoch)
            idx = perm[b * batch_size:(b + 1) * batch_size]
            torch.index_select(data.train_x, 0, idx, out=x)
            torch.index_select(data.train_y, 0, idx, out=y)
            self._one_step()
            p.batch, p.step, p.seen = b + 1, p.step + 1, p.seen + batch_size
            if (b + 1) % FINITE_CHECK_EVERY == 0 and watch.diverged(loss_sum):
                raise _Diverged()
            self.bus.emit(BatchProgress(run_id=self.run_id, epoch=epoch, step=b + 1, steps=steps,
                                        global_step=p.step))
            now = time.monotonic()
            if now - last_stats >= self._step_stats_interval:
                last_stats = now
                self._emit(self._probes.step_stats(epoch))
        self._emit(self._probes.step_stats(epoch))
        self._partial = None
        return loss_sum, correct

    def _static_buffers(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch buffers every step gathers into and the running sums every step adds to:
        the same tensors for the whole run (a CUDA graph replays fixed addresses)."""
        train_x, train_y = self.data.train_x, self.data.train_y
        if self._batch is None or self._batch[0].shape[0] != batch_size or self._batch[0].device != train_x.device:
            self._batch = (train_x.new_empty((batch_size, *train_x.shape[1:])), train_y.new_empty((batch_size,)))
            self._sums = (torch.zeros((), device=self.device, dtype=torch.float64),
                          torch.zeros((), device=self.device, dtype=torch.int64))
            self._step_graph = None
        return (*self._batch, *self._sums)

    def _step(self) -> None:
        """One training step on the static batch, adding to the static sums (eager or captured)."""
        (x, y), (loss_sum, correct), model = self._batch, self._sums, self.model
        self.optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self._probes.after_backward(model)
        self.optimizer.step()
        self._probes.after_step(model)
        loss_sum.add_(loss.detach(), alpha=x.shape[0])  # in float64, as loss.double() * batch_size
        correct.add_((logits.detach().argmax(1) == y).sum())

    def _one_step(self) -> None:
        """`_step` eagerly, or replayed from a CUDA graph when `train.cuda_graphs` allows."""
        if self._graphs == "off":
            self._step()
            return
        if self._step_graph is None:
            why = self._graph_blocker()
            if why:
                self._graphs_off(why)
                self._step()
                return
            self._step_graph = CapturedStep(self._step, self.device)
        graph = self._step_graph
        was_captured = graph.captured
        graph()
        if graph.failed:
            self._graphs_off(f"capture failed ({graph.failed})")
        elif graph.captured and not was_captured:
            self.graph_captures += 1

    def _graph_blocker(self) -> str:
        """Why the step cannot be captured with these probes ('' when it can)."""
        if isinstance(self._probes, NoProbes) or getattr(self._probes, "graph_safe", False):
            return ""
        return "the probes' per-step schedule runs Python code each step (probes.enabled = false allows graphs)"

    def _graphs_off(self, why: str) -> None:
        """Train eagerly from now on, and say why once."""
        self._graphs, self._step_graph = "off", None
        if not self._graph_note:
            self._graph_note = f"CUDA graphs off for run {self.run_id}: {why}; training goes on eagerly"
            warnings.warn(self._graph_note, RuntimeWarning, stacklevel=2)

    def _emit(self, event: Event | None) -> None:
        if event is not None:
            self.bus.emit(event)

    def _diverged_message(self, epoch: int, what: str = "loss") -> str:
        kept = f"; last good checkpoint: {self._last_saved}" if self._last_saved else ""
        return f"non-finite {what} in epoch {epoch}; first non-finite values in {self._find_nonfinite()}{kept}"

    def _find_nonfinite(self) -> str:
        """Where the first NaN/inf appeared: the probes' watch when on, else a look at the model now."""
        layer = self._probes.nonfinite_layer()
        if layer:
            return layer
        children = list(self.model.layers.named_children())
        # without the probes' watch only the state now is known: one NaN step spreads to every layer
        weights = [name for name, module in children
                   if any(not torch.isfinite(p).all() for p in module.parameters(recurse=False))]
        if weights:
            return f"{' and '.join(weights)} (weights; turn probes.nonfinite on to see which layer was first)"
        grads = [name for name, module in children if any(
            p.grad is not None and not torch.isfinite(p.grad).all() for p in module.parameters(recurse=False))]
        if grads:
            return f"{' and '.join(grads)} (gradients)"
        # weights finite: replay a slice of the training data and find the first layer whose output overflows
        outputs: dict[str, torch.Tensor] = {}
        handles = [module.register_forward_hook(lambda m, i, o, name=name: outputs.setdefault(name, o.detach()))
                   for name, module in children]
        try:
            was_training = self.model.training
            self.model.eval()
            with torch.inference_mode():
                logits = self.model(self.data.train_x[:1024])
                loss = F.cross_entropy(logits, self.data.train_y[:1024])
            self.model.train(was_training)
        finally:
            for handle in handles:
                handle.remove()
        for name, _ in children:
            out = outputs.get(name)
            if out is not None and not torch.isfinite(out).all():
                return f"{name} (forward)"
        last = children[-1][0] if children else "the output layer"
        peak = logits.abs().max().item() if logits.numel() else 0.0
        state = "overflows" if not math.isfinite(loss.item()) else "overflowed on some batch"
        return f"the loss after {last} (every layer output finite; largest |logit| {peak:.3g}, cross-entropy {state})"

    def run(self) -> RunResult:
        """Train to the end (or until stopped); never raises for a failed run: see RunFailed."""
        started = time.monotonic()
        status, message = "finished", ""
        try:
            self.prepare()
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
            ended = self.run_epoch()
            if ended is not None:
                return ended
            if t.patience and p.since_best >= t.patience and p.epoch < t.epochs:
                return "early-stopped", f"no better validation accuracy for {t.patience} epochs"
        return "finished", ""

    def run_epoch(self) -> tuple[str, str] | None:
        """The next epoch as `run()` runs it: training steps, validation, the probes' epoch
        statistics, the epoch's events, one checkpoint write. Returns (status, message) when
        the run must end here (stopped, diverged), else None. Each phase's seconds are added
        to `phase_seconds` (clock: `phase_clock`)."""
        p, clock = self.progress, self.phase_clock
        epoch = p.epoch + 1
        epoch_started = time.monotonic()
        mark = clock()
        try:
            train_sums = self.train_steps(epoch)
        except _Stop as stop:
            try:
                self._save(runs.LAST, "interrupt" if stop.status == "interrupted" else "manual")
            except _Diverged:  # NaN weights are never written: the previous checkpoint stays
                return "diverged", self._diverged_message(epoch)
            return stop.status, ""
        except _Diverged:
            return "diverged", self._diverged_message(epoch)
        mark = self._phase("train", mark)
        val_sums = evaluate_sums(self.model, self.data.val_x, self.data.val_y)
        # the epoch's one read-back: train and validation sums, and whether every weight is finite
        packed = torch.cat([train_sums[0].double().reshape(1), train_sums[1].double().reshape(1), val_sums,
                            self._weights_finite_flag().double().reshape(1)])
        train_loss_sum, train_correct, val_loss_sum, val_correct, weights_finite = packed.tolist()
        mark = self._phase("validate", mark)
        try:
            train_loss, train_acc = self._train_means(train_loss_sum, train_correct)
        except _Diverged:
            return "diverged", self._diverged_message(epoch)
        n_val = max(1, self.data.val_x.shape[0])
        val_loss, val_acc = val_loss_sum / n_val, val_correct / n_val
        if not math.isfinite(val_loss):
            return "diverged", self._diverged_message(epoch, "validation loss")
        if not weights_finite:  # e.g. an inf weight feeding a dead ReLU: the loss stays finite
            return "diverged", self._diverged_message(epoch, "weights")
        p.epoch, p.batch = epoch, 0
        improved = val_acc > p.best_val_acc
        if improved:
            p.best_val_acc, p.best_epoch, p.since_best = val_acc, epoch, 0
        else:
            p.since_best += 1
        stats = self._probes.epoch_stats(epoch, self.model, self.data)
        mark = self._phase("probes", mark)
        self._emit(stats)
        done = EpochDone(run_id=self.run_id, epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                         val_loss=val_loss, val_acc=val_acc, seconds=time.monotonic() - epoch_started,
                         lr=self.optimizer.param_groups[0]["lr"], activation=self.model.config.activation,
                         best_val_acc=p.best_val_acc, best_epoch=p.best_epoch, improved=improved)
        self.history.append(done)
        self.bus.emit(done)
        p.shuffle_state = None
        self._last_metrics = {"train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                              "val_acc": val_acc}
        self._check_log()
        mark = self._phase("events", mark)
        try:
            self._save(runs.LAST, "last", best_too=improved)  # one write; best.pt: the same bytes
        except _Diverged:
            return "diverged", self._diverged_message(epoch)
        self._phase("checkpoints", mark)
        return None

    def _phase(self, name: str, since: float) -> float:
        now = self.phase_clock()
        self.phase_seconds[name] += now - since
        return now

    def _test_best(self, trained_stats: bool = False) -> tuple[float | None, float | None]:
        best = runs.checkpoint_path(self.run_dir, runs.BEST)
        if not best.exists():
            return None, None
        ck = read_checkpoint(best, map_location="cpu")
        model = MLP(model_config_of(ck, best)).to(self.device)
        load_weights(model, ck, best)
        if trained_stats:  # the probes' "trained" table on the best weights (epoch metrics.TRAINED_EPOCH)
            self._emit(self._probes.final_stats(model, self.data))
        return evaluate(model, self.data.test_x, self.data.test_y)

    def _finish(self, status: str, message: str, started: float) -> RunResult:
        test_loss = test_acc = None
        if status != "interrupted":
            try:
                test_loss, test_acc = self._test_best(trained_stats=status in ("finished", "early-stopped"))
            except UserError as exc:
                message = f"{message}; test skipped: {exc}".lstrip("; ")
        p = self.progress
        outcome = dict(status=status, epochs_run=p.epoch, best_epoch=p.best_epoch, best_val_acc=max(p.best_val_acc, 0.0),
                       test_acc=test_acc, test_loss=test_loss, message=message)
        self.bus.emit(RunFinished(run_id=self.run_id, seconds=time.monotonic() - started, **outcome))
        self.close()
        return RunResult(run_id=self.run_id, run_dir=self.run_dir, history=list(self.history), **outcome)

    def _fail(self, exc: BaseException, started: float, user: bool = False) -> RunResult:
        user = user or isinstance(exc, StorageError)  # a full disk is no bug: no type name, no traceback
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not user:
            error = f"{type(exc).__name__}: {error}"
        event = RunFailed(run_id=self.run_id, error=error, error_type=type(exc).__name__,
                          details="" if user else traceback.format_exc())
        try:
            self.bus.emit(event)
        except Exception:  # a consumer that broke (e.g. a closed terminal) must not turn a failure into a crash
            pass
        self.close()
        p = getattr(self, "progress", _Progress())
        return RunResult(run_id=self.run_id, run_dir=self.run_dir or Path("."), history=list(self.history),
                         status="failed", epochs_run=p.epoch, best_epoch=p.best_epoch,
                         best_val_acc=max(p.best_val_acc, 0.0), test_acc=None, test_loss=None, message=error,
                         exception=exc)

    def close(self) -> None:
        """Close the event log and release the run folder's lock (the run folder stays)."""
        if self._log is not None:
            self._log.close()
        if getattr(self, "_lock", None) is not None:
            self._lock.release()


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor of a (host) state dict is finite."""
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def _check_fits_data(model_config: MLPConfig, data: DataSplits, path: Path) -> None:
    """A checkpoint from another dataset's run cannot continue on this one."""
    if (model_config.input_size, model_config.num_classes) != (data.input_size, data.num_classes):
        raise CheckpointError(
            f"{path}: the checkpoint's model takes {model_config.input_size} inputs and {model_config.num_classes} "
            f"classes, but the run's dataset {data.name} has {data.input_size} inputs and {data.num_classes} classes")
