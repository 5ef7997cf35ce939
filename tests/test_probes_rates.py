"""engine/probes/rates.py: monitorch-style activation and death rates, from outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from actlab.engine.config import ProbesConfig
from actlab.engine.probes import ProbeSet
from actlab.engine.probes.dead import live_dead_metrics
from actlab.engine.probes.grad_rates import gradient_rate_metrics
from actlab.engine.probes.neurons import SampledNonzero, ZeroCounts, neuron_gradient, neuron_max_abs
from actlab.engine.probes.rates import output_rate_metrics

from actlab.engine.probes.step_ring import StepRing

from probe_helpers import SmallCNN, splits, train_epoch


def _output_rates(batches, sample_rows):
    """The probes' bookkeeping for one layer: per-batch maxima into ZeroCounts, sampled rows."""
    zeros, sampled = ZeroCounts(), SampledNonzero(["a"])
    for batch, rows in zip(batches, sample_rows):
        m = neuron_max_abs(batch)
        zeros.add(m, (("a", m.numel()),))
        sampled.observe("a", batch[:rows])
        sampled.end_step()
    values = {**zeros.tensors(), **sampled.tensors()}
    counts = zeros.segment(values, "a")
    return output_rate_metrics(counts, zeros.steps, sampled.share(values, "a")) | live_dead_metrics(counts, zeros.steps)


def test_output_rates_on_hand_made_batches():
    # neuron 0: active in batch 1 only; neuron 1: never; neuron 2: active on every row
    batches = [torch.tensor([[1.0, 0.0, -3.0], [0.0, 0.0, 2.0]]), torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 1.0]])]
    m = _output_rates(batches, [2, 1])
    assert m["size"] == 3 and m["dead_live"] == 1 and m["dead_live_frac"] == 1 / 3
    assert m["death_rate"] == pytest.approx(3 / 6)  # batch 1: neuron 1 dead; batch 2: neurons 0 and 1
    assert m["activation_rate"] == pytest.approx((3 + 1) / (6 + 3))  # sampled rows only


def test_zero_counts_keep_segments_apart_and_restart_on_a_new_layout():
    z = ZeroCounts()
    layout = (("a", 2), ("b", 3))
    z.add(torch.tensor([0.0, 1.0, 0.0, 0.0, 3.0]), layout)
    z.add(torch.tensor([0.0, 0.0, 0.0, 2.0, 3.0]), layout)
    values = z.tensors()
    assert z.segment(values, "a").tolist() == [2, 1] and z.segment(values, "b").tolist() == [2, 1, 0]
    z.add(torch.tensor([0.0, 0.0, 5.0, 0.0]), (("b", 3), ("c", 1)))  # a hot swap changed the layout
    values = z.tensors()
    assert z.steps == 3 and z.segment(values, "a") is None
    assert z.segment(values, "b").tolist() == [3, 2, 0] and z.segment(values, "c").tolist() == [1]
    z.reset()
    assert z.tensors() == {}


def test_output_rates_treat_conv_channels_as_neurons():
    y = torch.zeros(4, 3, 5, 5)
    y[2, 0, 4, 4] = 0.5  # channel 0 active at a single position of a single sample
    y[:, 2] = 1.0
    m = _output_rates([y], [4])
    assert (m["size"], m["dead_live"], m["death_rate"]) == (3, 1, pytest.approx(1 / 3))
    assert m["activation_rate"] == pytest.approx((1 + 100) / y.numel())
    assert neuron_max_abs(y).tolist() == [0.5, 0.0, 1.0]


def test_nonnegative_shortcut_matches_abs():
    y = torch.relu(torch.randn(64, 10))
    assert torch.equal(neuron_max_abs(y, nonnegative=True), neuron_max_abs(y))


def test_gradient_rates_need_zero_row_and_zero_bias():
    w = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    assert neuron_gradient(w, None).tolist() == [0.0, 1.0, 0.0]  # no bias: judged by the rows
    b = torch.tensor([0.0, 2.0, 1.0])
    assert neuron_gradient(w, b) is not None and neuron_gradient(w, b).tolist() == [0.0, 2.0, 1.0]
    zeros, sampled = ZeroCounts(), SampledNonzero(["fc"])
    for bias in (b, torch.zeros(3)):  # step 2: the bias says all three are dead
        zeros.add(neuron_gradient(w, bias), (("fc", 3),))
    sampled.observe("fc", w)
    sampled.end_step()
    values = {**zeros.tensors(), **sampled.tensors()}
    m = gradient_rate_metrics(zeros.segment(values, "fc"), zeros.steps, sampled.share(values, "fc"))
    assert m["grad_death_rate"] == pytest.approx(4 / 6) and m["grad_dead_live"] == 1
    assert m["grad_activation_rate"] == pytest.approx(1 / 6)


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


def test_step_ring_hands_every_row_over_once_even_when_wrapped():
    ring = StepRing(capacity=4)
    layout = (("a", 2), ("b", 1))
    taken = []
    for step in range(11):
        if ring.full():
            taken.append(ring.take_unread().clone())  # a view: valid until the next write
        ring.write([torch.tensor([step, 0.0]), torch.tensor([-step * 1.0])], layout)
    taken.append(ring.take_unread())
    rows = torch.cat(taken)
    assert rows[:, 0].tolist() == list(range(11)) and rows[:, 2].tolist() == [-s for s in range(11)]
    assert ring.take_unread() is None
    assert ring.recent()[:, 0].tolist() == [7, 8, 9, 10]  # what the non-finite search sees
    assert ring.slices() == {"a": slice(0, 2), "b": slice(2, 3)}
