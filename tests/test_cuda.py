"""The GPU-ready training step: CUDA graphs (`train.cuda_graphs`), no host syncs per step.

The tests marked `cuda` need an NVIDIA GPU and skip without one, saying so; bench/gpu_check.sh
runs them on a GPU machine. The others check on the CPU what can be checked there: the config
key, the clear error for 'on' without CUDA, and the clean fallback (said once, same results)
when a capture cannot happen.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from actlab.engine import training
from actlab.engine.config import LabConfig
from actlab.engine.control import RunControl
from actlab.engine.errors import ConfigError
from actlab.engine.events import BatchProgress
from actlab.engine.training import TrainingRun

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device here: the CUDA graph and sync checks need an "
                                                 "NVIDIA GPU (run bench/gpu_check.sh on one)")


def _config(tmp_path, device: str = "cpu", **overrides) -> LabConfig:
    base = {"run.runs_dir": str(tmp_path / "runs"), "run.device": device, "data.dataset": "digits",
            "model.hidden_sizes": [64, 32], "train.epochs": 2, "train.batch_size": 64, "train.lr": 0.05,
            "train.patience": 0, "probes.enabled": False}
    return LabConfig().replace(**(base | overrides))


def _history(result) -> list[tuple[float, float, float, float]]:
    return [(e.train_loss, e.train_acc, e.val_loss, e.val_acc) for e in result.history]


# --- on the CPU ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["yes", "", "ON", "graphs", 1, True, 0.5])
def test_bad_cuda_graphs_values_are_one_line_errors(tmp_path, value):
    with pytest.raises(ConfigError) as info:
        LabConfig().replace(**{"train.cuda_graphs": value})
    message = str(info.value)
    assert "train.cuda_graphs" in message and "\n" not in message
    assert "auto" in message and "off" in message


def test_default_is_auto_and_auto_trains_eagerly_on_cpu(tmp_path, recwarn):
    assert LabConfig().train.cuda_graphs == "auto"
    result = TrainingRun(_config(tmp_path)).run()
    assert result.status == "finished"
    assert not [w for w in recwarn if "CUDA graphs" in str(w.message)]  # nothing to say on a CPU


@pytest.mark.skipif(CUDA, reason="checks the error for a machine without CUDA")
def test_on_without_cuda_is_a_clear_error_and_creates_nothing(tmp_path):
    run = TrainingRun(_config(tmp_path, **{"train.cuda_graphs": "on"}))
    result = run.run()
    assert result.status == "failed"
    assert "train.cuda_graphs = 'on'" in result.message and "cpu" in result.message
    assert "\n" not in result.message
    assert not (tmp_path / "runs").exists()  # no run folder for a config that cannot run


@pytest.mark.parametrize("probes", [False, True])
def test_failed_capture_falls_back_once_with_identical_training(tmp_path, monkeypatch, probes):
    """A device that claims graphs but cannot make them (here: the CPU): eager steps, one warning."""
    off = TrainingRun(_config(tmp_path / "off", **{"train.cuda_graphs": "off", "probes.enabled": probes})).run()
    monkeypatch.setattr(training, "graphs_supported", lambda device: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = TrainingRun(_config(tmp_path / "auto", **{"train.cuda_graphs": "auto",
                                                             "probes.enabled": probes})).run()
    notes = [w for w in caught if "CUDA graphs off" in str(w.message)]
    assert len(notes) == 1, [str(w.message) for w in caught]
    expected = "probes" if probes else "capture failed"
    assert expected in str(notes[0].message)
    assert fallback.status == off.status == "finished"
    assert _history(fallback) == _history(off)  # bit for bit: the same eager steps


def test_train_steps_returns_device_sums_and_train_epoch_reads_them(tmp_path, digits_cpu):
    run = TrainingRun(_config(tmp_path), data=digits_cpu)
    run.prepare()
    loss_sum, correct = run.train_steps(1)
    assert loss_sum.dtype == torch.float64 and correct.dtype == torch.int64
    seen = run.progress.seen
    assert seen == (digits_cpu.train_x.shape[0] // 64) * 64
    first = float(loss_sum) / seen
    assert 0 < first < 10 and 0 <= int(correct) <= seen
    run.progress.batch = 0
    loss, acc = run.train_epoch(2)
    assert 0 < loss < first  # the second epoch's mean loss is lower
    assert 0 <= acc <= 1
    run.close()


def test_nonfinite_watch_on_cpu_sees_nan_at_once():
    watch = training.NonFiniteWatch(torch.device("cpu"))
    assert not watch.diverged(torch.tensor(3.0, dtype=torch.float64))
    assert watch.diverged(torch.tensor(float("nan"), dtype=torch.float64))
    assert watch.diverged(torch.tensor(float("inf"), dtype=torch.float64))


# --- on a GPU -----------------------------------------------------------------------------------

@needs_cuda
@pytest.mark.cuda
def test_graphed_run_matches_eager_run(tmp_path):
    eager = TrainingRun(_config(tmp_path / "eager", "cuda", **{"train.cuda_graphs": "off"}))
    graphed = TrainingRun(_config(tmp_path / "graphed", "cuda", **{"train.cuda_graphs": "on"}))
    a, b = eager.run(), graphed.run()
    assert a.status == b.status == "finished"
    assert graphed.graph_captures == 1 and eager.graph_captures == 0
    for x, y in zip(_history(a), _history(b)):
        assert x == pytest.approx(y, rel=1e-4, abs=1e-6)


@needs_cuda
@pytest.mark.cuda
def test_hot_swap_recaptures_the_graph(tmp_path):
    control = RunControl()
    sent = []

    def swap_once(event):
        if isinstance(event, BatchProgress) and event.epoch == 1 and event.step == 8 and not sent:
            sent.append(1)
            control.swap_activation("prelu")  # adds learned slopes: new parameters, a new graph

    run = TrainingRun(_config(tmp_path, "cuda", **{"train.cuda_graphs": "on", "train.epochs": 3}),
                      consumers=[swap_once], control=control)
    result = run.run()
    assert result.status == "finished", result.message
    assert run.graph_captures == 2
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("graphs,probes", [("on", False), ("off", False), ("off", True)])
def test_training_steps_never_sync_the_host(tmp_path, graphs, probes):
    """After the first epoch (warm-up, capture), an epoch's steps run under sync-debug 'error'."""
    run = TrainingRun(_config(tmp_path, "cuda", **{"train.cuda_graphs": graphs, "probes.enabled": probes}))
    run.prepare()
    run.probes.attach(run.model)
    run.train_epoch(1)
    run.progress.batch = 0
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss_sum, correct = run.train_steps(2)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(loss_sum).item() and correct.item() > 0
    run.probes.detach()
    run.close()
