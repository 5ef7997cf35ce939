"""`actlab export RUN_OR_STUDY... --csv DIR --tensorboard DIR`: tidy CSV tables and/or
TensorBoard event files of the runs found (see actlab.engine.export). Run folders are only read.
"""

from __future__ import annotations

import argparse

NAME = "export"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from .runs_command import add_where_and_sort

    p = subparsers.add_parser(NAME, help="write runs as CSV tables (epochs, layers, steps) or TensorBoard files",
                              description="Export the runs found under the given run or study folders.")
    p.add_argument("dirs", metavar="RUN_OR_STUDY", nargs="+", help="run folders or folders of runs")
    p.add_argument("--csv", metavar="DIR", help="write epochs.csv, layers.csv, steps.csv and runs.csv into DIR")
    p.add_argument("--tensorboard", metavar="DIR",
                   help='write TensorBoard event files into DIR, one folder per run (needs actlab[tensorboard])')
    add_where_and_sort(p, sort=False)


def run(args: argparse.Namespace) -> int:
    import sys

    from actlab.engine import catalog, export
    from actlab.engine.errors import UserError

    if not args.csv and not args.tensorboard:
        raise UserError("export: say where to, with --csv DIR and/or --tensorboard DIR")
    if args.tensorboard:
        export.tensorboard_writer_class()  # the install line before any reading or writing
    records = catalog.select_runs(args.dirs, where=args.where)
    runs = export.exportable(records)
    if not runs:
        raise UserError(f"no readable runs under {', '.join(args.dirs)}" + (" matching --where" if args.where else ""))
    skipped = len(records) - len(runs)
    if skipped:
        print(f"actlab export: left out {skipped} unreadable folder(s) (see 'actlab runs')", file=sys.stderr)
    if args.csv:
        counts = export.export_csv(runs, args.csv)
        print(f"{args.csv}: " + ", ".join(f"{name} ({n} rows)" for name, n in counts.items()))
    if args.tensorboard:
        counts = export.export_tensorboard(runs, args.tensorboard)
        print(f"{args.tensorboard}: {counts['runs']} runs, {counts['scalars']} scalars, "
              f"{counts['histograms']} histograms (tensorboard --logdir {args.tensorboard})")
    return 0
