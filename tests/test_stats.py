"""Group statistics: intervals and p-values against scipy on the raw numbers, Holm by hand."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from actlab.engine.stats import (band, format_group_table, group_table, holm, rows_to_csv, rows_to_json)

RELU = [0.961, 0.957, 0.966, 0.959, 0.963]
GELU = [0.970, 0.968, 0.975, 0.972]
TANH = [0.948, 0.955, 0.951]


def t_interval(values, confidence=0.95):
    """Independent reference: mean +- t_{(1+c)/2, n-1} * s / sqrt(n), from scipy's ppf."""
    x = np.asarray(values)
    n = len(x)
    half = sps.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return x.mean() - half, x.mean() + half


def welch_reference(a, b, confidence=0.95):
    """Welch-Satterthwaite by its formula, p from the t distribution's survival function."""
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    diff = a.mean() - b.mean()
    p = 2 * sps.t.sf(abs(diff / se), df)
    half = sps.t.ppf((1 + confidence) / 2, df) * se
    return diff, diff - half, diff + half, p


def test_mean_interval_and_spread_match_scipy_on_raw_numbers():
    rows = {r.group: r for r in group_table({"relu": RELU, "gelu": GELU, "tanh": TANH})}
    for name, values in (("relu", RELU), ("gelu", GELU), ("tanh", TANH)):
        row = rows[name]
        low, high = t_interval(values)
        assert row.n == len(values)
        assert row.mean == pytest.approx(np.mean(values), abs=1e-15)
        assert row.ci_low == pytest.approx(low, rel=1e-12)
        assert row.ci_high == pytest.approx(high, rel=1e-12)
        assert row.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        assert (row.min, row.max) == (min(values), max(values))
        assert row.diff is None and row.p_value is None  # no baseline asked


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_welch_difference_interval_and_p_value_match_the_formula(confidence):
    rows = {r.group: r for r in group_table({"relu": RELU, "gelu": GELU, "tanh": TANH}, baseline="relu",
                                            confidence=confidence)}
    assert rows["relu"].diff is None and rows["relu"].p_value is None and rows["relu"].p_holm is None
    for name, values in (("gelu", GELU), ("tanh", TANH)):
        diff, low, high, p = welch_reference(values, RELU, confidence)
        row = rows[name]
        assert row.diff == pytest.approx(diff, rel=1e-12)
        assert row.diff_ci_low == pytest.approx(low, rel=1e-9)
        assert row.diff_ci_high == pytest.approx(high, rel=1e-9)
        assert row.p_value == pytest.approx(p, rel=1e-9)
        # the interval excludes zero exactly when the test rejects at the same level
        excludes_zero = row.diff_ci_low > 0 or row.diff_ci_high < 0
        assert excludes_zero == (row.p_value < 1 - confidence)


def test_holm_step_down_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.2]) == pytest.approx([0.2])  # one test: unchanged
    assert holm([]) == []


def test_group_table_applies_holm_over_the_non_baseline_groups():
    rows = group_table({"relu": RELU, "gelu": GELU, "tanh": TANH, "elu": [0.962, 0.960, 0.964]}, baseline="relu")
    tested = [r for r in rows if r.p_value is not None]
    assert [r.group for r in tested] == ["gelu", "tanh", "elu"]
    expected = holm([r.p_value for r in tested])
    assert [r.p_holm for r in tested] == pytest.approx(expected)
    ranked = sorted(tested, key=lambda r: r.p_value)
    assert ranked[0].p_holm == pytest.approx(min(1.0, 3 * ranked[0].p_value))
    assert all(r.p_holm >= r.p_value for r in tested)


def test_groups_of_one_have_no_interval_and_no_test_and_the_table_says_so():
    rows = {r.group: r for r in group_table({"relu": RELU, "swish": [0.969]}, baseline="relu")}
    one = rows["swish"]
    assert (one.n, one.ci_low, one.ci_high, one.std) == (1, None, None, None)
    assert one.diff == pytest.approx(0.969 - np.mean(RELU))
    assert one.p_value is None and one.p_holm is None and one.diff_ci_low is None
    for style in ("text", "markdown"):
        text = format_group_table(list(rows.values()), metric="test_acc", style=style)
        assert "n=1: none" in text
        assert "n = 1 have no interval" in text


def test_baseline_of_one_run_gives_differences_without_tests():
    rows = {r.group: r for r in group_table({"relu": [0.96], "gelu": GELU}, baseline="relu")}
    assert rows["gelu"].diff == pytest.approx(np.mean(GELU) - 0.96)
    assert rows["gelu"].p_value is None


def test_identical_values_give_a_zero_width_interval_and_no_p_value():
    rows = {r.group: r for r in group_table({"a": [0.5, 0.5, 0.5], "b": [0.5, 0.5]}, baseline="a")}
    assert rows["a"].ci_low == rows["a"].ci_high == 0.5
    assert rows["b"].diff == 0.0 and rows["b"].p_value is None  # 0/0: no test possible


@pytest.mark.parametrize("values, baseline, confidence, message", [
    ({"a": []}, None, 0.95, "has no values"),
    ({"a": [1.0, float("nan")]}, None, 0.95, "non-finite"),
    ({"a": [1.0, float("inf")]}, None, 0.95, "non-finite"),
    ({"a": [1.0, 2.0]}, "b", 0.95, "baseline 'b' is not a group; groups: a"),
    ({"a": [1.0, 2.0]}, None, 1.0, "confidence"),
    ({"a": [1.0, 2.0]}, None, 0.0, "confidence"),
    ({"a": [1.0, 2.0]}, None, 95, "confidence"),
])
def test_bad_input_is_one_clear_error(values, baseline, confidence, message):
    with pytest.raises(ValueError, match=message):
        group_table(values, baseline=baseline, confidence=confidence)


def test_band_is_the_per_epoch_t_interval_over_curves_of_different_lengths():
    curves = [[0.50, 0.70, 0.80], [0.52, 0.72, 0.81], [0.49, 0.69]]
    mean, low, high = band(curves)
    assert len(mean) == 3
    for epoch in range(2):
        column = [c[epoch] for c in curves]
        lo, hi = t_interval(column)
        assert mean[epoch] == pytest.approx(np.mean(column))
        assert (low[epoch], high[epoch]) == (pytest.approx(lo), pytest.approx(hi))
    lo, hi = t_interval([0.80, 0.81])
    assert (mean[2], low[2], high[2]) == (pytest.approx(0.805), pytest.approx(lo), pytest.approx(hi))
    assert band([[0.3, 0.4]]) == ([0.3, 0.4], [0.3, 0.4], [0.3, 0.4])  # one curve: no band
    assert band([]) == ([], [], [])


def test_text_and_markdown_tables_show_percentages_and_the_baseline_columns():
    rows = group_table({"relu": RELU, "gelu": GELU}, baseline="relu")
    text = format_group_table(rows, metric="test_acc")
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["group", "n", "mean"]
    gelu = next(line for line in lines if line.startswith("gelu"))
    assert f"{100 * np.mean(GELU):.2f}" in gelu
    assert f"{100 * (np.mean(GELU) - np.mean(RELU)):+.2f}" in gelu
    assert "baseline" in next(line for line in lines if line.startswith("relu"))
    md = format_group_table(rows, metric="test_acc", style="markdown").splitlines()
    assert md[0].startswith("| group | n |") and md[1].startswith("|---|")
    assert len({line.count("|") for line in md[:4]}) == 1  # every row has every column
    seconds = format_group_table(group_table({"a": [1.5, 2.5]}), metric="seconds_per_epoch")
    assert "   2  " in seconds.splitlines()[1] + " "  # not multiplied by 100
    with pytest.raises(ValueError, match="style"):
        format_group_table(rows, metric="test_acc", style="html")  # type: ignore[arg-type]


def test_csv_and_json_round_trip_the_numbers():
    rows = group_table({"relu": RELU, "gelu": GELU, "one": [0.9]}, baseline="relu")
    back = list(csv.DictReader(io.StringIO(rows_to_csv(rows))))
    assert [r["group"] for r in back] == ["relu", "gelu", "one"]
    for row, read in zip(rows, back):
        for name in ("mean", "ci_low", "ci_high", "std", "diff", "p_value", "p_holm"):
            value = getattr(row, name)
            assert (read[name] == "") if value is None else (float(read[name]) == value)
    data = json.loads(rows_to_json(rows, metric="test_acc"))
    assert data["metric"] == "test_acc" and data["confidence"] == 0.95
    assert [g["p_value"] for g in data["groups"]] == [r.p_value for r in rows]
    assert data["groups"][2]["ci_low"] is None
