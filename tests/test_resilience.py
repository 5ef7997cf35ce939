"""The small pieces behind "nothing lost, nothing crashes": consumers that break, temp files of
killed writers, a resume with no checkpoint yet or stopped before an epoch's first batch,
`--resume` spellings, and signal handlers handed back."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys

import pytest
import torch
from robust_harness import one_thread, tiny_config  # noqa: F401

from actlab.engine import runs
from actlab.engine.checkpoints import remove_stale_temps, save_checkpoint
from actlab.engine.config import load_config
from actlab.engine.events import EpochDone, EventBus, EventLog, RunFinished, RunStarted, read_events
from actlab.engine.runs import read_run
from actlab.engine.control import RunControl
from actlab.engine.lab import resume_run
from actlab.engine.training import TrainingRun
from actlab.tui import cli
from actlab.tui.headless import HeadlessPrinter

pytestmark = pytest.mark.usefixtures("one_thread")


def _epoch(n: int) -> EpochDone:
    return EpochDone(run_id="r", epoch=n, train_loss=1.0, train_acc=0.5, val_loss=0.4, val_acc=0.8, seconds=1.0,
                     lr=0.01, activation="relu", best_val_acc=0.8, best_epoch=n, improved=True)


def _metrics(result):
    return [(e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc) for e in result.history]


def test_a_broken_consumer_does_not_keep_the_event_from_the_others():
    seen = []

    def broken(event):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    bus = EventBus([broken, seen.append])
    with pytest.raises(BrokenPipeError):
        bus.emit(_epoch(1))
    assert [e.epoch for e in seen] == [1]


def test_the_printer_falls_silent_when_its_stream_goes_away():
    class HungUp(io.StringIO):
        def write(self, text):
            raise OSError(errno.EIO, "Input/output error")

    printer = HeadlessPrinter(HungUp(), progress=True)
    printer(_epoch(1))  # no exception
    printer(_epoch(2))
    printer.note("still quiet")
    assert printer.stream is not None and not printer.progress


def test_the_event_log_stops_writing_on_a_full_disk_and_says_why(tmp_path):
    log = EventLog(tmp_path)
    log(_epoch(1))

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    log._file.close()
    log._file = Full()
    log(_epoch(2))  # no exception
    log(_epoch(3))
    log.close()
    assert log.error == f"cannot write the run log {tmp_path / 'events.jsonl'}: no space left on device"
    assert [e.epoch for e in read_events(tmp_path)] == [1]


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".last.pt.tmp-{dead_pid}").write_bytes(b"half a checkpoint")
    (tmp_path / f".best.pt.tmp-{os.getppid()}").write_bytes(b"someone alive is writing this")
    (tmp_path / "last.pt").write_bytes(b"kept")
    removed = remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [f".last.pt.tmp-{dead_pid}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".best.pt.tmp-{os.getppid()}", "last.pt"]


def test_an_interrupted_write_leaves_no_temp_file(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last.pt", {"model_config": {}, "model_state": {}, "epoch": 0, "step": 0})
    assert list(tmp_path.iterdir()) == []


def test_stop_before_the_first_batch_of_an_epoch_resumes_bit_identical(tmp_path, digits_cpu):
    """A signal during the epoch-end work is handled before the next epoch's first batch, after
    that epoch's permutation was drawn: the resume must replay the same permutation."""
    config = load_config(tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=3))
    full = TrainingRun(config, data=digits_cpu).run()
    control = RunControl()

    def stop_after_epoch_1(event):
        if isinstance(event, EpochDone) and event.epoch == 1:
            control.stop("interrupted")

    part = TrainingRun(config, data=digits_cpu, control=control, consumers=[stop_after_epoch_1]).run()
    assert part.status == "interrupted"
    ck = torch.load(runs.checkpoint_path(part.run_dir), weights_only=True)
    assert (ck["epoch"], ck["progress"]["batch"]) == (1, 0) and ck["progress"]["shuffle_state"] is not None
    resumed = resume_run(part.run_dir, data=digits_cpu).run()
    assert _metrics(resumed) == _metrics(full)[1:] and resumed.test_acc == full.test_acc


def test_resume_before_any_checkpoint_starts_the_run_over(tmp_path, digits_cpu, capsys, monkeypatch):
    """Killed before its first epoch ended: config.json but no last.pt. `--resume` trains it
    from the start in the same folder, with the same result as a run never stopped."""
    config = load_config(tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=2))
    full = TrainingRun(config, data=digits_cpu).run()
    run_id, run_dir = runs.create_run_dir(config.replace(**{"data.dataset": "digits"}))
    runs.write_config(run_dir, config)
    with open(run_dir / "events.jsonl", "w") as f:
        f.write('{"type": "RunStarted", "run_id": "x", "run_d')  # torn by the kill
    (run_dir / runs.CHECKPOINT_DIR / ".last.pt.tmp-999999999").write_bytes(b"partial")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--headless", "--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"note: {run_dir} has no checkpoint yet (stopped before its first epoch ended)")
    table = read_run(run_dir)
    assert [(e["epoch"], e["train_loss"], e["val_acc"]) for e in table.epochs] == \
        [(e.epoch, e.train_loss, e.val_acc) for e in full.history]
    assert table.status == "finished" and table.test_acc == full.test_acc
    assert sorted(p.name for p in (run_dir / runs.CHECKPOINT_DIR).iterdir()) == ["best.pt", "last.pt"]
    assert isinstance(read_events(run_dir)[0], RunStarted)


def test_resume_takes_the_run_folder_or_its_checkpoint(tmp_path, monkeypatch, capsys):
    config = tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=2)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--headless", "--config", str(config)]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    assert cli.main(["run", "--headless", "--resume", str(runs.checkpoint_path(run_dir))]) == 0
    finished = [e for e in read_events(run_dir) if isinstance(e, RunFinished)]
    assert [e.status for e in finished] == ["finished", "finished"]
    capsys.readouterr()
    assert cli.main(["run", "--headless", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"actlab: --resume {tmp_path}: not a run folder (no config.json); give runs/<run-id>\n"
    assert cli.main(["run", "--headless", "--resume", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"actlab: --resume {tmp_path / 'nope'}: no such run folder\n"
    assert cli.main(["run", "--headless", "--resume", str(run_dir), "--seed", "5"]) == 2  # --epochs N extends it
    assert "drop --config and the overrides" in capsys.readouterr().err


def test_the_command_hands_the_signal_handlers_back(tmp_path, monkeypatch):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    config = tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=1)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--headless", "--config", str(config)]) == 0
    assert {s: signal.getsignal(s) for s in before} == before

