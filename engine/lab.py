"""The front door of the engine: everything that opens, resumes or reads a run comes here.

The CLI, the app's live and watch feeds, the benchmarks and the study workers all build
runs through these functions, so a run is assembled one way only: the config's dataset
loaded with the config's recipe, the probes the config asks for, a fresh or resumed run
folder, the caller's consumers and control.

    from actlab.engine import lab
    run = lab.open_run(config, consumers=[print])
    result = run.run()
    table = lab.read_run(result.run_dir)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from . import runs
from .config import LabConfig
from .control import RunControl
from .events import Consumer
from .runs import RunTable

if TYPE_CHECKING:  # PyTorch loads only when a run is opened: readers (the app's past runs) stay light
    import torch

    from .activations import ActivationInfo
    from .data import DataSplits
    from .probes.base import Probes
    from .training import TrainingRun

__all__ = ["activation_catalogue", "build_probes", "check_more_epochs", "load_data", "open_run", "read_run", "read_run_config",
           "resume_run", "RunControl", "RunTable"]


def load_data(config: LabConfig, device: "torch.device | str | None" = None) -> "DataSplits":
    """The config's dataset as device tensors; a bad data folder names the key or variable behind it."""
    from .data import load_config_data

    return load_config_data(config, device)


def build_probes(config: LabConfig) -> "Probes":
    """A fresh probe set as `config.probes` asks (a do-nothing one when probes are disabled)."""
    from .probes import build_probes as probes_for

    return probes_for(config.probes)


def open_run(config: LabConfig, *, consumers: Iterable[Consumer] = (), control: RunControl | None = None,
             data: "DataSplits | None" = None, probes: "Probes | None" = None,
             run_dir: str | os.PathLike[str] | None = None) -> "TrainingRun":
    """A fresh run of `config`, ready to `.run()`; probes follow the config unless given.

    The run folder is a new `<date>-<activation>-s<seed>` under `run.runs_dir`, or `run_dir`
    when given (a study's trial folder), which must not hold a run yet.
    """
    from .training import TrainingRun

    return TrainingRun(config, consumers=consumers, control=control, data=data,
                       probes=probes if probes is not None else build_probes(config), run_dir=run_dir)


def read_run_config(run_dir: str | os.PathLike[str]) -> LabConfig:
    """The config a run folder trained with (its config.json, checked like lab.toml)."""
    return runs.read_config(Path(run_dir))


def resume_run(run_dir: str | os.PathLike[str], *, consumers: Iterable[Consumer] = (),
               control: RunControl | None = None, data: "DataSplits | None" = None,
               probes: "Probes | None" = None, epochs: int | None = None) -> "TrainingRun":
    """The run in `run_dir`, continued from its last checkpoint with its own config.

    With `epochs`, the run trains to that many epochs in all: a finished (or early-stopped)
    run is extended, its patience counted afresh; the new total goes into its config.json so
    a later resume continues to it. Fewer epochs than already trained is a UserError.
    """
    config = read_run_config(run_dir)
    extend = epochs is not None
    if extend:
        from .config import apply_overrides

        config = apply_overrides(config, {"train.epochs": epochs}, source={"train.epochs": "--epochs"})
        check_more_epochs(run_dir, epochs)
        runs.write_config(Path(run_dir), config)
    from .training import TrainingRun

    return TrainingRun(config, consumers=consumers, control=control, data=data, resume_dir=run_dir,
                       probes=probes if probes is not None else build_probes(config), fresh_patience=extend)


def check_more_epochs(run_dir: str | os.PathLike[str], epochs: int) -> int:
    """The epochs `run_dir` has trained; a UserError when `epochs` (the new total) is not more."""
    from .errors import UserError

    done = max((row["epoch"] for row in runs.read_run(run_dir).epochs), default=0)
    if epochs <= done:
        raise UserError(f"--epochs {epochs}: {run_dir} has already trained {done} epochs; "
                        f"give a larger total (e.g. --epochs {done + 5})")
    return done


def read_run(run_dir: str | os.PathLike[str]) -> RunTable:
    """A run folder tabulated from its event log (read-only; a torn last line is tolerated)."""
    return runs.read_run(run_dir)


def activation_catalogue() -> "list[ActivationInfo]":
    """Every registered activation, the lab's ten first (the app's key order)."""
    from .activations import activation_info, activation_names

    return [activation_info(name) for name in activation_names()]
