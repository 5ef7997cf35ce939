"""The engine's front door: runs opened, resumed and read one way, probes following the config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from actlab.engine import lab, metrics
from actlab.engine.config import LabConfig
from actlab.engine.errors import UserError
from actlab.engine.events import LayerStats, read_events
from actlab.engine.probes import NoProbes
from actlab.engine.training import TrainingRun


def small(tmp_path, **overrides) -> LabConfig:
    base = {"run.runs_dir": str(tmp_path / "runs"), "run.device": "cpu", "data.dataset": "digits",
            "model.hidden_sizes": [16], "train.epochs": 2, "train.batch_size": 64}
    return LabConfig().replace(**(base | overrides))


def layer_stats(run_dir) -> list[LayerStats]:
    return [e for e in read_events(run_dir) if isinstance(e, LayerStats)]


def test_a_bare_training_run_follows_the_configs_probes(tmp_path, digits_cpu):
    """No silent trap: TrainingRun(config) probes when probes.enabled, and not when disabled."""
    on = TrainingRun(small(tmp_path), data=digits_cpu).run()
    off = TrainingRun(small(tmp_path, **{"probes.enabled": False}), data=digits_cpu).run()
    assert [e.epoch for e in layer_stats(on.run_dir)] == [0, 1, 2, metrics.TRAINED_EPOCH]
    assert layer_stats(off.run_dir) == []
    assert [e.val_acc for e in on.history] == [e.val_acc for e in off.history]  # probing changes nothing


def test_open_run_equals_a_bare_run_and_takes_explicit_probes(tmp_path, digits_cpu):
    via_door = lab.open_run(small(tmp_path), data=digits_cpu).run()
    assert len(layer_stats(via_door.run_dir)) == 4
    quiet = lab.open_run(small(tmp_path), data=digits_cpu, probes=NoProbes()).run()
    assert layer_stats(quiet.run_dir) == []
    assert [e.val_acc for e in via_door.history] == [e.val_acc for e in quiet.history]


def test_open_run_in_a_named_folder_and_refusal_of_a_used_one(tmp_path, digits_cpu):
    folder = tmp_path / "study" / "t001-relu-s0"
    result = lab.open_run(small(tmp_path), data=digits_cpu, run_dir=folder).run()
    assert result.status == "finished" and result.run_dir == folder and result.run_id == "t001-relu-s0"
    assert list(lab.read_run_config(folder).model.hidden_sizes) == [16]
    again = lab.open_run(small(tmp_path), data=digits_cpu, run_dir=folder).run()
    assert again.status == "failed" and "already holds a run" in again.message
    assert len(lab.read_run(folder).epochs) == 2  # the first run is untouched


def test_resume_run_extends_a_finished_run_and_refuses_fewer_epochs(tmp_path, digits_cpu):
    first = lab.open_run(small(tmp_path), data=digits_cpu).run()
    with pytest.raises(UserError, match="already trained 2 epochs"):
        lab.resume_run(first.run_dir, data=digits_cpu, epochs=2)
    more = lab.resume_run(first.run_dir, data=digits_cpu, epochs=4).run()
    assert more.status == "finished"
    assert [row["epoch"] for row in lab.read_run(first.run_dir).epochs] == [1, 2, 3, 4]


def test_read_run_names_the_valid_layers_and_metrics(tmp_path, digits_cpu):
    table = lab.read_run(lab.open_run(small(tmp_path), data=digits_cpu).run().run_dir)
    assert [epoch for epoch, _ in table.column("act1", metrics.DEAD_LIVE_FRAC)] == [1, 2]
    with pytest.raises(KeyError, match="no layer 'act9'; layers: act1, fc1, out"):
        table.column("act9", metrics.DEAD_LIVE_FRAC)
    with pytest.raises(KeyError, match="has no metric 'dead_frac'; metrics: .*dead_live_frac"):
        table.column("act1", "dead_frac")


def test_reading_through_the_front_door_loads_no_torch():
    code = "import sys; from actlab.engine import lab; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_the_catalogue_lists_the_labs_ten_first():
    names = [info.name for info in lab.activation_catalogue()]
    assert names[:10] == ["sigmoid", "tanh", "relu", "leakyrelu", "prelu", "elu", "gelu", "swish", "mish", "tanhexp"]
    assert len(names) == len(set(names)) >= 19
