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
    lines = out.strip().splitlines()
    slowest = [i for i, line in enumerate(lines) if line.startswith("slowest epoch relative to relu: tanhexp")]
    assert len(slowest) == 1
    assert all(line.startswith("WARNING: ") for line in lines[slowest[0] + 1:])  # only warnings follow it
    payload = json.loads(out_file.read_text())
    assert {r["activation"] for r in payload["table"]["rows"]} == {"relu", "tanhexp"}
    assert main(["bench", "--activations", "gelux"]) == 2
    assert "did you mean 'gelu'" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--rounds", "0"], ["--batches", "-1"], ["--epoch-rounds", "0"],
                                   ["--threads", "-2"]])
def test_actlab_bench_bad_numbers_are_one_line_errors(capsys, flags):
    from actlab.tui.cli import main

    assert main(["bench", "--device", "cpu", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"actlab: {flags[0]} ") and err.count("\n") == 1


def test_actlab_bench_threads_and_clock_and_progress(capsys, monkeypatch, tmp_path):
    from actlab.tui.cli import main

    monkeypatch.delenv("ACTLAB_DATA", raising=False)
    monkeypatch.setenv("ACTLAB_CACHE", str(tmp_path / "empty-cache"))
    before = torch.get_num_threads()
    try:
        code = main(["bench", "--device", "cpu", "--activations", "relu", "--rounds", "2", "--batches", "1",
                     "--epoch-rounds", "1", "--threads", "1", "--clock", "cpu"])
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert code == 0 and threads == 1
    captured = capsys.readouterr()
    assert "1 thread(s), cpu clock" in captured.out
    assert "random data of FashionMNIST's shape" in captured.err  # no dataset here: said so
    rounds = [line for line in captured.err.splitlines() if "round " in line]
    assert rounds and all("s left)" in line for line in rounds)  # every round line has an estimate


def test_interleave_runs_after_hooks_outside_the_sample(monkeypatch):
    """A fake clock that only the hooks advance: the samples must not see them."""
    ticks = [0.0]
    monkeypatch.setattr(bm, "clock_function", lambda clock: (lambda: ticks[0]))
    calls = []

    def variant(name):
        def run():
            calls.append(name)
            ticks[0] += 1.0
        return run

    def hook():
        calls.append("stats")
        ticks[0] += 100.0

    samples = bm.interleave({"a": variant("a"), "b": variant("b")}, rounds=3, warmup=1, after={"b": hook})
    assert samples == {"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0]}
    assert calls.count("stats") == 4  # warm-up round too
    assert all(calls[i - 1] == "b" for i, c in enumerate(calls) if c == "stats")


@pytest.mark.parametrize("q1,median,q3,flagged,straddle", [
    (1.00, 1.02, 1.04, False, False),  # 4 % apart: readable
    (0.97, 1.02, 1.08, True, True),  # 11 % apart, both sides of 1
    (1.20, 1.30, 1.40, True, False),  # 15 % apart
    (1.29, 1.30, 1.31, False, False),
])
def test_spread_warning(q1, median, q3, flagged, straddle):
    line = bm.spread_warning("x/y", {"q1": q1, "median": median, "q3": q3})
    assert bool(line) == flagged
    if flagged:
        assert line.startswith("WARNING: x/y = ") and f"{(q3 - q1) / median:.0%} apart" in line
        assert ("straddling 1.0" in line) == straddle


def test_bench_warnings_name_the_scattered_ratios():
    ratio = lambda q1, m, q3: {"q1": q1, "median": m, "q3": q3}  # noqa: E731
    result = {"epochs": {"activations": {"relu": {"ratio_to_relu": ratio(1, 1, 1)},
                                         "gelu": {"ratio_to_relu": ratio(1.0, 1.1, 1.3)},
                                         "swish": {"ratio_to_relu": ratio(1.04, 1.05, 1.06)}}},
              "table": {"rows": [{"activation": "mish", "shape": [256, 512], "ratio": {"builtin": 0.5},
                                  "ratio_quartiles": {"builtin": [0.4, 0.6]}},
                                 {"activation": "relu", "shape": [256, 512], "ratio": {"builtin": 1.0},
                                  "ratio_quartiles": {"builtin": [0.99, 1.01]}}]}}
    lines = bm.bench_warnings(result)
    assert len(lines) == 2
    assert "epoch gelu/relu" in lines[0]
    assert "1 table ratios" in lines[1] and "mish 256x512 vs builtin" in lines[1] and "relu" not in lines[1]


def test_bare_loop_learns_and_gemm_bound_runs():
    data = bm.fashion_shaped_data(1024)
    gen = torch.Generator().manual_seed(1)
    data.train_y.copy_(torch.randint(0, 2, (1024,), generator=gen))  # a learnable rule: class from one pixel sign
    data.train_x[:, 0] = data.train_y.float() * 4 - 2
    loop = bm.BareLoop(data, sizes=(784, 32, 10), lr=0.05)
    loop()
    first_loss = loop.last[0] / 1024
    for _ in range(4):
        loop()
    assert loop.last[0] / 1024 < first_loss
    assert len(loop.train_seconds) == len(loop.validate_seconds) == 5
    bm.gemm_epoch(2, sizes=(784, 32, 10))()
