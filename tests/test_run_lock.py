"""The run folder lock: while a process trains a run folder it holds an flock on run.lock
(pid, host and start time written in it); a second trainer gets one line naming the holder
and exit code 2, and changes nothing; the lock dies with its process (kill -9 leaves nothing
stale); `lock_holder` tells readers whether a live process trains the folder.
"""

from __future__ import annotations

import hashlib
import os
import signal
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from robust_harness import child_env, one_thread, tiny_config  # noqa: F401

from actlab.engine import runs
from actlab.engine.errors import RunLockedError
from actlab.engine.events import EpochDone
from actlab.engine.runs import LOCK_FILE, lock_holder, lock_run_dir
from actlab.tui import cli

pytestmark = pytest.mark.usefixtures("one_thread")

HOLD = ("import sys, time\nfrom actlab.engine.runs import lock_run_dir\nlock = lock_run_dir(sys.argv[1])\n"
        "print('locked', flush=True)\ntime.sleep(600)\n")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lock")
    config = tiny_config(tmp / "lab.toml", tmp / "runs", epochs=1, hidden="[8]")
    assert cli.main(["run", "--headless", "--config", str(config)]) == 0
    return next((tmp / "runs").iterdir())


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): ("" if p.name == LOCK_FILE else hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _hold(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env=child_env())
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_no_holder_without_a_lock(tmp_path):
    assert lock_holder(tmp_path) is None and lock_holder(tmp_path / "missing") is None
    (tmp_path / LOCK_FILE).write_text('{"pid": 1, "host": "old"}\n')  # a file left by a dead trainer
    assert lock_holder(tmp_path) is None


def test_one_holder_at_a_time_in_one_process(tmp_path):
    lock = lock_run_dir(tmp_path)
    holder = lock_holder(tmp_path)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["started"]
    with pytest.raises(RunLockedError, match=rf"another actlab is training this run folder \(process {os.getpid()} "):
        lock_run_dir(tmp_path)
    lock.release()
    assert lock_holder(tmp_path) is None
    lock_run_dir(tmp_path).release()


def test_a_training_run_holds_its_folder_and_releases_it(tmp_path):
    config = tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=2, hidden="[8]")
    seen = []

    def consumer(event):
        if isinstance(event, EpochDone):
            seen.append(lock_holder(next((tmp_path / "runs").iterdir())))

    from actlab.engine import lab
    from actlab.engine.config import load_config

    result = lab.open_run(load_config(config), consumers=[consumer]).run()
    assert result.status == "finished" and len(seen) == 2
    assert all(h is not None and h["pid"] == os.getpid() for h in seen)
    assert lock_holder(result.run_dir) is None  # released at the end


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_second_trainer_gets_one_line_naming_the_holder(attempts, finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    holder = _hold(run_dir)
    try:
        before = _digest(run_dir)
        for _ in range(attempts):
            code = cli.main(["run", "--headless", "--resume", str(run_dir)])
            err = capsys.readouterr().err
            assert code == 2 and err.count("\n") == 1, err
            assert err.startswith(f"actlab: {run_dir}: another actlab is training this run folder "
                                  f"(process {holder.pid} on {socket.gethostname()} since "), err
        assert _digest(run_dir) == before  # no events, no checkpoint written
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_leaves_no_stale_lock(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    config = (run_dir / "config.json").read_text().replace('"epochs": 1', '"epochs": 2')
    (run_dir / "config.json").write_text(config)
    holder = _hold(run_dir)
    assert lock_holder(run_dir)["pid"] == holder.pid
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert lock_holder(run_dir) is None  # the lock file stays; the lock died with its process
    assert cli.main(["run", "--headless", "--resume", str(run_dir)]) == 0
    assert runs.read_run(run_dir).epochs[-1]["epoch"] == 2
