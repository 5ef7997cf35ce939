"""`actlab compare RUNS_OR_STUDIES...`: runs grouped (by activation by default) with the mean,
its 95% Student-t interval, spread, and against a baseline group the difference of means
with Welch's interval and test, Holm-corrected. `--curves` plots the mean validation
accuracy per epoch of each group with its band (plotext, in the terminal).
"""

from __future__ import annotations

import argparse
import sys

NAME = "compare"
METRICS = ("test_acc", "best_val_acc", "final_val_acc", "peak_dead", "final_dead", "seconds_per_epoch", "epochs",
           "best_epoch")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from .runs_command import add_where_and_sort

    p = subparsers.add_parser(NAME, help="group runs (e.g. seeds per activation): mean, 95%% CI, Welch's test "
                                         "against a baseline (Holm-corrected)",
                              description="Group the runs found under the given run or study folders and compare "
                                          "one metric across the groups.")
    p.add_argument("dirs", metavar="RUN_OR_STUDY", nargs="+", help="run folders or folders of runs")
    p.add_argument("--by", metavar="KEY", default="activation",
                   help="group by this key (default activation; e.g. dataset, config_hash, train.lr)")
    p.add_argument("--baseline", metavar="GROUP", help="test every other group against this one, e.g. relu")
    p.add_argument("--metric", metavar="NAME", default="test_acc",
                   help=f"what to compare (default test_acc; one of {', '.join(METRICS)})")
    p.add_argument("--confidence", metavar="C", type=float, default=0.95, help="interval level (default 0.95)")
    add_where_and_sort(p, sort=False)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print a Markdown table")
    out.add_argument("--csv", action="store_true", help="print CSV (full precision)")
    out.add_argument("--json", action="store_true", help="print JSON (full precision)")
    p.add_argument("--curves", action="store_true",
                   help="also plot each group's mean validation accuracy per epoch with its band")


def group_name(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return "(none)" if value in (None, "") else str(value)


def run(args: argparse.Namespace) -> int:
    from actlab.engine import catalog, stats
    from actlab.engine.errors import UserError

    if args.metric not in METRICS:
        raise UserError(f"--metric {args.metric!r}: use one of {', '.join(METRICS)}")
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence {args.confidence!r}: must be between 0 and 1 (e.g. 0.95)")
    catalog.check_key(args.by, "--by")
    records = catalog.select_runs(args.dirs, where=args.where)
    readable = [r for r in records if r.readable]
    notes = []
    if len(readable) < len(records):
        notes.append(f"left out {len(records) - len(readable)} unreadable folder(s) (see 'actlab runs')")
    values: dict[str, list[float]] = {}
    members: dict[str, list] = {}
    missing: dict[str, int] = {}
    for record in readable:
        value = record.value(args.metric)
        if value is None:
            missing[record.status] = missing.get(record.status, 0) + 1
            continue
        group = group_name(record.value(args.by))
        values.setdefault(group, []).append(float(value))
        members.setdefault(group, []).append(record)
    if missing:
        notes.append(f"left out {sum(missing.values())} run(s) without {args.metric} ("
                     + ", ".join(f"{n} {status}" for status, n in sorted(missing.items())) + ")")
    if not values:
        raise UserError(f"no runs with {args.metric} under {', '.join(args.dirs)}"
                        + (" matching --where" if args.where else ""))
    if args.baseline is not None and args.baseline not in values:
        raise UserError(f"--baseline {args.baseline!r}: no such group by {args.by}; groups: {', '.join(values)}")
    order = sorted(values, key=lambda g: (g != args.baseline, -sum(values[g]) / len(values[g]), g))
    rows = stats.group_table({g: values[g] for g in order}, baseline=args.baseline, confidence=args.confidence)
    rows = [_with_extras(row, members[row.group]) for row in rows]
    for note in notes:
        print(f"actlab compare: {note}", file=sys.stderr)
    if args.json:
        sys.stdout.write(stats.rows_to_json(rows, metric=args.metric, confidence=args.confidence))
    elif args.csv:
        sys.stdout.write(stats.rows_to_csv(rows))
    else:
        style = "markdown" if args.markdown else "text"
        sys.stdout.write(stats.format_group_table(rows, metric=args.metric, style=style,
                                                  confidence=args.confidence))
    if args.curves:
        sys.stdout.write(plot_curves({g: [r.value("val_acc_curve") or [] for r in members[g]] for g in order},
                                     confidence=args.confidence))
    return 0


def _with_extras(row, records):
    """Mean epochs, mean dead fraction at the end and mean s/epoch of the group's runs."""
    import dataclasses

    def mean(key):
        numbers = [float(v) for v in (r.value(key) for r in records) if v is not None]
        return sum(numbers) / len(numbers) if numbers else None

    return dataclasses.replace(row, extras={"epochs": mean("epochs"), "final_dead": mean("final_dead"),
                                            "s_per_epoch": mean("seconds_per_epoch")})


def plot_curves(curves: dict[str, list[list[float]]], *, confidence: float = 0.95, width: int | None = None,
                height: int = 22) -> str:
    """Each group's mean validation accuracy per epoch (solid) and its interval (dotted), as text."""
    import shutil

    import plotext as plt

    from actlab.engine.stats import band

    plt.clear_figure()
    plt.theme("clear")
    plt.plotsize(width or min(shutil.get_terminal_size((100, 24)).columns, 120), height)
    plt.title(f"validation accuracy % per epoch: group mean and {100 * confidence:g}% band (.)")
    plt.xlabel("epoch")
    colors = ["blue", "red", "green", "orange", "magenta", "cyan", "gray", "yellow"]
    markers = ["o", "x", "+", "*", "#", "@", "%", "&"]
    drawn, longest = 0, 0
    for i, (group, group_curves) in enumerate(curves.items()):
        mean, low, high = band([c for c in group_curves if c], confidence)
        if not mean:
            continue
        epochs = list(range(1, len(mean) + 1))
        longest = max(longest, len(mean))
        color, marker = colors[i % len(colors)], markers[i % len(markers)]
        if any(h != lo for h, lo in zip(high, low)):
            plt.plot(epochs, [100 * v for v in low], color=color, marker=".")
            plt.plot(epochs, [100 * v for v in high], color=color, marker=".")
        plt.plot(epochs, [100 * v for v in mean], label=f"{group} (n={len(group_curves)})", color=color,
                 marker=marker)
        drawn += 1
    if longest and longest <= 20:
        plt.xticks(list(range(1, longest + 1)))
    if not drawn:
        return "no validation curves to plot\n"
    text = plt.build()
    if not sys.stdout.isatty():
        text = plt.uncolorize(text)  # a file or a pipe gets plain text; the markers tell groups apart
    plt.clear_figure()
    return text + "\n"
