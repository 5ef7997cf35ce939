"""engine/probes/saturation.py: f'(z) per activation, saturation share, z statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from actlab.engine.activations import activation_names, create_activation
from actlab.engine.probes.saturation import SaturationSums, derivative
from actlab.engine.probes.hooks import HookRegistry


@pytest.mark.parametrize("name", activation_names())
def test_derivative_matches_autograd_for_every_registry_activation(name):
    module = create_activation(name)
    z = torch.cat([torch.linspace(-30, 30, 601), torch.randn(399) * 3]).reshape(10, -1)
    leaf = z.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(module(leaf).sum(), leaf)
    with torch.no_grad():
        y = module(z)
    got = derivative(module, z, y)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4), name
    assert all(p.grad is None for p in module.parameters())


def test_derivative_of_torch_modules_and_no_hook_reentry():
    calls = []
    module = nn.SiLU()
    with HookRegistry() as hooks:
        hooks.forward(module, lambda *a: calls.append(1))
        z = torch.randn(5, 7)
        d = derivative(module, z, module(z))
    assert len(calls) == 1  # the autograd path called forward(), not the hooked __call__
    s = torch.sigmoid(z)
    assert torch.allclose(d, s * (1 + z * (1 - s)), atol=1e-6)
    assert torch.allclose(derivative(nn.Tanh(), z, torch.tanh(z)), 1 - torch.tanh(z) ** 2)


def test_saturation_share_and_z_moments():
    z = torch.tensor([[0.0, 20.0, -20.0, 1.0], [-1.0, 30.0, 2.0, -8.0]])
    s = SaturationSums(threshold=1e-3)
    sig = nn.Sigmoid()
    s.observe(sig, z, sig(z))
    m = s.summarize(s.tensors())
    d = torch.sigmoid(z) * (1 - torch.sigmoid(z))
    assert m["saturation"] == pytest.approx(float((d < 1e-3).float().mean()))  # 20, -20, 30, -8
    assert m["saturation"] == pytest.approx(4 / 8)
    assert m["z_mean"] == pytest.approx(float(z.mean()))
    assert m["z_std"] == pytest.approx(float(z.std(unbiased=False)), rel=1e-6)


def test_relu_saturation_is_the_share_of_non_positive_inputs():
    z = torch.randn(64, 32)
    s = SaturationSums()
    s.observe(nn.ReLU(), z, torch.relu(z))
    assert s.summarize(s.tensors())["saturation"] == pytest.approx(float((z <= 0).float().mean()))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_saturation_is_reported_where_it_occurs(activation, scale):
    """Nets driven into saturation by a large init scale report it, matching a brute-force
    count of |f'(z)| < threshold (f' from autograd in float64) over every training row."""
    from actlab.engine.config import ProbesConfig
    from actlab.engine.model import MLPConfig, build_model
    from actlab.engine.probes import ProbeSet

    from probe_helpers import splits, train_epoch

    model = build_model(MLPConfig(input_size=20, num_classes=3, hidden_sizes=(32, 24), activation=activation), seed=0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(scale)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(256, 20, generator=g), torch.randint(0, 3, (256,), generator=g)
    zs: dict[str, list[torch.Tensor]] = {"act1": [], "act2": []}
    probes = ProbeSet(ProbesConfig(sample_every=1, sample_rows=10_000, saturation_threshold=1e-3, rates=False,
                                   grad_rates=False, gradients=False, weights=False, histograms=False,
                                   nonfinite=False, dead_exact_every=0))
    probes.attach(model)
    with HookRegistry() as hooks:
        for name in zs:
            hooks.forward(getattr(model.layers, name),
                          lambda m, i, o, name=name: zs[name].append(i[0].detach().double().clone()))
        train_epoch(model, probes, x, y, batch_size=64, lr=0.5)  # weights move: z is taken as the probes see it
    stats = probes.epoch_stats(1, model, splits(x, y))
    probes.detach()
    f = torch.sigmoid if activation == "sigmoid" else torch.tanh
    for name, parts in zs.items():
        z = torch.cat(parts).requires_grad_(True)
        (slope,) = torch.autograd.grad(f(z).sum(), z)
        brute = float((slope.abs() < 1e-3).double().mean())
        got = stats.layers[name]
        assert got["saturation"] == pytest.approx(brute, abs=2e-3), (name, brute)
        assert got["z_std"] == pytest.approx(float(z.detach().std(unbiased=False)), rel=1e-4)
        if scale > 1:
            assert brute > 0.3, (name, brute)  # saturation really occurs, and is reported
        else:
            assert brute < 0.01
