"""The reference's initialisation diagnostics on real FashionMNIST (shared/REFERENCE.md section 3).

Forward passes and one gradient batch only: seconds, not minutes. Per-layer numbers are in
README.md ("Per-layer probes") next to the reference's.
"""

from __future__ import annotations

import pytest

from actlab.engine.config import ProbesConfig
from actlab.engine.model import MLPConfig, build_model
from actlab.engine.probes import ProbeSet, exact_dead_counts

pytestmark = pytest.mark.shared

DEEP = (256, 256, 256, 256, 256, 128, 128, 128, 128, 128)


def test_deep_relu_has_dead_quarters_at_init_and_deep_swish_none(fashion_cpu):
    x = fashion_cpu.train_x
    assert x.shape[0] == 50000
    relu = exact_dead_counts(build_model(MLPConfig(hidden_sizes=DEEP, activation="relu"), seed=42), x)
    assert list(relu) == [f"act{i}" for i in range(1, 11)]
    for i in range(6, 11):
        assert relu[f"act{i}"] >= 0.25 * DEEP[i - 1], relu
    swish = exact_dead_counts(build_model(MLPConfig(hidden_sizes=DEEP, activation="swish"), seed=42), x)
    assert swish == {f"act{i}": 0 for i in range(1, 11)}


def test_sigmoid_first_layer_gradients_vanish_at_init(fashion_cpu):
    model = build_model(MLPConfig(activation="sigmoid"), seed=42)
    config = ProbesConfig(dead_exact_every=0, histograms=False)
    stats = ProbeSet(config).init_stats(model, fashion_cpu)
    first, last = stats.layers["fc1"]["grad_mean_abs"], stats.layers["out"]["grad_mean_abs"]
    assert first * 100 <= last, (first, last)
    relu = ProbeSet(config).init_stats(build_model(MLPConfig(activation="relu"), seed=42), fashion_cpu)
    assert relu.layers["fc1"]["grad_mean_abs"] * 100 > relu.layers["out"]["grad_mean_abs"]  # ReLU keeps them
