"""engine/benchmark.py: the shared measuring code of `actlab bench` and bench/*.py, on tiny sizes.

Structure and sanity only (every figure a positive finite number, the right rows and keys);
no timing thresholds: timings on a shared machine are not something a test can assert.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from actlab.engine import benchmark as bm
from actlab.engine.activations import activation_names


def _positive_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_interleave_rotates_order_and_drops_warmup():
    calls = []
    variants = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    samples = bm.interleave(variants, rounds=3, warmup=1)
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls[:3] == ["a", "b", "c"] and calls[3:6] == ["b", "c", "a"] and calls[6:9] == ["c", "a", "b"]
    assert all(s >= 0 for v in samples.values() for s in v)


def test_summaries_and_paired_ratios():
    s = bm.summarize([3.0, 1.0, 2.0, 4.0])
    assert (s["min"], s["median"], s["max"], s["n"]) == (1.0, 2.5, 4.0, 4)
    assert s["q1"] == pytest.approx(1.75) and s["q3"] == pytest.approx(3.25)
    assert s["spread"] == pytest.approx(1.5 / 2.5)
    r = bm.paired_ratio([2.0, 4.0, 9.0], [1.0, 2.0, 3.0])
    assert r["median"] == 2.0 and r["min"] == 2.0 and r["max"] == 3.0
    assert r["of_medians"] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bm.summarize([])


def test_forms_match_the_module_and_the_formula():
    x = torch.linspace(-5, 5, 101)
    for name in ("relu", "leakyrelu", "prelu", "gelu", "swish", "mish", "tanhexp"):
        forms = bm.activation_forms(name)
        assert "actlab" in forms and "naive" in forms
        if name != "tanhexp":
            assert "builtin" in forms, name
        reference = forms["naive"](x.double()).float()
        for form, fn in forms.items():
            assert torch.allclose(fn(x), reference, atol=1e-5), (name, form)
    assert "builtin" not in bm.activation_forms("tanhexp")


def test_activation_table_structure_on_a_tiny_configuration():
    names = ["relu", "tanhexp", "prelu", "mish"]
    table = bm.time_activations(names, shapes=[(4, 8), (16, 8)], rounds=2, warmup=1, sample_seconds=1e-4)
    assert [(r["activation"], tuple(r["shape"])) for r in table.rows] == [
        (n, s) for n in names for s in ((4, 8), (16, 8))]
    for row in table.rows:
        forms = {"actlab", "naive"} | ({"builtin"} if row["activation"] != "tanhexp" else set())
        assert set(row["us"]) == forms and set(row["spread"]) == forms
        assert all(_positive_finite(v) for v in row["us"].values())
        assert all(len(v) == 2 and all(_positive_finite(t) for t in v) for v in row["samples_us"].values())
        assert set(row["ratio"]) == forms - {"actlab"}
        assert all(_positive_finite(v) for v in row["ratio"].values())
    assert set(table.finite) == set(names)
    assert table.finite["tanhexp"]["actlab"] and table.finite["mish"]["actlab"]
    assert table.finite["mish"]["naive"] is False  # log(1 + e^x) overflows: the reason actlab's exists
    json.dumps(table.to_dict())  # JSON-able
    text = bm.format_activation_report(table, None)
    assert all(name in text for name in names)


def test_epoch_ratios_run_the_engines_epoch_function():
    data = bm.fashion_shaped_data(2 * 256)
    result = bm.time_activation_epochs(["tanhexp"], batches=2, rounds=2, warmup=1, data=data)
    acts = result["activations"]
    assert set(acts) == {"relu", "tanhexp"}  # relu is always measured, as the reference
    assert result["batches"] == 2 and result["data"] == "random data of FashionMNIST's shape"
    assert acts["relu"]["ratio_to_relu"]["median"] == 1.0
    for entry in acts.values():
        assert all(_positive_finite(entry["seconds"][k]) for k in ("median", "min", "max", "q1", "q3"))
        assert _positive_finite(entry["ms_per_batch"])
        assert _positive_finite(entry["ratio_to_relu"]["median"])
    name, ratio = bm.worst_epoch_ratio(result)
    assert name == "tanhexp" and _positive_finite(ratio)


def test_epoch_timer_trains_and_cleans_up():
    data = bm.fashion_shaped_data(2 * 256)
    timer = bm.EpochTimer(bm.engine_config("cpu", "relu"), data)
    folder = timer._tmp
    before = [p.detach().clone() for p in timer.run.model.parameters()]
    with timer:
        assert timer.steps == 2
        timer()
        timer()
        assert timer.run.progress.step == 4
    after = list(timer.run.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert not os.path.exists(folder)  # the temporary run folder


def test_run_activation_bench_is_json_able():
    result = bm.run_activation_bench(["relu", "swish"], rounds=1, sample_seconds=1e-4, epochs=True, batches=1,
                                     epoch_rounds=1, data=bm.fashion_shaped_data(256))
    payload = json.loads(json.dumps(bm.bench_json(result)))
    assert payload["worst"][0] == "swish" and _positive_finite(payload["worst"][1])
    assert payload["machine"]["device"] == "cpu"
    assert {r["activation"] for r in payload["table"]["rows"]} == {"relu", "swish"}


def test_parse_names():
    assert bm.parse_names("SiLU, relu,swish") == ["swish", "relu"]
    assert bm.parse_names("") is None
    from actlab.engine.errors import UserError

    with pytest.raises(UserError):
        bm.parse_names("relu,gelux")


def test_every_registered_activation_has_forms():
    for name in activation_names():
        forms = bm.activation_forms(name)
        y = forms["actlab"](torch.randn(3, 4))
        assert y.shape == (3, 4)


def test_actlab_bench_command(capsys, tmp_path):
    from actlab.tui.cli import main

    out_file = tmp_path / "bench.json"
    code = main(["bench", "--device", "cpu", "--activations", "relu,tanhexp", "--rounds", "1", "--batches", "1",
                 "--json", str(out_file)])
    assert code == 0
    out = capsys.readouterr().out
    assert "tanhexp" in out and "epoch/relu" in out
    assert out.strip().splitlines()[-1].startswith("slowest epoch relative to relu: tanhexp")
    payload = json.loads(out_file.read_text())
    assert {r["activation"] for r in payload["table"]["rows"]} == {"relu", "tanhexp"}
    assert main(["bench", "--activations", "gelux"]) == 2
    assert "did you mean 'gelu'" in capsys.readouterr().err
