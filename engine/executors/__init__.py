"""Executors run a study's trials: `local` (a pool of worker processes) or `ray` (a Ray cluster).

Both take `TrialTask`s and report to a `StudyListener`; every trial runs through
`trial.run_trial`, which opens or resumes an ordinary run folder through the engine's front
door (`engine/lab.py`). Ray is imported only by `ray_cluster`, only when asked for.
"""

from .base import Executor, StudyListener, TrialOutcome, TrialTask

__all__ = ["Executor", "StudyListener", "TrialOutcome", "TrialTask", "make_executor"]


def make_executor(kind: str, **options):
    """`local` or `ray`; options are the executor's own (workers, threads, address, ...)."""
    if kind == "local":
        from .local import LocalExecutor

        return LocalExecutor(**options)
    if kind == "ray":
        from .ray_cluster import RayExecutor

        return RayExecutor(**options)
    raise ValueError(f"unknown executor {kind!r}")
