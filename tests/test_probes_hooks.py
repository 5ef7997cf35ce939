"""engine/probes/hooks.py and watched.py: hooks never left behind; layers found by type and named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from actlab.engine.config import ProbesConfig
from actlab.engine.model import MLPConfig, build_model
from actlab.engine.probes import HookRegistry, ProbeSet, build_probes, find_layers, hook_count
from actlab.engine.probes import NoProbes

from probe_helpers import SmallCNN, splits, train_epoch


def test_registry_removes_every_handle_even_on_error():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(RuntimeError):
        with HookRegistry() as hooks:
            hooks.forward(model[0], lambda *a: None)
            hooks.forward(model[1], lambda *a: None)
            assert len(hooks) == 2 and hook_count(model) == 2
            raise RuntimeError("boom")
    assert hook_count(model) == 0


def test_mlp_layers_are_named_short_and_paired():
    model = build_model(MLPConfig(hidden_sizes=(8, 6), activation="gelu", dropout=0.1, input_size=5))
    layers = find_layers(model)
    assert [a.name for a in layers.activations] == ["act1", "act2"]
    assert [d.name for d in layers.dropouts] == ["drop1", "drop2"]
    assert [p.name for p in layers.linears] == ["fc1", "fc2", "out"]
    assert [layer.name for layer in layers.ordered] == ["fc1", "act1", "drop1", "fc2", "act2", "drop2", "out"]
    assert layers.paired_linears == {"fc1": "act1", "fc2": "act2"}
    assert [a.size for a in layers.activations] == [8, 6]


def test_attach_detach_and_hot_swap_leave_no_hooks(digits_cpu):
    model = build_model(MLPConfig(input_size=64, hidden_sizes=(16, 16), activation="relu", dropout=0.2), seed=0)
    probes = ProbeSet(ProbesConfig(sample_every=1))
    probes.attach(model)
    attached = hook_count(model)
    layers = find_layers(model)
    # one hook per activation and dropout layer; the Linear layers need none
    assert attached == len(layers.activations) + len(layers.dropouts) == 4
    x, y = digits_cpu.train_x[:256], digits_cpu.train_y[:256]
    probes.init_stats(model, splits(x, y))  # its temporary hooks are gone again
    assert hook_count(model) == attached
    train_epoch(model, probes, x, y, batch_size=64, lr=0.01)
    model.swap_activation("tanh")  # what the loop does on a hot swap: detach + attach
    probes.detach()
    probes.attach(model)
    assert hook_count(model) == attached
    train_epoch(model, probes, x, y, batch_size=64, lr=0.01, epoch=2)
    stats = probes.epoch_stats(2, model, splits(x, y))
    assert stats.layers["act1"]["saturation"] >= 0 and "dead_live" in stats.layers["act1"]
    probes.detach()
    assert hook_count(model) == 0
    probes.detach()  # idempotent


def test_cnn_probes_leave_no_hooks():
    model = SmallCNN()
    probes = ProbeSet()
    probes.attach(model)
    assert hook_count(model) > 0
    probes.detach()
    assert hook_count(model) == 0


def test_build_probes_follows_the_config():
    assert isinstance(build_probes(ProbesConfig()), ProbeSet)
    assert isinstance(build_probes(ProbesConfig(enabled=False)), NoProbes)
    from actlab.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="probes.act_hist_min"):
        build_probes(ProbesConfig(act_hist_min=3.0, act_hist_max=1.0))


def test_probes_ignore_a_model_without_watched_layers():
    model = nn.Sequential(nn.Flatten(), nn.Identity())
    probes = ProbeSet()
    probes.attach(model)
    x = torch.randn(8, 4)
    assert probes.init_stats(model, splits(x, torch.zeros(8, dtype=torch.long))) is None
    assert probes.step_stats(1) is None and probes.nonfinite_layer() is None
    probes.detach()


def test_a_hot_swap_mid_epoch_keeps_the_epochs_counts(digits_cpu):
    model = build_model(MLPConfig(input_size=64, hidden_sizes=(16, 16), activation="relu"), seed=0)
    probes = ProbeSet(ProbesConfig(histograms=False, dead_exact_every=0))
    probes.attach(model)
    x, y = digits_cpu.train_x[:256], digits_cpu.train_y[:256]

    def swap(b):
        if b == 1:  # after two batches: relu (judged by its input) -> tanh (by its output)
            model.swap_activation("tanh")
            probes.detach()
            probes.attach(model)

    train_epoch(model, probes, x, y, batch_size=64, lr=0.01, on_batch=swap)
    stats = probes.epoch_stats(1, model, splits(x, y))
    probes.detach()
    assert probes.record.zeros.steps == 4  # all four batches count
    assert stats.layers["act1"]["size"] == 16 and 0 <= stats.layers["act1"]["death_rate"] < 1
    assert "grad_death_rate" in stats.layers["act2"]
