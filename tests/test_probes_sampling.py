"""engine/probes: a module run several times in a forward pass counts every call, and the
activation rate is estimated from random batches spread over the epoch (checked against
brute-force counts and the exact rate of an epoch whose rate drifts)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from actlab.engine.config import ProbesConfig
from actlab.engine.probes import HookRegistry, ProbeSet, exact_dead_counts
from actlab.engine.probes.schedules import StratifiedSample

from probe_helpers import relu_mlp, splits, train_epoch

ALL_ROWS = ProbesConfig(sample_every=1, sample_rows=10_000, dead_exact_every=1, histograms=False, gradients=False,
                        weights=False, saturation=False)


class ReusedReLU(nn.Module):
    """One nn.ReLU applied after fc1 and again after fc2 (16 and 12 units)."""

    def __init__(self, bias1: float = 0.0, bias2: float = 0.0, dead2=()) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act, self.fc2, self.out = nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 12), nn.Linear(12, 3)
        with torch.no_grad():
            self.fc1.bias.add_(bias1)
            self.fc2.bias.add_(bias2)
            self.fc2.bias[list(dead2)] = -1e4

    def forward(self, x):
        return self.out(self.act(self.fc2(self.act(self.fc1(x)))))

    def hidden(self, x):
        h1 = torch.relu(self.fc1(x))
        return h1, torch.relu(self.fc2(h1))


def _brute_force(model, x, batch_size):
    """Activation rate, death rate and live dead count of the reused module by hand: the units
    of both calls side by side."""
    nonzero = total = 0
    dead_share, dead_every = [], None
    with torch.no_grad():
        for b in range(x.shape[0] // batch_size):
            h1, h2 = model.hidden(x[b * batch_size:(b + 1) * batch_size])
            nonzero += int((h1 != 0).sum() + (h2 != 0).sum())
            total += h1.numel() + h2.numel()
            dead = torch.cat([(h1 == 0).all(0), (h2 == 0).all(0)])
            dead_share.append(int(dead.sum()) / dead.numel())
            dead_every = dead if dead_every is None else dead_every & dead
        h1, h2 = model.hidden(x)
        exact = int((h1 == 0).all(0).sum() + (h2 == 0).all(0).sum())
    return {"activation_rate": nonzero / total, "death_rate": statistics.fmean(dead_share),
            "dead_live": int(dead_every.sum()), "dead_exact": exact, "size": 16 + 12}


@pytest.mark.parametrize("bias1,bias2,dead2", [(10.0, 10.0, ()), (0.0, 0.0, ()), (-0.2, 0.1, (0, 5, 7))])
def test_a_reused_module_counts_every_call(bias1, bias2, dead2):
    model = ReusedReLU(bias1, bias2, dead2)
    x, y = torch.rand(384, 20) * 2 - 1, torch.randint(0, 3, (384,))
    probes = ProbeSet(ALL_ROWS)
    probes.attach(model)
    train_epoch(model, probes, x, y, batch_size=64)  # lr 0: the weights stay those of the brute force
    stats = probes.epoch_stats(1, model, splits(x, y))
    probes.detach()
    got = stats.layers["act"]
    brute = _brute_force(model, x, 64)
    assert got["activation_rate"] == pytest.approx(brute["activation_rate"], abs=1e-12)
    assert got["death_rate"] == pytest.approx(brute["death_rate"], abs=1e-12)
    assert (got["size"], got["dead_live"], got["dead_exact"]) == (brute["size"], brute["dead_live"],
                                                                  brute["dead_exact"])
    assert exact_dead_counts(model, x, batch_size=100) == {"act": brute["dead_exact"]}  # chunks and calls
    if bias1 == 10.0:  # every output active: the old bookkeeping said 0.5
        assert got["activation_rate"] == 1.0 and got["death_rate"] == 0.0
    if dead2:
        assert brute["dead_exact"] >= len(dead2)


def _drifting_epoch(seed: str, *, steps=64, batch=32, every=16, start=-0.6, end=0.6):
    """One epoch in which fc1's biases rise step by step, so act1's rate drifts from ~5% to
    ~95%; returns (estimate, exact rate, per-step exact rates)."""
    model = relu_mlp(sizes=(20, 64), seed=1)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(steps * batch, 20, generator=g) * 2 - 1, torch.randint(0, 3, (steps * batch,), generator=g)
    with torch.no_grad():
        model.layers.fc1.bias.fill_(start)
    per_step: list[float] = []

    def count(module, inputs, output):
        if module.training and torch.is_grad_enabled():
            per_step.append(float((output != 0).float().mean()))

    def drift(b):
        with torch.no_grad():
            model.layers.fc1.bias.add_((end - start) / (steps - 1))

    probes = ProbeSet(ProbesConfig(sample_every=every, sample_rows=batch, histograms=False, gradients=False,
                                   weights=False, saturation=False, grad_rates=False, nonfinite=False))
    probes.set_run_id(seed)
    probes.attach(model)
    with HookRegistry() as hooks:
        hooks.forward(model.layers.act1, count)
        train_epoch(model, probes, x, y, batch_size=batch, on_batch=drift)
    stats = probes.epoch_stats(1, model, splits(x, y))
    probes.detach()
    return stats.layers["act1"]["activation_rate"], statistics.fmean(per_step), per_step


def test_activation_rate_of_a_drifting_epoch_matches_the_exact_rate():
    steps, every = 64, 16
    runs = [_drifting_epoch(f"run-{i}", steps=steps, every=every) for i in range(30)]
    exact, per_step = runs[0][1], runs[0][2]
    assert per_step[0] < 0.15 and per_step[-1] > 0.85  # the rate really drifts
    stretches = StratifiedSample.stretches(steps, every, 4)
    # each drawn step stands for its stretch: the error is a weighted mean of within-stretch deviations
    bound = max(max(per_step[lo:hi]) - min(per_step[lo:hi]) for lo, hi in stretches)
    predicted_sd = math.sqrt(sum(((hi - lo) / steps) ** 2 * statistics.pvariance(per_step[lo:hi])
                                 for lo, hi in stretches))
    errors = [estimate - exact for estimate, exact_rate, _ in runs if exact_rate == exact]
    assert len(errors) == 30  # the same epoch every time: only the drawn steps differ
    assert max(abs(e) for e in errors) <= bound
    assert abs(statistics.fmean(errors)) < 3 * predicted_sd / math.sqrt(len(errors)) + 1e-9  # unbiased
    assert 0.6 * predicted_sd < statistics.stdev(errors) < 1.5 * predicted_sd  # the documented error
    # the schedule this replaced (batches 0, 16, 32, 48) leans to each stretch's start
    old = statistics.fmean(per_step[s] for s in range(0, steps, every))
    assert exact - old > 2 * predicted_sd


def test_a_short_epoch_is_sampled_across_its_length():
    """50 steps with sample_every = 64: four random batches, not only the first."""
    seen = set()
    for i in range(12):
        s = StratifiedSample(64)
        s.start(1, 50, seed=i)
        picked = [step for step in range(50) if s(step)]
        assert len(picked) == 4 and picked[-1] >= 37
        seen.update(picked)
    assert len(seen) > 20
