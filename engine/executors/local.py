"""The local executor: a pool of worker processes on this machine.

Each worker is a spawned process (no fork of the driver's threads or of PyTorch's pools)
with its own pair of pipes: tasks and stop requests in, progress and outcomes out. A worker
killed with -9 breaks only its own pipes; the driver sees its sentinel, puts the trial back
at the front of the queue (it resumes from its last checkpoint) and starts a new worker.
When the driver dies, each worker sees its task pipe close, stops its trial with a
checkpoint and exits. Workers hold the study lock shared, so a new driver waits for them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Sequence

from .base import StopFlag, StudyListener, TrialOutcome, TrialProgress, TrialTask

#: a trial whose worker died this many times is recorded as failed (not retried forever)
MAX_WORKER_DEATHS = 2
#: workers that died before they could take a trial, with none ever ready: the study cannot run here
MAX_START_FAILURES = 2


class WorkerStartError(RuntimeError):
    """The worker processes die before they can take a trial (a broken install, no memory)."""
#: seconds the driver waits for workers to checkpoint and exit after a stop
STOP_GRACE = 60.0


def default_workers(device: str = "cpu", per_device: int = 1) -> tuple[int, int]:
    """(workers, threads per trial) for this machine.

    CPU: one single-threaded worker per core. bench/bench_study.py measures this against one
    trial at a time with every core's thread: the lab's MLPs are too small for intra-op
    threads to scale (see README, Studies), so whole trials in parallel win.
    CUDA: `per_device` workers per visible GPU, one thread each.
    """
    if device.startswith("cuda"):
        import torch

        return max(1, torch.cuda.device_count()) * max(1, per_device), 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores), 1


def worker_main(name: str, tasks: Connection, reports: Connection, threads: int, study_dir: str,
                gpu: int | None) -> None:
    """A worker process: run the tasks the driver sends, one at a time, until told to quit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver, which stops us cleanly
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    from ..study import StudyLock
    from . import trial as trial_module

    lock = StudyLock(Path(study_dir)) if study_dir else None
    if lock is not None:
        lock.acquire_worker()
    import torch

    torch.set_num_threads(max(1, threads))
    from .. import lab

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    current: dict[str, Any] = {"control": None, "stopping": False}
    guard = threading.Lock()

    def stop_current() -> None:
        with guard:
            current["stopping"] = True
            if current["control"] is not None:
                current["control"].stop("interrupted")

    def listen() -> None:
        while True:
            try:
                message = tasks.recv()
            except (EOFError, OSError):  # the driver is gone: checkpoint and leave
                stop_current()
                inbox.put(None)
                return
            if message[0] == "run":
                inbox.put(message[1])
            elif message[0] == "stop":
                stop_current()
            elif message[0] == "quit":
                inbox.put(None)
                return

    signal.signal(signal.SIGTERM, lambda signum, frame: stop_current())
    threading.Thread(target=listen, name="study-worker-listen", daemon=True).start()
    cache = trial_module.DataCache()

    def send(message: tuple) -> None:
        try:
            reports.send(message)
        except (OSError, ValueError):  # the driver is gone; the trial still checkpoints
            stop_current()

    send(("ready", name))

    while True:
        task = inbox.get()
        if task is None:
            break
        control = lab.RunControl()
        with guard:
            current["control"] = control
            if current["stopping"]:
                control.stop("interrupted")
        send(("started", task.trial_id))
        reporter = _Reporter(task.trial_id, name, send)
        outcome = trial_module.run_trial(task, consumers=[reporter], control=control, data_cache=cache, worker=name)
        with guard:
            current["control"] = None
        send(("done", outcome))
        if current["stopping"]:
            break
    if lock is not None:
        lock.release()


class _Reporter:
    """Run events -> short progress messages to the driver (per epoch, never per batch)."""

    def __init__(self, trial_id: str, worker: str, send) -> None:
        self.trial_id, self.worker, self.send = trial_id, worker, send
        self.max_epochs = 0

    def __call__(self, event) -> None:
        from ..events import EpochDone, RunStarted

        if isinstance(event, RunStarted):
            self.max_epochs = event.max_epochs
            self.send(("progress", TrialProgress(self.trial_id, event.start_epoch, event.max_epochs,
                                                 worker=self.worker)))
        elif isinstance(event, EpochDone):
            self.send(("progress", TrialProgress(self.trial_id, event.epoch, self.max_epochs, event.val_acc,
                                                 worker=self.worker)))


@dataclass
class _Worker:
    name: str
    process: Any
    tasks: Connection
    reports: Connection
    task: TrialTask | None = None
    gone: bool = False
    ready: bool = False


@dataclass
class LocalExecutor(StopFlag):
    """`workers` processes with `threads` torch threads each; `device` cuda spreads them over GPUs."""

    workers: int = 0
    threads: int = 0
    device: str = "cpu"
    per_device: int = 1
    study_dir: str = ""  # the study folder whose lock workers share ("" = no lock)
    start_method: str = "spawn"

    def run(self, tasks: Sequence[TrialTask], listener: StudyListener) -> None:
        if not tasks:
            return
        auto_workers, auto_threads = default_workers(self.device, self.per_device)
        n_workers = min(self.workers or auto_workers, max(1, len(tasks)))
        threads = self.threads or auto_threads
        gpus = _gpu_count() if self.device.startswith("cuda") else 0
        ctx = mp.get_context(self.start_method)
        pending: deque[TrialTask] = deque(t if t.threads == threads else _with_threads(t, threads) for t in tasks)
        deaths: dict[str, int] = {}
        pool: list[_Worker] = []
        counter = [0]

        def start() -> _Worker:
            index = counter[0]
            counter[0] += 1
            task_r, task_w = ctx.Pipe(duplex=False)
            rep_r, rep_w = ctx.Pipe(duplex=False)
            gpu = (index % gpus) if gpus else None
            name = f"w{index}"
            process = ctx.Process(target=worker_main, name=f"actlab-study-{name}",
                                  args=(name, task_r, rep_w, threads, self.study_dir, gpu), daemon=True)
            process.start()
            task_r.close()
            rep_w.close()
            worker = _Worker(name, process, task_w, rep_r)
            pool.append(worker)
            return worker

        for _ in range(n_workers):
            start()
        stop_sent = False
        start_failures = 0
        try:
            while True:
                if self.stop_requested and not stop_sent:
                    stop_sent = True
                    pending.clear()
                    for w in pool:
                        if w.task is not None and not w.gone:
                            _send(w, ("stop",))
                if not self.stop_requested:
                    for w in pool:
                        if w.task is None and not w.gone and pending:
                            w.task = pending.popleft()
                            if not _send(w, ("run", w.task)):
                                pending.appendleft(w.task)
                                w.task = None
                busy = [w for w in pool if w.task is not None and not w.gone]
                if not busy and (not pending or self.stop_requested):
                    break
                live = [w for w in pool if not w.gone]
                ready = wait([w.reports for w in live] + [w.process.sentinel for w in live], timeout=0.5)
                for w in live:
                    if w.reports in ready:
                        self._drain(w, listener)
                    if w.process.sentinel in ready or not w.process.is_alive():
                        self._drain(w, listener)
                        w.gone = True
                        if not w.ready and not any(x.ready for x in pool):
                            start_failures += 1
                            if start_failures >= MAX_START_FAILURES:
                                if w.task is not None:
                                    pending.appendleft(w.task)
                                    w.task = None
                                raise WorkerStartError(f"study workers exit before taking a trial (exit code "
                                                       f"{w.process.exitcode}); the lines above say why")
                        if w.task is not None:  # killed mid-trial: resume it on a fresh worker
                            task, w.task = w.task, None
                            deaths[task.trial_id] = deaths.get(task.trial_id, 0) + 1
                            code = w.process.exitcode
                            if deaths[task.trial_id] >= MAX_WORKER_DEATHS:
                                listener.trial_finished(TrialOutcome(
                                    task.trial_id, "failed", message=f"its worker died {deaths[task.trial_id]} "
                                    f"times (last exit code {code})", worker=w.name))
                            else:
                                listener.trial_finished(TrialOutcome(
                                    task.trial_id, "interrupted", message=f"worker died (exit code {code}); resuming",
                                    worker=w.name))
                                if not self.stop_requested:
                                    pending.appendleft(task)
                        if pending and not self.stop_requested and sum(not x.gone for x in pool) < n_workers:
                            start()
        finally:
            self._shutdown(pool, listener)

    def _drain(self, w: _Worker, listener: StudyListener) -> None:
        while True:
            try:
                if not w.reports.poll():
                    return
                kind, payload = w.reports.recv()
            except (EOFError, OSError):
                return
            if kind == "ready":
                w.ready = True
            elif kind == "started" and w.task is not None:
                listener.trial_started(w.task, w.name)
            elif kind == "progress":
                listener.trial_progress(payload)
            elif kind == "done":
                if w.task is not None and w.task.trial_id == payload.trial_id:
                    w.task = None
                listener.trial_finished(payload)

    def _shutdown(self, pool: list[_Worker], listener: StudyListener) -> None:
        """Ask every worker to stop (with a checkpoint) and quit; wait for them; report the last outcomes."""
        for w in pool:
            if not w.gone:
                if w.task is not None:
                    _send(w, ("stop",))
                _send(w, ("quit",))
        deadline = time.monotonic() + STOP_GRACE
        for w in pool:
            while not w.gone and w.process.is_alive() and time.monotonic() < deadline:
                w.process.join(timeout=0.2)
                self._drain(w, listener)
            self._drain(w, listener)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=5)
            for conn in (w.tasks, w.reports):
                conn.close()


def _send(w: _Worker, message: tuple) -> bool:
    try:
        w.tasks.send(message)
        return True
    except (OSError, ValueError):
        return False


def _with_threads(task: TrialTask, threads: int) -> TrialTask:
    from dataclasses import replace

    return replace(task, threads=threads)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()
