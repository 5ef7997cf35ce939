"""The Ray executor: each trial a Ray task with its CPU/GPU share, on any node of a cluster.

No shared filesystem is assumed. A task writes its run folder on its own node (under
`$ACTLAB_RAY_ROOT` or the temp folder, per node and study) and streams to the driver, through
one small actor, every logged event line as it happens and each checkpoint as it is written;
the driver appends the lines to its copy of the run folder (so the study's progress, `actlab
watch` and the app stay live) and replaces the checkpoints atomically. When the task ends it
returns the folder's files (config, events, summary, best and last checkpoints), which the
driver writes over its copy: the driver ends up with every trial's complete run folder. A
trial that resumes ships the driver's copy to whichever node takes it.

Ray is imported here only, and this module only when `--executor ray` is asked for.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from .. import runs
from ..events import EVENTS_FILE, CheckpointSaved, EpochDone, RunStarted, event_to_json
from .base import StopFlag, StudyListener, TrialOutcome, TrialProgress, TrialTask
from .local import MAX_WORKER_DEATHS

#: the files of a run folder that travel between nodes and the driver
FOLDER_FILES = (runs.CONFIG_FILE, EVENTS_FILE, "summary.json", f"{runs.CHECKPOINT_DIR}/{runs.BEST}",
                f"{runs.CHECKPOINT_DIR}/{runs.LAST}")
#: seconds between a running task's looks at the driver's stop flag
STOP_POLL = 1.0


class TrialChannel:
    """The actor between tasks and the driver: a mailbox of messages and the stop flag."""

    def __init__(self) -> None:
        self.messages: list[tuple] = []
        self.stop = False

    def push(self, message: tuple) -> None:
        self.messages.append(message)

    def drain(self) -> list[tuple]:
        out, self.messages = self.messages, []
        return out

    def request_stop(self) -> None:
        self.stop = True

    def stopping(self) -> bool:
        return self.stop


class EventStreamer:
    """A run consumer on the worker: logged event lines and fresh checkpoints go to the channel."""

    def __init__(self, trial_id: str, run_dir: Path, channel: Any) -> None:
        self.trial_id, self.run_dir, self.channel = trial_id, run_dir, channel
        self.lines: list[str] = []
        self.max_epochs = 0

    def __call__(self, event) -> None:
        if not event.logged_always:
            return  # batch progress: the log throttles it, the driver does not need it
        self.lines.append(event_to_json(event))
        if isinstance(event, RunStarted):
            self.max_epochs = event.max_epochs
            self._send_file(self.run_dir / runs.CONFIG_FILE)
        if isinstance(event, (RunStarted, EpochDone, CheckpointSaved)):
            self.flush()
        if isinstance(event, EpochDone):
            self.channel.push.remote(("progress", TrialProgress(self.trial_id, event.epoch, self.max_epochs,
                                                                event.val_acc)))
        if isinstance(event, CheckpointSaved):
            self._send_file(Path(event.path))

    def _send_file(self, path: Path) -> None:
        try:
            rel = path.relative_to(self.run_dir).as_posix()
            self.channel.push.remote(("file", self.trial_id, rel, path.read_bytes()))
        except (ValueError, OSError):
            pass  # outside the folder, or gone already: the files shipped at the end carry it

    def flush(self) -> None:
        if self.lines:
            self.channel.push.remote(("events", self.trial_id, self.lines))
            self.lines = []


_DATA_CACHE = None  # one per Ray worker process: the worker loads each split once


def run_remote_trial(task: TrialTask, study_id: str, files: dict[str, bytes], channel: Any) -> tuple[dict, dict]:
    """The body of a trial's Ray task (runs on any node)."""
    import ray
    import torch

    from . import trial as trial_module
    from .. import lab

    global _DATA_CACHE
    node = ray.get_runtime_context().get_node_id()
    worker = f"node {node[:8]} pid {os.getpid()}"
    if ray.get(channel.stopping.remote()):
        return TrialOutcome(task.trial_id, "interrupted", message="stopped before it started").to_dict(), {}
    root = Path(os.environ.get("ACTLAB_RAY_ROOT") or tempfile.gettempdir()) / f"actlab-ray-{node[:12]}" / study_id
    local = root / task.trial_id
    if local.exists():  # the driver's copy is the truth: start from it
        import shutil

        shutil.rmtree(local)
    for rel, data in files.items():
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    torch.set_num_threads(max(1, task.threads))
    if _DATA_CACHE is None:
        _DATA_CACHE = trial_module.DataCache()
    channel.push.remote(("started", task.trial_id, worker))
    control = lab.RunControl()
    finished = threading.Event()

    def watch_stop() -> None:
        while not finished.wait(STOP_POLL):
            try:
                if ray.get(channel.stopping.remote()):
                    control.stop("interrupted")
                    return
            except Exception:  # the driver is gone: checkpoint and end
                control.stop("interrupted")
                return

    threading.Thread(target=watch_stop, name="actlab-ray-stop", daemon=True).start()
    streamer = EventStreamer(task.trial_id, local, channel)
    try:
        outcome = trial_module.run_trial(replace(task, run_dir=str(local)), consumers=[streamer], control=control,
                                         data_cache=_DATA_CACHE, worker=worker)
    finally:
        finished.set()
    streamer.flush()
    ray.get(channel.push.remote(("flushed", task.trial_id)))  # every push before this one has arrived
    shipped = {rel: (local / rel).read_bytes() for rel in FOLDER_FILES if (local / rel).is_file()}
    return outcome.to_dict(), shipped


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def folder_files(run_dir: Path) -> dict[str, bytes]:
    """The driver's copy of a run folder, to ship to the node that resumes it."""
    return {rel: (run_dir / rel).read_bytes() for rel in FOLDER_FILES if (run_dir / rel).is_file()}


@dataclass
class RayExecutor(StopFlag):
    """Trials as Ray tasks: `threads` CPUs each and `gpus_per_trial` GPUs (fractions allowed)."""

    address: str | None = None
    study_dir: str = ""
    threads: int = 1
    gpus_per_trial: float | None = None
    device: str = "auto"
    init_options: dict[str, Any] = field(default_factory=dict)  # e.g. num_cpus for a local cluster

    def run(self, tasks: Sequence[TrialTask], listener: StudyListener) -> None:
        if not tasks:
            return
        import ray

        started_here = False
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in ("ACTLAB_DATA", "ACTLAB_CACHE", "ACTLAB_RAY_ROOT") if k in os.environ}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=True,
                     runtime_env={"env_vars": env} if env else None, **self.init_options)
            started_here = True
        try:
            self._run(ray, tasks, listener)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray, tasks: Sequence[TrialTask], listener: StudyListener) -> None:
        study_dir = Path(self.study_dir)
        gpus = self.gpus_per_trial
        if gpus is None:
            gpus = 1.0 if self.device.startswith("cuda") else 0.0
        channel = ray.remote(num_cpus=0)(TrialChannel).remote()
        remote = ray.remote(run_remote_trial).options(num_cpus=self.threads, num_gpus=gpus, max_retries=0)
        by_id = {t.trial_id: t for t in tasks}
        refs: dict[Any, TrialTask] = {}
        deaths: dict[str, int] = {}
        ended: set[str] = set()

        def submit(task: TrialTask) -> None:
            files = folder_files(Path(task.run_dir))
            refs[remote.remote(task, study_dir.name, files, channel)] = task

        for task in tasks:
            submit(task)
        stop_sent = False
        while refs:
            if self.stop_requested and not stop_sent:
                stop_sent = True
                ray.get(channel.request_stop.remote())
            self._deliver(ray.get(channel.drain.remote()), by_id, ended, listener)
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            if not ready:
                continue
            self._deliver(ray.get(channel.drain.remote()), by_id, ended, listener)
            for ref in ready:
                task = refs.pop(ref)
                try:
                    outcome_dict, files = ray.get(ref)
                except Exception as exc:  # the task's worker or node died
                    deaths[task.trial_id] = deaths.get(task.trial_id, 0) + 1
                    message = f"its Ray worker died ({type(exc).__name__})"
                    if deaths[task.trial_id] >= MAX_WORKER_DEATHS or self.stop_requested:
                        status = "failed" if not self.stop_requested else "interrupted"
                        listener.trial_finished(TrialOutcome(task.trial_id, status, message=message))
                    else:
                        listener.trial_finished(TrialOutcome(task.trial_id, "interrupted",
                                                             message=f"{message}; resuming"))
                        submit(task)
                    continue
                run_dir = Path(task.run_dir)
                for rel, data in files.items():
                    write_atomic(run_dir / rel, data)
                ended.add(task.trial_id)
                listener.trial_finished(TrialOutcome(**outcome_dict))

    def _deliver(self, messages: list[tuple], by_id: dict[str, TrialTask], ended: set[str],
                 listener: StudyListener) -> None:
        for message in messages:
            kind, trial_id = message[0], (message[1] if message[0] != "progress" else message[1].trial_id)
            task = by_id.get(trial_id)
            if task is None:
                continue
            run_dir = Path(task.run_dir)
            if kind == "started":
                listener.trial_started(task, message[2])
            elif kind == "events":
                run_dir.mkdir(parents=True, exist_ok=True)
                with open(run_dir / EVENTS_FILE, "a", encoding="utf-8") as f:
                    f.write("".join(line + "\n" for line in message[2]))
                    f.flush()
                    os.fsync(f.fileno())
            elif kind == "file":
                write_atomic(run_dir / message[2], message[3])
            elif kind == "progress" and trial_id not in ended:
                listener.trial_progress(message[1])
