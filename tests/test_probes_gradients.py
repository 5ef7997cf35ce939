"""engine/probes/gradients.py and histograms.py: gradient magnitudes, series, drift, histograms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from actlab.engine.probes import histograms
from actlab.engine.probes.gradients import GradientSeries, grad_stats, init_gradients
from actlab.engine.probes.histograms import FixedHistogram, log10_magnitude
from actlab.engine.probes.weights import WeightDrift

from probe_helpers import relu_mlp


def test_grad_stats_match_direct_computation():
    grads = [torch.randn(30, 20), torch.randn(7) * 1e-4, torch.zeros(3, 3)]
    grads[0][4, 5] = -9.0
    stats = grad_stats(grads)
    for i, g in enumerate(grads):
        assert stats[i, 0] == pytest.approx(float(g.abs().mean()), rel=1e-5, abs=1e-12)
        assert stats[i, 1] == pytest.approx(float(g.norm()), rel=1e-5, abs=1e-12)
        assert stats[i, 2] == pytest.approx(float(g.abs().max()), rel=1e-6, abs=1e-12)
    assert stats[0, 2] == 9.0


def test_series_is_consecutive_bounded_and_summarised():
    s = GradientSeries(["fc1", "out"], torch.device("cpu"), capacity=4, limit=6)
    for step in range(10):  # overflows the device buffer twice; the host keeps the last 6
        s.observe(torch.tensor([[step, 10.0 * step, 100.0 + step], [1.0, 2.0, 3.0]]), step + 1)
    first, series = s.take()
    assert first == 5 and series["fc1"]["grad_mean_abs"] == [4.0, 5, 6, 7, 8, 9]
    assert series["out"]["grad_max"] == [3.0] * 6
    s.observe(torch.tensor([[10.0, 100.0, 110.0], [1.0, 2.0, 3.0]]), 11)
    first, series = s.take()
    assert first == 11 and series["fc1"]["grad_l2"] == [100.0]
    assert s.take() is None
    summary = s.epoch_summary()  # all 11 steps, including the ones dropped from the series
    assert summary["fc1"]["grad_mean_abs"] == pytest.approx(5.0)
    assert summary["fc1"]["grad_max"] == 110.0


def test_weight_drift_update_ratio_and_distance():
    w = torch.ones(4, 25)  # norm 10
    drift = WeightDrift()
    drift.set_initial({"fc1": w})
    drift.epoch_start({"fc1": w})
    with torch.no_grad():
        w[0, 0] += 0.01  # an update of norm 0.01 in the epoch
    values = drift.tensors({"fc1": w})["fc1"]
    m = WeightDrift.summarize(values)
    assert m["update_ratio_log10"] == pytest.approx(math.log10(0.01 / float(w.norm())), rel=1e-4)
    assert m["dist_from_init"] == pytest.approx(0.01, rel=1e-4)
    drift.epoch_start({"fc1": w})
    assert "update_ratio_log10" not in WeightDrift.summarize(drift.tensors({"fc1": w})["fc1"])  # no update


def test_init_gradients_leave_grad_untouched_and_match_backward():
    model = relu_mlp()
    x, y = torch.randn(32, 20), torch.randint(0, 3, (32,))
    weights = [model.layers.fc1.weight, model.layers.out.weight]
    grads = init_gradients(model, x, y, weights)
    assert all(p.grad is None for p in model.parameters()) and model.training
    F.cross_entropy(model(x), y).backward()
    assert torch.allclose(grads[0], weights[0].grad) and torch.allclose(grads[1], weights[1].grad)


def test_histogram_counts_everything_with_out_of_range_clamped(monkeypatch):
    monkeypatch.setattr(histograms, "_CHUNK", 7)  # several histc calls per add
    h = FixedHistogram(-1.0, 1.0, 4)
    values = torch.tensor([-5.0, -1.0, -0.75, -0.25, 0.0, 0.1, 0.5, 0.99, 1.0, 3.0, float("nan")])
    h.add(values)
    h.add(torch.tensor([0.6]))
    out = h.as_dict(h.counts)
    assert out["edges"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert out["counts"] == [3.0, 1.0, 2.0, 5.0]  # NaN ignored, -5 and 3 clamped into the edge bins
    with pytest.raises(ValueError):
        FixedHistogram(1.0, 1.0, 3)


def test_log10_magnitude_puts_zeros_below_any_range():
    v = log10_magnitude(torch.tensor([0.0, 1e-5, -0.1]))
    assert v[0] < -29 and v[1] == pytest.approx(-5) and v[2] == pytest.approx(-1)
