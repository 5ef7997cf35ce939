"""Helpers of the robustness tests: the fork server client, a tiny lab.toml, run metrics.

Import the `forker` fixture into a test module to use it (`from robust_harness import forker`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ACTLAB = Path(sys.executable).with_name("actlab")

TINY = """\
[run]
runs_dir = "{runs_dir}"
device = "cpu"
seed = {seed}

[data]
dataset = "{dataset}"

[model]
hidden_sizes = {hidden}
dropout = {dropout}

[train]
epochs = {epochs}
batch_size = {batch_size}
lr = {lr}
patience = {patience}

[probes]
enabled = {probes}
"""


def tiny_config(path: Path, runs_dir: Path, *, seed: int = 42, dataset: str = "digits", hidden: str = "[16]",
                dropout: float = 0.1, epochs: int = 6, batch_size: int = 32, lr: float = 0.05, patience: int = 0,
                probes: bool = False) -> Path:
    """A lab.toml for a run of about a second: digits, one small hidden layer."""
    path.write_text(TINY.format(runs_dir=runs_dir, seed=seed, dataset=dataset, hidden=hidden, dropout=dropout,
                                epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                                probes=str(probes).lower()))
    return path


def child_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("ACTLAB_DATA", "ACTLAB_CACHE"):
        env.pop(name, None)
    return env


class Forker:
    """Client of tests/forkrunner.py: start `actlab` children fast, wait for them."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "forkrunner.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=child_env(), cwd=str(REPO))
        assert self._read() == {"ready": True}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit code {self.proc.poll()})")
        return json.loads(line)

    def _ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def start(self, argv: list[str], cwd: Path, log: Path, pause_at_step: int | None = None,
              ready: Path | None = None, go: Path | None = None) -> int:
        return self._ask(op="start", argv=[str(a) for a in argv], cwd=str(cwd), log=str(log),
                         pause_at_step=pause_at_step, ready=str(ready) if ready else None,
                         go=str(go) if go else None)["pid"]

    def wait(self, pid: int, timeout: float = 120.0) -> int | None:
        """The child's exit code (-N: killed by signal N), or None while it still runs."""
        return self._ask(op="wait", pid=pid, timeout=timeout)["code"]

    def run(self, argv: list[str], cwd: Path, log: Path, timeout: float = 120.0) -> int:
        pid = self.start(argv, cwd, log)
        code = self.wait(pid, timeout)
        if code is None:
            os.kill(pid, 9)
            self.wait(pid)
            raise AssertionError(f"actlab {' '.join(map(str, argv))} did not finish in {timeout}s:\n"
                                 + log.read_text(errors="replace")[-2000:])
        return code

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()


@pytest.fixture
def one_thread():
    """Tiny models in-process on one thread: on a shared 2-core box, two OpenMP threads per
    pytest worker spin against each other and a 1-second run takes a minute."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def forker():
    f = Forker()
    yield f
    f.close()


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.005)


def only_run(runs_dir: Path) -> Path:
    """The one run folder (with a config.json) under runs_dir."""
    found = [p for p in runs_dir.iterdir() if (p / "config.json").is_file()] if runs_dir.is_dir() else []
    assert len(found) == 1, found
    return found[0]


def final_metrics(run_dir: Path) -> tuple[list[tuple], float | None, str]:
    """(per-epoch train/val loss and accuracy, test accuracy, status) from the run's events.jsonl."""
    from actlab.engine.runs import read_run

    table = read_run(run_dir)
    epochs = [(e["epoch"], e["train_loss"], e["train_acc"], e["val_loss"], e["val_acc"]) for e in table.epochs]
    return epochs, table.test_acc, table.status
