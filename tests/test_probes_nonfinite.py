"""engine/probes/nonfinite.py: the first layer, forward or backward, where NaN/inf appears."""

from __future__ import annotations

import torch
from torch import nn

from actlab.engine.config import LabConfig, ProbesConfig
from actlab.engine.probes import ProbeSet, build_probes
from actlab.engine.training import TrainingRun

from probe_helpers import relu_mlp, train_epoch


class Poisonable(nn.ReLU):
    """ReLU (found as an activation by its type) that returns NaN once `poison` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.poison = False

    def forward(self, x):
        y = torch.relu(x)
        return y * float("nan") if self.poison else y


class _NanGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


class BadBackward(nn.ReLU):
    def forward(self, x):
        return _NanGrad.apply(torch.relu(x))


ONLY_NONFINITE = ProbesConfig(rates=False, grad_rates=False, saturation=False, gradients=False, weights=False,
                              histograms=False, nonfinite=True, dead_exact_every=0)


def _model_with(act2: nn.Module) -> nn.Module:
    model = relu_mlp(sizes=(20, 16, 16, 8))
    model.layers.act2 = act2
    return model


def test_forward_nan_is_found_in_the_layer_where_it_first_appears():
    model = _model_with(Poisonable())
    probes = ProbeSet(ONLY_NONFINITE)
    probes.attach(model)
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    train_epoch(model, probes, x, y, batch_size=16, lr=0.01)
    assert probes.nonfinite_layer() is None
    model.layers.act2.poison = True

    def keep_going(b):  # after the poisoned step every later layer is NaN too; the first stays
        model.layers.act2.poison = b == 0

    train_epoch(model, probes, x, y, batch_size=16, lr=0.01, on_batch=keep_going, epoch=2)
    assert probes.nonfinite_layer() == "act2 (forward)"
    probes.detach()


def test_backward_only_nan_is_reported_as_backward():
    model = _model_with(BadBackward())
    probes = ProbeSet(ONLY_NONFINITE)
    probes.attach(model)
    train_epoch(model, probes, torch.randn(32, 20), torch.randint(0, 3, (32,)), batch_size=16)
    assert probes.nonfinite_layer() == "fc2 (backward)"  # act2's backward poisons fc2's gradient first
    probes.detach()


def test_a_diverging_run_names_a_layer(tmp_path, digits_cpu):
    config = LabConfig().replace(**{"run.runs_dir": str(tmp_path), "run.device": "cpu", "data.dataset": "digits",
                                    "model.hidden_sizes": [32], "train.lr": 1e9, "train.epochs": 1,
                                    "model.activation": "elu", "train.batch_size": 32})
    result = TrainingRun(config, data=digits_cpu, probes=build_probes(config.probes)).run()
    assert result.status == "diverged"
    assert "(forward)" in result.message or "(backward)" in result.message, result.message
