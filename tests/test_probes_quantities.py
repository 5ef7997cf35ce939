"""engine/probes/base.py and schedules.py: the Quantity protocol, the list the ProbeSet is
made of, and the schedules that say which steps each quantity observes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from scipy import stats

from actlab.engine import metrics
from actlab.engine.config import ProbesConfig
from actlab.engine.probes import QUANTITIES, ProbeSet, Quantity, QuantityBase, build_probes, probe_set
from actlab.engine.probes.schedules import Clock, EveryNth, InitOnly, StratifiedSample

from probe_helpers import relu_mlp, splits, train_epoch

TOGGLES = {"rates": "OutputRates", "grad_rates": "GradientRates", "saturation": "Saturation",
           "gradients": "Gradients", "weights": "Weights", "histograms": "Histograms", "nonfinite": "NonfiniteWatch"}


def test_every_quantity_implements_the_protocol_and_each_toggle_removes_one():
    every = ProbeSet(ProbesConfig())
    names = [type(q).__name__ for q in every.quantities]
    assert names == ["DeadNeurons", *TOGGLES.values()] and len(QUANTITIES) == len(names)
    for q in every.quantities:
        assert isinstance(q, Quantity) and type(q).__doc__, type(q).__name__
    for key, name in TOGGLES.items():
        left = [type(q).__name__ for q in ProbeSet(ProbesConfig(**{key: False})).quantities]
        assert left == [n for n in names if n != name], key


class BatchCount(QuantityBase):
    """A new quantity: the training rows each activation layer saw on every step."""

    def __init__(self) -> None:
        super().__init__(EveryNth(1))
        self.rows: dict[str, int] = {}

    @classmethod
    def from_config(cls, config, clock):
        return cls()

    def watches(self, layer):
        return layer.kind == metrics.ACTIVATION

    def epoch_start(self, epoch):
        self.rows = {}

    def forward(self, layer, z, y):
        self.rows[layer.name] = self.rows.get(layer.name, 0) + y.shape[0]

    def report(self, moment, epoch, report):
        for name, rows in self.rows.items():
            report.metrics(name)["rows_seen"] = rows


def test_a_new_quantity_is_one_class_and_one_line(monkeypatch):
    monkeypatch.setattr(probe_set, "QUANTITIES", probe_set.QUANTITIES + (BatchCount.from_config,))
    probes = build_probes(ProbesConfig(histograms=False))
    model = relu_mlp(sizes=(20, 16, 8))
    x, y = torch.randn(96, 20), torch.randint(0, 3, (96,))
    probes.attach(model)
    train_epoch(model, probes, x, y, batch_size=32, lr=0.01)
    stats = probes.epoch_stats(1, model, splits(x, y))
    probes.detach()
    assert stats.layers["act1"]["rows_seen"] == stats.layers["act2"]["rows_seen"] == 96
    assert stats.kinds["act1"] == metrics.ACTIVATION and "death_rate" in stats.layers["act1"]


def test_every_nth_and_init_only():
    every = EveryNth(5)
    every.start(1, 17, seed=0)
    assert [s for s in range(17) if every(s)] == [0, 5, 10, 15]
    init = InitOnly()
    init.start(0, 1, seed=0)
    assert init(0)
    init.start(3, 10, seed=0)
    assert not any(init(s) for s in range(10))


@pytest.mark.parametrize("steps,every", [(50, 64), (195, 64), (16, 1), (7, 3), (1000, 64)])
def test_stratified_sample_takes_one_step_per_stretch_and_weights_cover_the_epoch(steps, every):
    s = StratifiedSample(every)
    s.start(3, steps, seed=11)
    picked = [step for step in range(steps) if s(step)]
    stretches = StratifiedSample.stretches(steps, every, 4)
    assert len(picked) == len(stretches) == min(steps, max(4, -(-steps // every)))
    for (lo, hi), step in zip(stretches, picked):
        assert lo <= step < hi and s.weight(step) == hi - lo
    assert sum(s.weight(step) for step in picked) == steps
    again = StratifiedSample(every)
    again.start(3, steps, seed=11)
    assert [step for step in range(steps) if again(step)] == picked  # same seed and epoch: same steps


def test_stratified_sample_is_uniform_within_stretches_and_leaves_torch_alone():
    """Over many epochs each step of a stretch is drawn equally often (chi-square), and the
    draws never touch torch's random state."""
    torch.manual_seed(5)
    state = torch.get_rng_state()
    steps, every = 50, 64  # k = 4 stretches of 12 or 13 steps
    s = StratifiedSample(every)
    counts = torch.zeros(steps)
    epochs = 4000
    for epoch in range(epochs):
        s.start(epoch, steps, seed=1)
        for step in range(steps):
            if s(step):
                counts[step] += 1
    assert torch.equal(torch.get_rng_state(), state)
    for lo, hi in StratifiedSample.stretches(steps, every, 4):
        observed = counts[lo:hi].numpy()
        assert observed.sum() == epochs
        assert stats.chisquare(observed).pvalue > 1e-4, (lo, hi, observed)
    # the old schedule's step 0 is no more likely than any other step of its stretch
    assert counts[0] < 2 * epochs / 12


def test_unknown_epoch_length_falls_back_to_blocks_of_every_then_to_the_last_length():
    s = StratifiedSample(8, min_batches=1)
    s.start(1, None, seed=0)
    picked = [step for step in range(24) if s(step)]
    assert len(picked) == 3 and [p // 8 for p in picked] == [0, 1, 2]
    s.start(2, 24, seed=0)
    s.start(3, None, seed=0)  # the length of the previous known epoch
    assert s.known is False and sum(s.weight(step) for step in range(24) if s(step)) == 24


def test_clock_is_shared_and_seeded_from_the_run_id():
    probes = ProbeSet(ProbesConfig())
    probes.set_run_id("run-a")
    seed_a = probes.clock.seed
    probes.set_run_id("run-b")
    assert seed_a != probes.clock.seed and isinstance(probes.clock, Clock)
    assert dataclasses.fields(Clock)  # a plain dataclass the quantities read
