"""Group statistics for comparing runs: mean with a Student-t interval, Welch's test against a
baseline, Holm's correction over the groups, and per-epoch confidence bands.

One module computes the group table for the `compare` command, the study summary and the
app, so all three show the same numbers. The t quantiles, the Welch test and its
Welch-Satterthwaite interval come from scipy.stats; only Holm's step-down (a sort and a
running maximum) is written here.

    rows = group_table({"relu": [0.97, 0.96, 0.97], "gelu": [0.98, 0.97]}, baseline="relu")
    print(format_group_table(rows, metric="test_acc"))
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

__all__ = ["GroupRow", "band", "format_group_table", "group_table", "holm", "rows_to_csv", "rows_to_dicts",
           "rows_to_json", "is_fraction_metric"]

Style = Literal["text", "markdown"]


@dataclass(frozen=True)
class GroupRow:
    """One group of a comparison (e.g. every run with activation = gelu).

    `ci_low`/`ci_high` is the Student-t interval of the mean, None when n < 2 (as is `std`).
    `diff` is this group's mean minus the baseline's, with the Welch-Satterthwaite interval
    and Welch's two-sided p-value; `p_holm` is that p-value after Holm's correction over the
    non-baseline groups. All five are None for the baseline itself, without a baseline, or
    when either group has n < 2 (or both have zero spread: no test is possible).
    `extras` holds further per-group columns a caller adds (e.g. mean epochs), shown after max.
    """

    group: str
    n: int
    mean: float
    ci_low: float | None
    ci_high: float | None
    std: float | None
    min: float
    max: float
    diff: float | None = None
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    extras: Mapping[str, float | None] = field(default_factory=dict, hash=False)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence = {confidence!r}: must be between 0 and 1 (e.g. 0.95)")


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float | None, float | None]:
    """The Student-t interval of the mean of `values`; (None, None) when n < 2."""
    _check_confidence(confidence)
    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return None, None
    mean = float(data.mean())
    sem = float(data.std(ddof=1)) / math.sqrt(data.size)
    if sem == 0.0:
        return mean, mean
    low, high = scipy_stats.t.interval(confidence, data.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Sorted ascending, the i-th smallest (0-based) is multiplied by m - i, capped at 1, and
    made monotone with a running maximum; a hypothesis is rejected at level a when its
    adjusted p-value is at most a.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def group_table(values: Mapping[str, Sequence[float]], baseline: str | None = None,
                confidence: float = 0.95) -> list[GroupRow]:
    """One row per group, in the mapping's order; differences and tests against `baseline`.

    Every group needs at least one finite value. Raises ValueError for an empty group, a
    non-finite value, a confidence outside (0, 1) or a baseline that is not a group.
    """
    _check_confidence(confidence)
    if baseline is not None and baseline not in values:
        raise ValueError(f"baseline {baseline!r} is not a group; groups: {', '.join(map(str, values)) or 'none'}")
    arrays: dict[str, np.ndarray] = {}
    for name, group_values in values.items():
        data = np.asarray(list(group_values), dtype=float)
        if data.size == 0:
            raise ValueError(f"group {name!r} has no values")
        if not np.all(np.isfinite(data)):
            raise ValueError(f"group {name!r} has a non-finite value")
        arrays[name] = data

    rows: list[GroupRow] = []
    for name, data in arrays.items():
        low, high = mean_interval(data, confidence)
        rows.append(GroupRow(group=name, n=int(data.size), mean=float(data.mean()), ci_low=low, ci_high=high,
                             std=float(data.std(ddof=1)) if data.size >= 2 else None,
                             min=float(data.min()), max=float(data.max())))
    if baseline is None:
        return rows

    base = arrays[baseline]
    tested: dict[str, float] = {}
    for i, row in enumerate(rows):
        if row.group == baseline:
            continue
        data = arrays[row.group]
        diff = float(data.mean() - base.mean())
        update: dict[str, Any] = {"diff": diff}
        if data.size >= 2 and base.size >= 2 and (np.ptp(data) > 0 or np.ptp(base) > 0):
            with warnings.catch_warnings():  # near-identical values: scipy warns, the result stands
                warnings.simplefilter("ignore", RuntimeWarning)
                result = scipy_stats.ttest_ind(data, base, equal_var=False)
            p = _finite(result.pvalue)
            if p is not None:
                interval = result.confidence_interval(confidence)
                update.update(diff_ci_low=_finite(interval.low), diff_ci_high=_finite(interval.high), p_value=p)
                tested[row.group] = p
        rows[i] = replace(row, **update)
    adjusted = dict(zip(tested, holm(list(tested.values()))))
    return [replace(row, p_holm=adjusted[row.group]) if row.group in adjusted else row for row in rows]


def band(curves: Sequence[Sequence[float]], confidence: float = 0.95) -> tuple[list[float], list[float], list[float]]:
    """Per-epoch mean and Student-t interval over several curves (e.g. val acc of each seed).

    Curves may differ in length (early stopping): epoch i averages the curves that reach it.
    Where fewer than two curves reach an epoch (or they agree exactly), low = high = mean.
    """
    _check_confidence(confidence)
    length = max((len(c) for c in curves), default=0)
    mean, low, high = [], [], []
    for i in range(length):
        column = [float(c[i]) for c in curves if i < len(c) and math.isfinite(float(c[i]))]
        if not column:
            break
        centre = float(np.mean(column))
        lo, hi = mean_interval(column, confidence)
        mean.append(centre)
        low.append(centre if lo is None else lo)
        high.append(centre if hi is None else hi)
    return mean, low, high


# -- output ------------------------------------------------------------------------------------

def is_fraction_metric(metric: str) -> bool:
    """Accuracies and fractions (0..1) are shown as percentages."""
    return metric.endswith(("acc", "_frac", "dead", "dead_pct")) or metric in {"accuracy", "peak_dead"}


def _number(value: float | None, percent: bool, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.{digits}f}" if percent else f"{value:.4g}"


def _signed(value: float | None, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.2f}" if percent else f"{value:+.4g}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def format_group_table(rows: Sequence[GroupRow], *, metric: str, style: Style = "text",
                       confidence: float = 0.95, percent: bool | None = None) -> str:
    """The group table as aligned text or a Markdown table, with a line of notes below.

    Accuracies and fractions are printed in percent (`percent` overrides the guess made
    from the metric's name). Columns about the baseline appear when any row has a diff.
    """
    if style not in ("text", "markdown"):
        raise ValueError(f"style = {style!r}: must be 'text' or 'markdown'")
    pct = is_fraction_metric(metric) if percent is None else percent
    unit = " %" if pct else ""
    level = f"{100 * confidence:g}%"
    extra_names = list(dict.fromkeys(name for row in rows for name in row.extras))
    with_baseline = any(row.diff is not None for row in rows)
    header = ["group", "n", f"mean{unit}", f"{level} CI", "std", "min", "max",
              *(f"{name} %" if is_fraction_metric(name) else name for name in extra_names)]
    if with_baseline:
        header += [f"diff{unit}", f"diff {level} CI", "p (Welch)", "p (Holm)"]
    body: list[list[str]] = []
    single = False
    for row in rows:
        if row.ci_low is None:
            single = True
            ci = "n=1: none"
        else:
            ci = f"{_number(row.ci_low, pct)} .. {_number(row.ci_high, pct)}"
        cells = [row.group, str(row.n), _number(row.mean, pct), ci, _number(row.std, pct),
                 _number(row.min, pct), _number(row.max, pct)]
        cells += [_extra(row.extras.get(name), name) for name in extra_names]
        if with_baseline:
            if row.diff is None:
                cells += ["baseline", "", "", ""]
            else:
                diff_ci = "-" if row.diff_ci_low is None else \
                    f"{_signed(row.diff_ci_low, pct)} .. {_signed(row.diff_ci_high, pct)}"
                cells += [_signed(row.diff, pct), diff_ci, _p(row.p_value), _p(row.p_holm)]
        body.append(cells)

    notes = [f"{metric}: mean over runs, {level} Student-t interval of the mean"]
    if with_baseline:
        notes.append("diff: group minus baseline with Welch's interval; p: Welch's t-test, Holm-corrected over groups")
    if single:
        notes.append("groups with n = 1 have no interval (one run: no spread to estimate)")
    if style == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines) + "\n\n" + "\n".join(f"*{note}*  " for note in notes).rstrip() + "\n"
    widths = [max(len(header[i]), *(len(cells[i]) for cells in body)) if body else len(header[i])
              for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), *(line(cells) for cells in body), *notes]) + "\n"


def _extra(value: float | None, name: str) -> str:
    if value is None:
        return "-"
    return _number(value, is_fraction_metric(name)) if is_fraction_metric(name) else f"{value:.3g}"


def rows_to_dicts(rows: Sequence[GroupRow]) -> list[dict[str, Any]]:
    """Plain dicts (extras flattened in after the fixed fields)."""
    out = []
    for row in rows:
        data = asdict(row)
        extras = data.pop("extras")
        out.append({**data, **extras})
    return out


def rows_to_json(rows: Sequence[GroupRow], *, metric: str | None = None, confidence: float = 0.95) -> str:
    """`{"metric", "confidence", "groups": [...]}` as indented JSON (None -> null)."""
    return json.dumps({"metric": metric, "confidence": confidence, "groups": rows_to_dicts(rows)}, indent=2) + "\n"


def rows_to_csv(rows: Sequence[GroupRow]) -> str:
    """One CSV line per group; empty cells for None, full float precision."""
    names = [f.name for f in fields(GroupRow) if f.name != "extras"]
    names += list(dict.fromkeys(name for row in rows for name in row.extras))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for data in rows_to_dicts(rows):
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in data.items()})
    return buffer.getvalue()
