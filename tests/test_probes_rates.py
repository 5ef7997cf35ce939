"""engine/probes/rates.py: monitorch-style activation and death rates, from outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from actlab.engine.config import ProbesConfig
from actlab.engine.probes import ProbeSet
from actlab.engine.probes.rates import GradientRates, OutputRates, neuron_max_abs

from probe_helpers import SmallCNN, splits, train_epoch


def test_output_rates_on_hand_made_batches():
    r = OutputRates()
    # neuron 0: active in batch 1 only; neuron 1: never; neuron 2: active on every row
    r.observe(torch.tensor([[1.0, 0.0, -3.0], [0.0, 0.0, 2.0]]), sample_rows=2)
    r.observe(torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 1.0]]), sample_rows=1)
    m = r.summarize(r.tensors())
    assert m["size"] == 3 and m["dead_live"] == 1 and m["dead_live_frac"] == 1 / 3
    assert m["death_rate"] == pytest.approx(3 / 6)  # batch 1: neuron 1 dead; batch 2: neurons 0 and 1
    assert m["activation_rate"] == pytest.approx((3 + 1) / (6 + 3))  # sampled rows only
    assert m["max_abs"] == 5.0
    r.reset()
    assert r.tensors() == {}


def test_output_rates_treat_conv_channels_as_neurons():
    y = torch.zeros(4, 3, 5, 5)
    y[2, 0, 4, 4] = 0.5  # channel 0 active at a single position of a single sample
    y[:, 2] = 1.0
    r = OutputRates()
    r.observe(y, sample_rows=4)
    m = r.summarize(r.tensors())
    assert (m["size"], m["dead_live"], m["death_rate"]) == (3, 1, pytest.approx(1 / 3))
    assert m["activation_rate"] == pytest.approx((1 + 100) / y.numel())
    assert neuron_max_abs(y).tolist() == [0.5, 0.0, 1.0]


def test_nonnegative_shortcut_matches_abs():
    y = torch.relu(torch.randn(64, 10))
    assert torch.equal(neuron_max_abs(y, nonnegative=True), neuron_max_abs(y))


def test_gradient_rates_need_zero_row_and_zero_bias():
    w = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    r = GradientRates()
    r.observe(w, torch.tensor([0.0, 2.0, 1.0]), sampled=True)  # neuron 0 dead only
    r.observe(w, torch.tensor([0.0, 0.0, 0.0]))  # bias judged: all dead
    m = r.summarize(r.tensors())
    assert m["grad_death_rate"] == pytest.approx(4 / 6)
    assert m["grad_dead_live"] == 1
    assert m["grad_activation_rate"] == pytest.approx(1 / 6)  # sampled step only
    nobias = GradientRates()
    nobias.observe(w)  # rows judged: neurons 0 and 2 dead
    assert nobias.summarize(nobias.tensors())["grad_death_rate"] == pytest.approx(2 / 3)


def test_cnn_with_dropout_reports_every_activation_and_dropout_layer(digits_cpu):
    torch.manual_seed(0)
    model = SmallCNN()
    probes = ProbeSet(ProbesConfig(histograms=False, dead_exact_every=1, sample_every=1, sample_rows=32))
    probes.attach(model)
    x, y = digits_cpu.train_x[:512], digits_cpu.train_y[:512]
    train_epoch(model, probes, x, y, batch_size=64, lr=0.05, momentum=0.9)
    stats = probes.epoch_stats(1, model, splits(x, y))
    probes.detach()
    layers = stats.layers
    assert list(layers) == ["conv1", "relu1", "drop1", "conv2", "relu2", "drop2", "dense1", "relu3", "drop3",
                            "dense2"]
    assert layers["relu1"]["size"] == 8 and layers["relu2"]["size"] == 16 and layers["relu3"]["size"] == 32
    # ReLU starts near 50% active (monitorch notebook); dropout zeroes a further share of them
    assert 0.25 < layers["relu3"]["activation_rate"] < 0.75
    assert layers["drop3"]["activation_rate"] < layers["relu3"]["activation_rate"]
    for name in ("relu1", "relu2", "relu3"):
        assert {"dead_exact", "dead_live", "death_rate", "grad_death_rate", "saturation", "z_mean"} <= set(layers[name])
    assert {"grad_mean_abs", "grad_l2", "grad_max", "update_ratio_log10", "dist_from_init"} <= set(layers["conv2"])
    assert "grad_death_rate" in layers["dense2"]  # a param layer feeding no activation reports its own
