"""engine/probes: dead-neuron counts, exact (full pass) and live (training batches), and
gradient-based death, checked against constructions and brute force."""

from __future__ import annotations

import torch
from torch import nn

from actlab.engine.config import ProbesConfig
from actlab.engine.probes import ExactDead, ProbeSet, exact_dead_counts

from probe_helpers import SmallCNN, relu_mlp, splits, train_epoch

ONLY_DEAD = ProbesConfig(rates=True, grad_rates=True, saturation=False, gradients=False, weights=False,
                         histograms=False, nonfinite=False, sample_every=1, dead_exact_every=1)


def _inputs(n=512, d=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g) * 2 - 1, torch.randint(0, 3, (n,), generator=g)


def _brute_force_dead(model, x) -> dict[str, int]:
    """Walk the Sequential by hand and count neurons zero on every row."""
    counts, h = {}, x
    with torch.no_grad():
        for name, module in model.layers.named_children():
            h = module(h)
            if name.startswith("act"):
                counts[name] = int((h == 0).all(0).sum())
    return counts


def test_neurons_dead_by_construction_are_counted_exactly():
    dead = {1: [0, 5, 7], 2: [3], 3: [0, 1, 2, 3, 4, 15]}
    model = relu_mlp(dead=dead)
    x, y = _inputs()
    counts = exact_dead_counts(model, x, batch_size=100)  # several chunks
    brute = _brute_force_dead(model, x)
    assert counts == brute
    for layer, idx in dead.items():  # at least the constructed ones; brute force has the rest
        assert counts[f"act{layer}"] >= len(idx)
    # with the constructed neurons revived, exactly that many fewer are dead
    alive = relu_mlp()
    assert exact_dead_counts(alive, x) == _brute_force_dead(alive, x)


def test_construction_with_no_natural_dead_neurons_gives_exact_numbers():
    model = relu_mlp(sizes=(20, 64, 64), dead={1: [1, 2], 2: [10, 20, 30]})
    x, _ = _inputs(n=2048)
    assert _brute_force_dead(relu_mlp(sizes=(20, 64, 64)), x) == {"act1": 0, "act2": 0}
    assert exact_dead_counts(model, x) == {"act1": 2, "act2": 3}
    stats = ProbeSet(ProbesConfig(histograms=False)).init_stats(model, splits(x, torch.zeros(2048, dtype=torch.long)))
    assert stats.epoch == 0
    assert (stats.layers["act1"]["dead_exact"], stats.layers["act2"]["dead_exact"]) == (2, 3)
    assert stats.layers["act2"]["dead_exact_frac"] == 3 / 64
    assert stats.layers["act1"]["size"] == 64


def test_exact_pass_matches_brute_force_on_a_deep_narrow_net():
    torch.manual_seed(3)
    model = relu_mlp(sizes=(20, 16, 16, 16, 16, 16, 16), seed=3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.bias.sub_(0.3)  # push towards death so that several layers have some
    x, _ = _inputs(n=3000)
    counts = exact_dead_counts(model, x, batch_size=256)
    assert counts == _brute_force_dead(model, x)
    assert sum(counts.values()) > 0


def test_exact_dead_on_conv_channels_matches_brute_force():
    model = SmallCNN()
    with torch.no_grad():
        model.conv2.bias[[1, 4]] = -1e4
    x = torch.rand(300, 64)
    counts = exact_dead_counts(model, x, batch_size=128)
    with torch.no_grad():
        h1 = model.relu1(model.conv1(x.view(-1, 1, 8, 8)))
        h2 = model.relu2(model.conv2(h1))
        h3 = model.relu3(model.dense1(torch.nn.functional.max_pool2d(h2, 2).flatten(1)))
    brute = {"relu1": int((h1 == 0).all(dim=(0, 2, 3)).sum()), "relu2": int((h2 == 0).all(dim=(0, 2, 3)).sum()),
             "relu3": int((h3 == 0).all(0).sum())}
    assert counts == brute and counts["relu2"] >= 2
    assert model.training  # the pass restored the mode it found


def test_exact_dead_accumulates_over_chunks():
    d = ExactDead()
    d.observe(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    d.observe(torch.tensor([[0.0, 0.0, -2.0]]))
    assert ExactDead.summarize(d.tensors()) == {"size": 3, "dead_exact": 1, "dead_exact_frac": 1 / 3}


def test_live_and_exact_agree_when_weights_do_not_change():
    model = relu_mlp(sizes=(20, 32, 32, 16), dead={2: [4, 9]}, seed=5)
    with torch.no_grad():
        model.layers.fc3.bias.sub_(0.5)  # some neurons dead on some batches only
    x, y = _inputs(n=640)
    probes = ProbeSet(ONLY_DEAD)
    probes.attach(model)
    train_epoch(model, probes, x, y, batch_size=64, lr=0.0)  # every row seen once, weights fixed
    stats = probes.epoch_stats(1, model, splits(x, y))
    probes.detach()
    for name in ("act1", "act2", "act3"):
        assert stats.layers[name]["dead_live"] == stats.layers[name]["dead_exact"], name
    assert stats.layers["act2"]["dead_exact"] >= 2


def test_live_count_sees_only_training_batches_and_resets_each_epoch():
    model = relu_mlp(sizes=(20, 16), dead={1: [0]})
    x, y = _inputs(n=128)
    probes = ProbeSet(ONLY_DEAD)
    probes.attach(model)
    train_epoch(model, probes, x, y, batch_size=32)
    model.eval()
    with torch.no_grad():
        model(x)  # a validation pass: not a training batch
    stats = probes.epoch_stats(1, model, splits(x, y))
    assert stats.layers["act1"]["dead_live"] == 1
    with torch.no_grad():
        model.layers.fc1.bias[0] = 10.0  # revived
    train_epoch(model, probes, x, y, batch_size=32, epoch=2)
    assert probes.epoch_stats(2, model, splits(x, y)).layers["act1"]["dead_live"] == 0
    probes.detach()


def test_gradient_and_output_death_agree_on_relu():
    model = relu_mlp(sizes=(20, 48, 32), dead={1: [2, 3]}, seed=11)
    with torch.no_grad():
        model.layers.fc2.bias.sub_(0.15)  # neurons dead on some batches, alive on others
    x, y = _inputs(n=256)
    probes = ProbeSet(ONLY_DEAD)
    probes.attach(model)
    per_batch = []

    def record(b):  # neurons of act2 dead on each batch so far, from outputs and from gradients
        probes.record.fold()  # fold the ring's rows in now rather than every 64 steps
        zeros = probes.record.zeros
        per_batch.append((int(zeros.counts[zeros.slices[("out", "act2")]].sum()),
                          int(zeros.counts[zeros.slices[("grad", "fc2")]].sum())))

    train_epoch(model, probes, x, y, batch_size=8, lr=0.05, on_batch=record)
    stats = probes.epoch_stats(1, model, splits(x, y))
    probes.detach()
    for name in ("act1", "act2"):
        layer = stats.layers[name]
        assert layer["death_rate"] == layer["grad_death_rate"], name
        assert layer["dead_live"] == layer["grad_dead_live"], name
    assert 0 < stats.layers["act2"]["death_rate"] < 1
    assert all(out == grad for out, grad in per_batch)


def test_epoch_end_makes_no_pass_of_its_own_unless_the_exact_count_is_asked_for():
    """Probes cheap by default: per epoch the live count; histograms ride on the validation
    pass; the exact pass over the split only every `dead_exact_every` epochs when asked."""
    from actlab.engine.probes import HookRegistry

    model = relu_mlp(sizes=(20, 32, 16), seed=2)
    x, y = _inputs(n=256)
    val = x[:100]
    for every, passes in ((0, {1: 0, 2: 0}), (2, {1: 0, 2: 1})):
        probes = ProbeSet(ProbesConfig(dead_exact_every=every))
        probes.attach(model)
        for epoch in (1, 2):
            train_epoch(model, probes, x, y, batch_size=32, epoch=epoch)
            validate = epoch == 2
            if validate:  # the loop's validation pass (eval mode, no grad)
                model.eval()
                with torch.no_grad():
                    model(val)
                model.train()
            calls = []
            with HookRegistry() as hooks:
                hooks.forward(model.layers.fc1, lambda *a: calls.append(1))
                stats = probes.epoch_stats(epoch, model, splits(x, y))
            assert len(calls) == passes[epoch], (every, epoch)
            assert ("dead_exact" in stats.layers["act1"]) == bool(passes[epoch])
            assert "dead_live" in stats.layers["act1"]
            if validate:
                assert sum(stats.histograms["act/act1"]["counts"]) == 100 * 32  # the validation rows
            else:
                assert not stats.histograms
        probes.detach()
