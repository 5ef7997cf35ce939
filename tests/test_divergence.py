"""Divergence: a NaN/inf loss or weight ends the run as "diverged" and names where the first
non-finite value appeared; the last good checkpoint stays (NaN weights are never written);
`actlab run` exits 1 with one line; the caller (the app) gets a result, never an exception.
"""

from __future__ import annotations

import pytest
import torch
from robust_harness import one_thread, tiny_config  # noqa: F401

from actlab.engine import runs
from actlab.engine.checkpoints import load_checkpoint
from actlab.engine.config import load_config
from actlab.engine.events import BatchProgress, CheckpointSaved, RunFinished, read_events
from actlab.engine.control import RunControl
from actlab.engine.training import TrainingRun
from actlab.tui import cli

pytestmark = pytest.mark.usefixtures("one_thread")


def _poison_at(monkeypatch, epoch: int, batch: int, layer: str = "fc1", value: float = float("inf"),
               param: str = "bias") -> None:
    """Put `value` into `layer`'s bias (or weight) just before batch `batch` of epoch `epoch`."""
    original = TrainingRun._handle_commands

    def poisoned(self, current: int) -> None:
        if current == epoch and self.progress.batch == batch:
            with torch.no_grad():
                getattr(getattr(self.model.layers, layer), param).view(-1)[0] = value
        original(self, current)

    monkeypatch.setattr(TrainingRun, "_handle_commands", poisoned)


def _assert_last_is_good(run_dir, epoch: int) -> None:
    model, ck = load_checkpoint(runs.checkpoint_path(run_dir))
    assert ck["epoch"] == epoch and ck["progress"]["batch"] == 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cli_inf_weight_in_epoch_2_diverges_names_fc1_keeps_epoch_1(tmp_path, monkeypatch, capsys):
    """Through `actlab run` with the probes on (their non-finite watch names the layer)."""
    _poison_at(monkeypatch, epoch=2, batch=3)
    config = tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=4, probes=True)
    assert cli.main(["run", "--headless", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("actlab: run diverged: non-finite loss in epoch 2; first non-finite values in fc1 (forward)")
    run_dir = next((tmp_path / "runs").iterdir())
    assert f"last good checkpoint: epoch 1: {runs.checkpoint_path(run_dir)}" in err
    _assert_last_is_good(run_dir, epoch=1)
    finished = [e for e in read_events(run_dir) if isinstance(e, RunFinished)]
    assert [e.status for e in finished] == ["diverged"] and "fc1" in finished[0].message


def test_probes_off_the_layers_holding_nan_are_named(tmp_path, monkeypatch, digits_cpu):
    """Without the watch, one NaN step has spread to every layer by the time the loss is read."""
    _poison_at(monkeypatch, epoch=2, batch=3, layer="out")
    config = load_config(tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=4, probes=False))
    result = TrainingRun(config, data=digits_cpu).run()
    assert result.status == "diverged" and result.epochs_run == 1
    assert "first non-finite values in fc1 and out (weights; turn probes.nonfinite on" in result.message
    _assert_last_is_good(result.run_dir, epoch=1)


def test_an_inf_weight_that_leaves_the_loss_finite_still_never_reaches_a_checkpoint(tmp_path, monkeypatch,
                                                                                     digits_cpu):
    """inf times the (constant) corner pixel is -inf, and ReLU(-inf) = 0: the loss stays finite, but a
    checkpoint with inf weights is no good."""
    _poison_at(monkeypatch, epoch=2, batch=3, param="weight")  # fc1.weight[0, 0]: the corner pixel, always 0
    config = load_config(tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=4, probes=False))
    result = TrainingRun(config, data=digits_cpu).run()
    assert result.status == "diverged", result.message
    assert result.message.startswith("non-finite weights in epoch 2; first non-finite values in fc1 (weights")
    _assert_last_is_good(result.run_dir, epoch=1)


def test_a_stop_right_after_the_weights_went_nan_never_writes_them(tmp_path, monkeypatch, digits_cpu):
    """The loss is checked every 32 batches; a stop (or a save) in between must not write NaN."""
    _poison_at(monkeypatch, epoch=2, batch=3)
    control = RunControl()

    def stop_soon(event):
        if isinstance(event, BatchProgress) and event.epoch == 2 and event.step == 6:
            control.stop("interrupted")

    config = load_config(tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=4, probes=False))
    events = []
    result = TrainingRun(config, data=digits_cpu, control=control, consumers=[stop_soon, events.append]).run()
    assert result.status == "diverged", result.message
    assert [e.reason for e in events if isinstance(e, CheckpointSaved)] == ["best", "last"]  # epoch 1 only
    _assert_last_is_good(result.run_dir, epoch=1)


def test_cli_huge_learning_rate_diverges_in_epoch_1_with_one_line(tmp_path, capsys):
    """lr = 1e6: the logits outgrow float32 and the cross-entropy overflows while every weight
    is still finite; the message says so, and no checkpoint was ever good enough to write."""
    config = tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=3, lr=1e6, dropout=0.0, batch_size=64)
    assert cli.main(["run", "--headless", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("actlab: run diverged: non-finite loss in epoch 1;")
    assert "first non-finite values in " in err and "unknown" not in err
    run_dir = next((tmp_path / "runs").iterdir())
    assert not runs.checkpoint_path(run_dir).exists()
    assert [e.status for e in read_events(run_dir) if isinstance(e, RunFinished)] == ["diverged"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_loss_check_catches_nan_and_inf_alike(bad, tmp_path, monkeypatch, digits_cpu):
    original = TrainingRun._handle_commands

    def poisoned(self, current: int) -> None:
        if current == 1 and self.progress.batch == 2:
            with torch.no_grad():
                self.model.layers.fc1.bias[0] = bad
        original(self, current)

    monkeypatch.setattr(TrainingRun, "_handle_commands", poisoned)
    config = load_config(tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=2, probes=False))
    result = TrainingRun(config, data=digits_cpu).run()
    assert result.status == "diverged" and "fc1" in result.message
    assert not runs.checkpoint_path(result.run_dir).exists()
