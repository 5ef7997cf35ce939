"""Activation histograms over a range fitted to the activation (sigmoid 0..1, tanh -1..1) or to
the data, so a bounded activation fills the bins instead of 1-4 of a fixed -4..12 range."""

from __future__ import annotations

import math

import pytest
import torch

from actlab.engine.activations import activation_names, create_activation
from actlab.engine.config import LabConfig
from actlab.engine.events import LayerStats, read_events
from actlab.engine.probes.histograms import activation_bounds, round_up
from actlab.engine.training import TrainingRun


@pytest.mark.parametrize("name,expected", [("sigmoid", (0.0, 1.0)), ("tanh", (-1.0, 1.0)), ("relu", (0.0, None)),
                                           ("elu", (-1.0, None)), ("leakyrelu", (None, None)),
                                           ("relu6", (0.0, 6.0)), ("hardtanh", (-1.0, 1.0))])
def test_bounds_of_known_activations(name, expected):
    assert activation_bounds(create_activation(name)) == expected


@pytest.mark.parametrize("name", activation_names())
def test_every_bound_holds_on_a_brute_force_grid(name):
    """No output on [-1000, 1000] falls outside a bound the function claims."""
    module = create_activation(name)
    low, high = activation_bounds(module)
    with torch.no_grad():
        y = module(torch.linspace(-1000, 1000, 200001)).double()
    if low is not None:
        assert float(y.min()) >= low - 1e-9
        assert float(y.min()) - low < 0.011  # tight: rounded outwards to 0.01 only
    if high is not None:
        assert float(y.max()) <= high + 1e-9
    if low is None:
        assert float(y.min()) < -5  # unbounded below means it does go far down
    if high is None:
        assert float(y.max()) > 5


@pytest.mark.parametrize("value,expected", [(0.0, 0.0), (0.013, 0.02), (3.2, 5.0), (7.0, 10.0), (10.0, 10.0),
                                            (1.0, 1.0), (123.0, 200.0)])
def test_round_up(value, expected):
    assert math.isclose(round_up(value), expected)


def histograms_of(tmp_path, digits_cpu, activation, **overrides):
    config = LabConfig().replace(**{"run.runs_dir": str(tmp_path / activation), "run.device": "cpu",
                                    "data.dataset": "digits", "model.hidden_sizes": [32, 16],
                                    "model.activation": activation, "train.epochs": 1, "train.batch_size": 64,
                                    **overrides})
    result = TrainingRun(config, data=digits_cpu).run()
    assert result.status == "finished"
    return [e.histograms for e in read_events(result.run_dir) if isinstance(e, LayerStats) and e.histograms]


def test_sigmoid_and_tanh_fill_their_own_range(tmp_path, digits_cpu):
    for activation, (low, high) in (("sigmoid", (0.0, 1.0)), ("tanh", (-1.0, 1.0))):
        for hists in histograms_of(tmp_path, digits_cpu, activation):
            hist = hists["act/act1"]
            assert (hist["edges"][0], hist["edges"][-1]) == (low, high)
            used = sum(1 for c in hist["counts"] if c > 0)
            assert used >= 16, f"{activation}: only {used} of 64 bins hold values"


def test_relu_top_is_fitted_to_the_first_pass_and_kept(tmp_path, digits_cpu):
    per_epoch = histograms_of(tmp_path, digits_cpu, "relu")
    assert len(per_epoch) == 2  # init and epoch 1
    first = per_epoch[0]["act/act1"]
    low, high = first["edges"][0], first["edges"][-1]
    assert low == 0.0 and high == round_up(high) and 0 < high < 12.0
    last_bin = first["counts"][-1]
    assert last_bin < 0.01 * sum(first["counts"])  # the fitted top leaves little in the clamped last bin
    assert [h["act/act1"]["edges"] for h in per_epoch] == [first["edges"]] * 2  # comparable across epochs


def test_fixed_range_when_fitting_is_off(tmp_path, digits_cpu):
    for hists in histograms_of(tmp_path, digits_cpu, "sigmoid", **{"probes.act_hist_fit": False}):
        edges = hists["act/act1"]["edges"]
        assert (edges[0], edges[-1]) == (-4.0, 12.0)
