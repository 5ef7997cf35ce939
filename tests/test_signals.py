"""SIGINT, SIGTERM and SIGHUP stop a run between batches, write a checkpoint, record the run
as interrupted and exit 128+N; `actlab run --resume` then ends with exactly the metrics of
the run left alone (CPU, probes on).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch
from robust_harness import ACTLAB, child_env, final_metrics, forker, only_run, tiny_config, wait_for  # noqa: F401

from actlab.engine import runs
from actlab.engine.checkpoints import load_checkpoint
from actlab.engine.events import CheckpointSaved, RunFinished, read_events

STEPS = 1079 // 32  # digits: 1079 training images, batch 32
STOP_AT = STEPS + 9  # epoch 2, batch 9


def _config(tmp_path, name: str):
    return tiny_config(tmp_path / f"{name}.toml", tmp_path / name, epochs=4, dropout=0.1, probes=True)


@pytest.fixture(scope="module")
def reference(forker, tmp_path_factory):  # noqa: F811
    """The same run, never interrupted."""
    tmp = tmp_path_factory.mktemp("reference")
    code = forker.run(["run", "--headless", "--config", _config(tmp, "ref")], tmp, tmp / "ref.log")
    assert code == 0, (tmp / "ref.log").read_text()
    metrics = final_metrics(only_run(tmp / "ref"))
    assert metrics[2] == "finished" and len(metrics[0]) == 4
    return metrics


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_mid_epoch_checkpoints_and_resume_is_bit_identical(sig, forker, reference, tmp_path):  # noqa: F811
    config = _config(tmp_path, "runs")
    ready, go, log = tmp_path / "ready", tmp_path / "go", tmp_path / "run.log"
    pid = forker.start(["run", "--headless", "--config", config], tmp_path, log, pause_at_step=STOP_AT,
                       ready=ready, go=go)
    wait_for(ready)  # the child sits between batch 9 and batch 10 of epoch 2
    os.kill(pid, sig)
    go.touch()
    assert forker.wait(pid, timeout=60) == 128 + sig, log.read_text()

    run_dir = only_run(tmp_path / "runs")
    model, ck = load_checkpoint(runs.checkpoint_path(run_dir))
    assert (ck["epoch"], ck["progress"]["batch"], ck["step"]) == (1, 9, STOP_AT)  # stopped at the next batch
    assert all(torch.isfinite(p).all() for p in model.parameters())
    events = read_events(run_dir)
    assert [e.reason for e in events if isinstance(e, CheckpointSaved)][-1] == "interrupt"
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert [e.status for e in finished] == ["interrupted"]
    assert final_metrics(run_dir)[2] == "interrupted"
    assert "interrupted" in log.read_text()

    resumed_log = tmp_path / "resume.log"
    assert forker.run(["run", "--headless", "--resume", run_dir], tmp_path, resumed_log) == 0, resumed_log.read_text()
    assert "resumed after epoch 1" in resumed_log.read_text()
    assert final_metrics(run_dir) == reference  # every epoch's losses and accuracies, and the test accuracy


def test_a_second_signal_exits_at_once_and_leaves_the_checkpoints_whole(forker, tmp_path):  # noqa: F811
    config = _config(tmp_path, "runs")
    ready, go, log = tmp_path / "ready", tmp_path / "go", tmp_path / "run.log"
    pid = forker.start(["run", "--headless", "--config", config], tmp_path, log, pause_at_step=STOP_AT,
                       ready=ready, go=go)
    wait_for(ready)
    os.kill(pid, signal.SIGINT)
    time.sleep(0.3)  # two signals sent back to back would merge into one
    os.kill(pid, signal.SIGINT)
    go.touch()
    assert forker.wait(pid, timeout=60) == 128 + signal.SIGINT
    run_dir = only_run(tmp_path / "runs")
    _, ck = load_checkpoint(runs.checkpoint_path(run_dir))
    assert ck["epoch"] == 1 and ck["progress"]["batch"] == 0  # the epoch-end checkpoint, intact
    assert [p.name for p in (run_dir / "checkpoints").iterdir() if ".tmp-" in p.name] == []


def test_sighup_with_the_terminal_gone_through_the_installed_command(tmp_path):
    """The SSH session closes: stdout is gone (here: a pipe nobody reads) and SIGHUP arrives.

    The run still writes its checkpoint, records itself as interrupted and exits 129.
    """
    config = tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=500, probes=False)
    proc = subprocess.Popen([str(ACTLAB), "run", "--headless", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env(), cwd=tmp_path)
    try:
        for line in proc.stdout:
            if line.split()[:2] == [b"epoch", b"1/500"]:
                break
        proc.stdout.close()  # the reader is gone: the next print fails with EPIPE
        proc.send_signal(signal.SIGHUP)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read().decode(errors="replace")
    assert code == 128 + signal.SIGHUP, stderr
    assert "Traceback" not in stderr
    run_dir = only_run(tmp_path / "runs")
    _, ck = load_checkpoint(runs.checkpoint_path(run_dir))
    assert ck["epoch"] >= 1
    events = read_events(run_dir)
    assert [e.status for e in events if isinstance(e, RunFinished)] == ["interrupted"]
    assert [e.reason for e in events if isinstance(e, CheckpointSaved)][-1] == "interrupt"
