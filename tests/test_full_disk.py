"""A full disk (simulated: the kernel's ENOSPC from fsync or write) or a run folder that stops
taking writes: one clear line, the previous checkpoint intact and loadable, no temp files,
the run recorded as failed, exit code 1 (the run had started; 2 is for mistakes caught
before anything trains, e.g. an unwritable runs_dir, see the config corpus).
"""

from __future__ import annotations

import errno
import os

import pytest
import torch
from robust_harness import one_thread, tiny_config  # noqa: F401

from actlab.engine import runs
from actlab.engine.checkpoints import load_checkpoint
from actlab.engine.config import load_config
from actlab.engine.events import EpochDone, RunFailed, read_events
from actlab.engine.training import TrainingRun
from actlab.tui import cli

pytestmark = pytest.mark.usefixtures("one_thread")


def _fill_disk_after(monkeypatch, good_writes: int) -> None:
    """fsync of a checkpoint temp file fails with ENOSPC after `good_writes` succeeded."""
    real = os.fsync
    seen = {"n": 0}

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if ".pt.tmp-" in target:
            seen["n"] += 1
            if seen["n"] > good_writes:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _assert_intact(run_dir, epoch: int) -> None:
    model, ck = load_checkpoint(runs.checkpoint_path(run_dir))
    assert ck["epoch"] == epoch and all(torch.isfinite(p).all() for p in model.parameters())
    leftovers = [p.name for p in (run_dir / runs.CHECKPOINT_DIR).iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_cli_disk_full_at_the_second_epoch_checkpoint(tmp_path, monkeypatch, capsys):
    _fill_disk_after(monkeypatch, good_writes=1)  # epoch 1: one write (best.pt links to it); epoch 2 fails
    config = tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=4, dropout=0.0)
    assert cli.main(["run", "--headless", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    run_dir = next((tmp_path / "runs").iterdir())
    last = runs.checkpoint_path(run_dir)
    assert err == (f"actlab: run failed: cannot write checkpoint {last}: no space left on device; "
                   f"the newest checkpoint on disk (epoch 1: {last}) is intact\n")
    _assert_intact(run_dir, epoch=1)
    events = read_events(run_dir)
    assert isinstance(events[-1], RunFailed) and "no space left on device" in events[-1].error
    assert events[-1].details == ""  # not a bug: no traceback in the log either
    # once there is room again, the run goes on from epoch 1
    monkeypatch.undo()
    assert cli.main(["run", "--headless", "--resume", str(run_dir)]) == 0
    assert [e.epoch for e in read_events(run_dir) if isinstance(e, EpochDone)] == [1, 2, 2, 3, 4]


class _FullFile:
    """An events.jsonl whose writes fail like a full disk."""

    closed = False

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass

    def fileno(self):
        return -1

    def close(self):
        self.closed = True


def test_run_log_on_a_full_disk_stops_the_run_cleanly(tmp_path, digits_cpu):
    config = load_config(tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=4))
    run = None

    def fill_the_disk(event):
        if isinstance(event, EpochDone) and event.epoch == 2:  # before the log writes epoch 2
            log = run._log
            log._file.close()
            log._file = _FullFile()

    run = TrainingRun(config, data=digits_cpu, consumers=[fill_the_disk])
    result = run.run()
    assert result.status == "failed" and result.epochs_run == 2
    events_file = result.run_dir / "events.jsonl"
    assert result.message == (f"cannot write the run log {events_file}: no space left on device; the newest "
                              f"checkpoint on disk (epoch 1: {runs.checkpoint_path(result.run_dir)}) is intact")
    _assert_intact(result.run_dir, epoch=1)
    assert [e.epoch for e in read_events(result.run_dir) if isinstance(e, EpochDone)] == [1]


def test_unwritable_run_folder_mid_run(tmp_path, monkeypatch, digits_cpu):
    """Permissions taken away mid-run (as root chmod would not stop us: the refusal is simulated)."""
    config = load_config(tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=3))
    real_open = open
    state = {"locked": False}

    def guarded_open(file, mode="r", *args, **kwargs):
        if state["locked"] and "w" in mode and ".pt.tmp-" in str(file):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    def lock(event):
        if isinstance(event, EpochDone) and event.epoch == 2:
            state["locked"] = True

    monkeypatch.setattr("builtins.open", guarded_open)
    result = TrainingRun(config, data=digits_cpu, consumers=[lock]).run()
    assert result.status == "failed"
    assert "Permission denied; the newest checkpoint on disk (epoch 1:" in result.message
    _assert_intact(result.run_dir, epoch=1)
