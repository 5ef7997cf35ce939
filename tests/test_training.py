"""engine/training.py: the loop on real data, determinism, checkpoints, commands, early stopping."""

from __future__ import annotations

import threading

import pytest
import torch

from actlab.engine import runs
from actlab.engine.checkpoints import load_checkpoint
from actlab.engine.config import LabConfig
from actlab.engine.events import (ActivationSwapped, BatchProgress, CheckpointSaved, EpochDone, RunFinished,
                                  RunStarted, StateChanged, read_events)
from actlab.engine.control import RunControl
from actlab.engine.lab import resume_run
from actlab.engine.training import TrainingRun, evaluate


def _config(tmp_path, **overrides) -> LabConfig:
    base = {"run.runs_dir": str(tmp_path / "runs"), "run.device": "cpu", "data.dataset": "digits",
            "model.hidden_sizes": [64, 32], "train.epochs": 3, "train.batch_size": 64, "train.lr": 0.05,
            "probes.enabled": False}
    return LabConfig().replace(**(base | overrides))


def _run(config, data, **kwargs):
    events = []
    result = TrainingRun(config, consumers=[events.append], data=data, **kwargs).run()
    return result, events


def test_digits_run_writes_folder_events_and_checkpoints(tmp_path, digits_cpu):
    result, events = _run(_config(tmp_path), digits_cpu)
    assert result.status == "finished" and result.epochs_run == 3
    assert result.test_acc is not None and result.test_acc > 0.8
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    steps = events[0].steps_per_epoch
    assert steps == 1079 // 64
    assert sum(isinstance(e, BatchProgress) for e in events) == 3 * steps
    assert [e.epoch for e in events if isinstance(e, EpochDone)] == [1, 2, 3]
    folder = result.run_dir
    assert (folder / "config.json").exists()
    assert runs.read_config(folder).data.dataset == "digits"
    logged = read_events(folder)
    assert [e.epoch for e in logged if isinstance(e, EpochDone)] == [1, 2, 3]
    assert isinstance(logged[-1], RunFinished)
    model, ck = load_checkpoint(runs.checkpoint_path(folder, runs.BEST))
    assert ck["epoch"] == result.best_epoch
    _, acc = evaluate(model, digits_cpu.test_x, digits_cpu.test_y)
    assert acc == pytest.approx(result.test_acc, abs=1e-9)


def test_same_seed_same_metrics_on_cpu(tmp_path, digits_cpu):
    config = _config(tmp_path, **{"model.dropout": 0.2})
    a, _ = _run(config, digits_cpu)
    b, _ = _run(config, digits_cpu)
    assert [(e.train_loss, e.val_acc) for e in a.history] == [(e.train_loss, e.val_acc) for e in b.history]
    c, _ = _run(config.replace(**{"run.seed": 7}), digits_cpu)
    assert [e.train_loss for e in c.history] != [e.train_loss for e in a.history]


def test_early_stopping_with_patience(tmp_path, digits_cpu):
    # lr so small that validation accuracy cannot keep improving for long
    config = _config(tmp_path, **{"train.epochs": 40, "train.patience": 2, "train.lr": 1e-9})
    result, events = _run(config, digits_cpu)
    assert result.status == "early-stopped"
    accs = [e.val_acc for e in result.history]
    best = max(accs)
    assert result.epochs_run == accs.index(best) + 1 + 2
    assert result.epochs_run < 40


def test_adam_optimizer_trains(tmp_path, digits_cpu):
    result, _ = _run(_config(tmp_path, **{"train.optimizer": "adam", "train.lr": 3e-3}), digits_cpu)
    assert result.best_val_acc > 0.85


def test_commands_pause_save_swap_stop(tmp_path, digits_cpu):
    control = RunControl()
    events = []
    seen_batches = []

    def consumer(event):
        events.append(event)
        if isinstance(event, BatchProgress):
            seen_batches.append(event.global_step)
            if event.global_step == 3:
                control.pause()
                control.save()
                control.swap_activation("silu")
                control.resume()
            if event.global_step == 20:
                control.stop()

    config = _config(tmp_path, **{"train.epochs": 5})
    result = TrainingRun(config, consumers=[consumer], control=control, data=digits_cpu).run()
    assert result.status == "stopped"
    assert [e.state for e in events if isinstance(e, StateChanged)] == ["paused", "running"]
    swaps = [e for e in events if isinstance(e, ActivationSwapped)]
    assert len(swaps) == 1 and (swaps[0].old, swaps[0].new, swaps[0].step) == ("relu", "swish", 3)
    assert [e.reason for e in events if isinstance(e, CheckpointSaved)][0] == "manual"
    assert max(seen_batches) == 20
    model, ck = load_checkpoint(runs.checkpoint_path(result.run_dir))
    assert model.config.activation == "swish"
    assert ck["step"] == 20
    with pytest.raises(ValueError, match="did you mean"):
        control.swap_activation("gelux")


def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path, digits_cpu):
    config = _config(tmp_path, **{"train.epochs": 4, "model.dropout": 0.1})
    full, _ = _run(config, digits_cpu)

    control = RunControl()

    def stopper(event):
        if isinstance(event, BatchProgress) and event.global_step == 25:  # epoch 2, batch 9
            control.stop("interrupted")

    part = TrainingRun(config, consumers=[stopper], control=control, data=digits_cpu).run()
    assert part.status == "interrupted" and part.epochs_run == 1
    resumed = resume_run(part.run_dir, data=digits_cpu).run()
    assert resumed.status == "finished"
    key = lambda r: [(e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc) for e in r.history]
    assert key(resumed) == key(full)[1:]
    assert resumed.test_acc == full.test_acc


def test_unknown_activation_fails_before_anything_is_written(tmp_path, digits_cpu):
    config = _config(tmp_path, **{"model.activation": "gelux"})
    result, events = _run(config, digits_cpu)
    assert result.status == "failed"
    assert "did you mean 'gelu'" in result.message
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_fashion_mnist_two_epochs_relu_learns_sigmoid_does_not(tmp_path, fashion_cpu):
    """Reference §3: ReLU trains at once; sigmoid stays at chance with the default recipe."""
    accs = {}
    for act in ("relu", "sigmoid"):
        config = LabConfig().replace(**{"run.runs_dir": str(tmp_path / "runs"), "run.device": "cpu",
                                        "model.activation": act, "train.epochs": 2, "probes.enabled": False})
        result, _ = _run(config, fashion_cpu)
        accs[act] = result.history[-1].val_acc
    assert accs["relu"] > 0.80
    assert 0.05 < accs["sigmoid"] < 0.15


def test_one_checkpoint_write_per_epoch_best_is_the_same_file(tmp_path, digits_cpu):
    """An improving epoch writes last.pt once and best.pt is a hard link to it; a later epoch that
    does not improve replaces last.pt only, and best.pt keeps the best epoch's bytes."""
    run = TrainingRun(_config(tmp_path, **{"train.epochs": 50, "train.patience": 0}), data=digits_cpu)
    run.prepare()
    saved = []
    run.bus.subscribe(lambda e: saved.append((e.epoch, e.reason)) if isinstance(e, CheckpointSaved) else None)
    assert run.run_epoch() is None  # the first epoch always improves
    last, best = runs.checkpoint_path(run.run_dir), runs.checkpoint_path(run.run_dir, runs.BEST)
    assert saved == [(1, "best"), (1, "last")]
    assert last.stat().st_ino == best.stat().st_ino and last.stat().st_nlink == 2
    best_bytes = best.read_bytes()
    run.optimizer.param_groups[0]["lr"] = 1e-12  # weights all but frozen: validation accuracy cannot improve
    assert run.run_epoch() is None
    assert saved[2:] == [(2, "last")]
    assert last.stat().st_ino != best.stat().st_ino and best.stat().st_nlink == 1
    assert best.read_bytes() == best_bytes
    _, ck_last = load_checkpoint(last)
    _, ck_best = load_checkpoint(best)
    assert (ck_last["epoch"], ck_best["epoch"]) == (2, 1)
    assert not [p.name for p in last.parent.iterdir() if ".tmp-" in p.name]
    assert set(run.phase_seconds) == {"train", "validate", "probes", "events", "checkpoints"}
    assert all(v >= 0 for v in run.phase_seconds.values()) and run.phase_seconds["train"] > 0
    run.close()

