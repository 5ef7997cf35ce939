"""What executors take and report: trial tasks, outcomes, and the listener protocol."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Protocol, Sequence


@dataclass(frozen=True)
class TrialTask:
    """One trial to run: its full config, and the run folder it owns (on the worker's machine)."""

    trial_id: str
    config: Mapping[str, Any]  # the keys set (study.settings_of), or a whole LabConfig.to_dict()
    run_dir: str  # the local executor's path; a Ray worker maps it to a folder on its own node
    init_only: bool = False  # stop at initialisation: the probes' init statistics, no training step
    threads: int = 1  # torch intra-op threads for this trial


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended. status: finished, early-stopped, diverged, failed, or interrupted (resumable)."""

    trial_id: str
    status: str
    best_val_acc: float | None = None
    test_acc: float | None = None
    epochs: int = 0
    seconds: float = 0.0
    message: str = ""
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrialProgress:
    """A running trial finished an epoch (or started: epoch = the epoch it resumes after)."""

    trial_id: str
    epoch: int
    max_epochs: int
    val_acc: float | None = None
    worker: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


class StudyListener(Protocol):
    """Called by the executor in the driver's thread, in the order things happen."""

    def trial_started(self, task: TrialTask, worker: str) -> None:
        """A worker took the trial (fresh or resumed)."""

    def trial_progress(self, progress: TrialProgress) -> None:
        """The trial started or finished an epoch."""

    def trial_finished(self, outcome: TrialOutcome) -> None:
        """The trial ended (any status, interrupted included)."""


@dataclass
class StopFlag:
    """The stop request both executors keep: `request_stop` only sets a flag (safe from a
    signal handler), and `run` reads `stop_requested` between its steps."""

    stop_requested: bool = field(default=False, init=False)

    def request_stop(self) -> None:
        self.stop_requested = True


class Executor(Protocol):
    """Runs tasks to their end or until `request_stop`; never runs one trial twice at once."""

    def run(self, tasks: Sequence[TrialTask], listener: StudyListener) -> None:
        """Blocks until every task has an outcome (reported to the listener) or a stop was requested."""

    def request_stop(self) -> None:
        """Safe from a signal handler: every running trial stops after its batch with a checkpoint."""
