"""`actlab compare`: the group table on run folders, checked against scipy on the raw numbers."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from actlab.tui import cli
from run_folders import REAL_RUNS, shared_real_runs, synthetic_run

TEST_ACC = {"relu": [0.91, 0.95, 0.93], "gelu": [0.96, 0.97, 0.955, 0.965], "tanh": [0.90]}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare") / "study"
    n = 0
    for activation, accs in TEST_ACC.items():
        for seed, acc in enumerate(accs):
            n += 1
            curve = tuple(round(acc - 0.1 * (3 - e), 3) for e in range(3 + seed % 2))  # lengths 3 and 4
            synthetic_run(root / f"run{n}", run_id=f"run{n}", activation=activation, seed=seed, test_acc=acc,
                          val_accs=curve, dead=(0.0, 0.05 * seed, 0.1 * seed))
    synthetic_run(root / "running", run_id="running", activation="relu", seed=9, test_acc=None, finished=False)
    (root / "torn").mkdir()
    (root / "torn" / "events.jsonl").write_bytes(b'{"type":"RunSta')
    return root


def actlab(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_matches_scipy_on_the_raw_numbers(study, capsys):
    code, out, err = actlab(capsys, "compare", str(study), "--baseline", "relu", "--json")
    assert code == 0
    assert "left out 1 unreadable folder" in err and "left out 1 run(s) without test_acc (1 killed)" in err
    data = json.loads(out)
    groups = {g["group"]: g for g in data["groups"]}
    assert [g["group"] for g in data["groups"]] == ["relu", "gelu", "tanh"]  # baseline, then best mean first
    base = np.array(TEST_ACC["relu"])
    p_values = {}
    for name, values in TEST_ACC.items():
        x = np.array(values)
        g = groups[name]
        assert g["n"] == len(x) and g["mean"] == pytest.approx(x.mean(), abs=1e-15)
        if len(x) > 1:
            low, high = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
            assert (g["ci_low"], g["ci_high"]) == (pytest.approx(low), pytest.approx(high))
            assert g["std"] == pytest.approx(x.std(ddof=1))
        else:
            assert g["ci_low"] is g["ci_high"] is g["std"] is None
        if name != "relu" and len(x) > 1:
            test = sps.ttest_ind(x, base, equal_var=False)
            assert g["p_value"] == pytest.approx(test.pvalue)
            assert g["diff"] == pytest.approx(x.mean() - base.mean())
            p_values[name] = test.pvalue
    # one test (gelu; tanh has n = 1): Holm leaves it as is
    assert groups["gelu"]["p_holm"] == pytest.approx(p_values["gelu"])
    assert groups["tanh"]["p_value"] is None and groups["relu"]["diff"] is None
    # the extra columns: mean epochs (3 or 4), mean dead fraction at the end
    assert groups["gelu"]["epochs"] == pytest.approx(np.mean([3, 4, 3, 4]))
    assert groups["relu"]["final_dead"] == pytest.approx(np.mean([0.0, 0.1, 0.2]))


def test_text_table_shows_percentages_and_says_n_1_has_no_interval(study, capsys):
    code, out, _ = actlab(capsys, "compare", str(study), "--baseline", "relu")
    assert code == 0
    lines = out.splitlines()
    tanh = next(line for line in lines if line.startswith("tanh"))
    assert "n=1: none" in tanh and "90.00" in tanh and f"{100 * (0.90 - np.mean(TEST_ACC['relu'])):+.2f}" in tanh
    gelu = next(line for line in lines if line.startswith("gelu"))
    assert f"{100 * np.mean(TEST_ACC['gelu']):.2f}" in gelu
    assert any("n = 1 have no interval" in line for line in lines)


def test_markdown_and_csv(study, capsys):
    _, out, _ = actlab(capsys, "compare", str(study), "--baseline", "relu", "--markdown")
    assert out.startswith("| group | n | mean % | 95% CI |")
    _, out, _ = actlab(capsys, "compare", str(study), "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["group"]: float(r["mean"]) for r in rows} == pytest.approx({k: np.mean(v) for k, v in TEST_ACC.items()})
    assert all(r["p_value"] == "" for r in rows)  # no baseline, no tests


def test_other_groupings_metrics_and_filters(study, capsys):
    _, out, _ = actlab(capsys, "compare", str(study), "--by", "seed", "--json")
    by_seed = {g["group"]: g["n"] for g in json.loads(out)["groups"]}
    assert by_seed == {"0": 3, "1": 2, "2": 2, "3": 1}  # relu 0-2, gelu 0-3, tanh 0
    _, out, _ = actlab(capsys, "compare", str(study), "--metric", "best_val_acc", "--where", "activation!=tanh",
                       "--json")
    groups = {g["group"]: g for g in json.loads(out)["groups"]}
    assert set(groups) == {"relu", "gelu"} and groups["relu"]["n"] == 4  # the running run has a best val acc
    assert groups["gelu"]["max"] == pytest.approx(0.97)


def test_curves_plot_each_groups_mean_with_its_band(study, capsys):
    code, out, _ = actlab(capsys, "compare", str(study), "--curves")
    assert code == 0
    plot = out[out.index("validation accuracy % per epoch"):]
    for name, values in TEST_ACC.items():
        assert f"{name} (n={len(values)})" in plot
    assert len(plot.splitlines()) >= 15


@pytest.mark.parametrize("argv, words", [
    (["--metric", "speed"], "--metric 'speed': use one of test_acc"),
    (["--baseline", "swish"], "--baseline 'swish': no such group by activation; groups: relu, gelu, tanh"),
    (["--by", "colour"], "--by 'colour': unknown key"),
    (["--confidence", "95"], "--confidence 95.0: must be between 0 and 1"),
    (["--where", "activation=swish"], "no runs with test_acc under"),
])
def test_bad_input_is_one_line_exit_2(study, capsys, argv, words):
    code, out, err = actlab(capsys, "compare", str(study), *argv)
    assert code == 2 and out == ""
    assert err.startswith("actlab: ") and words in err and err.count("\n") == 1, err


def test_compare_on_real_runs(tmp_path_factory, digits_cpu, capsys):
    root, folders = shared_real_runs(tmp_path_factory, digits_cpu)
    code, out, err = actlab(capsys, "compare", str(root / "runs"), "--baseline", "relu", "--json")
    assert code == 0 and err == ""
    groups = {g["group"]: g for g in json.loads(out)["groups"]}
    relu = [json.loads((f / "summary.json").read_text())["test_acc"]
            for f, (_, activation, _) in zip(folders, REAL_RUNS) if activation == "relu"]
    assert groups["relu"]["n"] == len(relu) == 3 and groups["tanh"]["n"] == 1
    assert math.isclose(groups["relu"]["mean"], np.mean(relu), rel_tol=1e-12)
