"""The probes inside a real TrainingRun: events in events.jsonl, read back by read_run,
bounded step series, and training results unchanged by probing."""

from __future__ import annotations

import pytest

from actlab.engine import metrics, runs
from actlab.engine.config import LabConfig
from actlab.engine.events import LayerStats, StepStats, read_events
from actlab.engine.probes import build_probes, hook_count
from actlab.engine.control import RunControl
from actlab.engine.training import TrainingRun


def _config(tmp_path, **overrides) -> LabConfig:
    base = {"run.runs_dir": str(tmp_path / "runs"), "run.device": "cpu", "data.dataset": "digits",
            "model.hidden_sizes": [32, 16], "train.epochs": 2, "train.batch_size": 64, "train.lr": 0.05,
            "model.dropout": 0.2}
    return LabConfig().replace(**(base | overrides))


def _run(config, data, **kwargs):
    events = []
    run = TrainingRun(config, consumers=[events.append], data=data, probes=build_probes(config.probes), **kwargs)
    return run, run.run(), events


def test_layer_and_step_stats_reach_the_log_and_read_run(tmp_path, digits_cpu):
    run, result, events = _run(_config(tmp_path, **{"probes.gradients_every": 1}), digits_cpu)
    assert result.status == "finished"
    assert hook_count(run.model) == 0
    logged = read_events(result.run_dir)
    stats = [e for e in logged if isinstance(e, LayerStats)]
    assert [e.epoch for e in stats] == [0, 1, 2, metrics.TRAINED_EPOCH]
    init, last = stats[0], stats[-2]
    assert set(init.histograms) == {"act/act1", "act/act2", "grad_init/fc1", "grad_init/fc2", "grad_init/out"}
    hist = init.histograms["grad_init/fc1"]
    assert len(hist["edges"]) == len(hist["counts"]) + 1 == 65
    assert sum(hist["counts"]) == 32 * 64  # every weight-gradient entry of fc1
    assert sum(init.histograms["act/act1"]["counts"]) == min(512, digits_cpu.train_x.shape[0]) * 32
    assert sum(last.histograms["act/act1"]["counts"]) == min(512, digits_cpu.val_x.shape[0]) * 32  # validation
    for name in ("act1", "act2"):
        assert {"size", "dead_live", "dead_live_frac", "activation_rate", "death_rate",
                "grad_death_rate", "saturation", "z_mean", "z_std"} <= set(last.layers[name])
        assert {"dead_exact", "dead_exact_frac"} <= set(init.layers[name])  # exact: init (and trained) only
    for name in ("fc1", "fc2", "out"):
        expected = {"grad_mean_abs", "grad_l2", "grad_max", "update_ratio_log10", "dist_from_init"}
        assert expected <= set(last.layers[name])
    assert "dead_live" not in init.layers["act1"] and "update_ratio_log10" not in init.layers["fc1"]
    for e in stats[:-1]:  # every layer of every report says what it is
        assert set(e.kinds) == set(e.layers)
        assert {e.kinds[n] for n in ("act1", "act2")} == {metrics.ACTIVATION}
        assert {e.kinds[n] for n in ("fc1", "fc2", "out")} == {metrics.LINEAR}
    assert last.kinds["drop1"] == metrics.DROPOUT
    table = runs.read_run(result.run_dir)
    assert [e for e, _ in table.column("act1", "dead_exact")] == [0]
    assert set(table.trained["act1"]) == {"size", "dead_exact", "dead_exact_frac"}
    assert [e for e, _ in table.column("fc1", "dist_from_init")] == [0, 1, 2]
    # the step series covers every step exactly once, in order
    steps = [e for e in logged if isinstance(e, StepStats)]
    firsts, total = [], 0
    for e in steps:
        assert e.first_step == total + 1
        firsts.append(e.first_step)
        total += len(e.series["fc1"]["grad_l2"])
        assert set(e.series) == {"fc1", "fc2", "out"}
    assert total == 2 * (digits_cpu.train_x.shape[0] // 64)


def test_step_series_every_nth_step_of_each_epoch(tmp_path, digits_cpu):
    _, _, events = _run(_config(tmp_path, **{"probes.gradients_every": 5, "train.epochs": 2}), digits_cpu)
    per_epoch = digits_cpu.train_x.shape[0] // 64  # 16
    for epoch in (1, 2):
        steps = [e for e in events if isinstance(e, StepStats) and e.epoch == epoch]
        assert steps and steps[0].first_step == (epoch - 1) * per_epoch + 1  # each epoch's first step
        assert sum(len(e.series["out"]["grad_max"]) for e in steps) == 4  # its steps 1, 6, 11, 16


def test_probing_does_not_change_training(tmp_path, digits_cpu):
    config = _config(tmp_path, **{"train.epochs": 2})
    _, probed, _ = _run(config, digits_cpu)
    _, plain, _ = _run(config.replace(**{"probes.enabled": False}), digits_cpu)
    assert [(e.train_loss, e.val_acc) for e in probed.history] == [(e.train_loss, e.val_acc) for e in plain.history]


def test_hot_swap_keeps_probing_and_leaves_no_hooks(tmp_path, digits_cpu):
    control = RunControl()
    control.swap_activation("sigmoid")  # applied before the first batch
    run, result, events = _run(_config(tmp_path, **{"train.epochs": 1}), digits_cpu, control=control)
    assert result.status == "finished" and run.model.config.activation == "sigmoid"
    assert hook_count(run.model) == 0
    epoch1 = [e for e in events if isinstance(e, LayerStats) and e.epoch == 1][0]
    assert epoch1.layers["act1"]["dead_live"] == 0  # sigmoid never outputs exact zeros
    trained = [e for e in events if isinstance(e, LayerStats) and e.epoch == metrics.TRAINED_EPOCH][0]
    assert trained.layers["act1"]["dead_exact"] == 0  # on the best (sigmoid) weights
    assert epoch1.layers["act1"]["activation_rate"] == pytest.approx(1.0)


def test_exact_pass_every_n_epochs_and_off(tmp_path, digits_cpu):
    _, result, events = _run(_config(tmp_path, **{"train.epochs": 3, "probes.dead_exact_every": 2}), digits_cpu)
    have = {e.epoch: "dead_exact" in e.layers["act1"] for e in events if isinstance(e, LayerStats)}
    assert have == {0: True, 1: False, 2: True, 3: False, metrics.TRAINED_EPOCH: True}
    _, result, events = _run(_config(tmp_path, **{"probes.dead_exact_every": 0, "probes.histograms": False}),
                             digits_cpu)
    # 0: no exact pass between initialisation and the end of training
    assert [e.epoch for e in events if isinstance(e, LayerStats) and "dead_exact" in e.layers.get("act1", {})
            and e.epoch >= 1] == []
    assert all(not e.histograms for e in events if isinstance(e, LayerStats))


def _trained_model(run_dir):
    """The lab's MLP holding best.pt's weights (what the loop hands to final_stats)."""
    from actlab.engine.checkpoints import load_weights, model_config_of, read_checkpoint
    from actlab.engine.model import MLP

    best = runs.checkpoint_path(run_dir, runs.BEST)
    ck = read_checkpoint(best, map_location="cpu")
    model = MLP(model_config_of(ck, best))
    load_weights(model, ck, best)
    return model


@pytest.mark.parametrize("recipe", [{"train.epochs": 3}, {"train.epochs": 6, "train.patience": 1, "train.lr": 2.0}])
def test_trained_table_is_the_exact_count_on_the_best_weights(tmp_path, digits_cpu, recipe):
    from actlab.engine.probes import exact_dead_counts

    _, result, events = _run(_config(tmp_path, **recipe), digits_cpu)
    assert result.status in ("finished", "early-stopped")
    stats = [e for e in events if isinstance(e, LayerStats)]
    trained = [e for e in stats if e.epoch == metrics.TRAINED_EPOCH]
    assert len(trained) == 1 and stats[-1] is trained[0]  # once, after the last epoch's report
    finished = next(i for i, e in enumerate(events) if type(e).__name__ == "RunFinished")
    assert events.index(trained[0]) < finished
    brute = exact_dead_counts(_trained_model(result.run_dir), digits_cpu.train_x)
    assert {name: trained[0].layers[name]["dead_exact"] for name in brute} == brute
    assert trained[0].kinds == {"act1": metrics.ACTIVATION, "act2": metrics.ACTIVATION}
    table = runs.read_run(result.run_dir)
    assert metrics.TRAINED_EPOCH not in table.layer_stats and table.trained == trained[0].layers
    assert [e for e, _ in table.column("act1", "dead_live")] == list(range(1, result.epochs_run + 1))


def test_no_trained_table_for_a_stopped_run(tmp_path, digits_cpu):
    control = RunControl()
    control.stop()
    _, result, events = _run(_config(tmp_path), digits_cpu, control=control)
    assert result.status == "stopped"
    assert not [e for e in events if isinstance(e, LayerStats) and e.epoch == metrics.TRAINED_EPOCH]


def test_training_is_bit_identical_with_and_without_sampling(tmp_path, digits_cpu):
    """The probes' random batch choice uses a generator of their own: dropout's draws and the
    shuffle are unchanged, so losses, accuracies and weights are bit-identical."""
    import torch

    config = _config(tmp_path, **{"train.epochs": 2, "model.dropout": 0.3, "probes.sample_every": 3})
    probed, result, events = _run(config, digits_cpu)
    plain, reference, _ = _run(config.replace(**{"probes.enabled": False}), digits_cpu)
    assert [(e.train_loss, e.train_acc, e.val_loss) for e in result.history] == \
        [(e.train_loss, e.train_acc, e.val_loss) for e in reference.history]
    for a, b in zip(probed.model.state_dict().values(), plain.model.state_dict().values()):
        assert torch.equal(a, b)
    epoch1 = [e for e in events if isinstance(e, LayerStats) and e.epoch == 1][0]
    assert 0 < epoch1.layers["act1"]["activation_rate"] < 1  # sampling did happen
