"""`actlab runs [DIR ...]`: one line per run folder found under the given folders.

Reads each run's summary.json (or its events.jsonl when there is none); folders that cannot
be read are listed as `unreadable: <reason>`. Nothing is written into any run folder.
"""

from __future__ import annotations

import argparse
import sys

NAME = "runs"


def add_where_and_sort(p: argparse.ArgumentParser, *, sort: bool = True) -> None:
    """--where (repeatable) and --sort, shared by `runs`, `compare` and `export`."""
    p.add_argument("--where", metavar="KEY=VALUE", action="append", default=[],
                   help="keep runs whose KEY matches (repeatable; also !=, >, >=, <, <=); keys: the columns, "
                        "e.g. activation, status, dataset, seed, test_acc, study, config_hash, or a config key "
                        "such as train.lr")
    if sort:
        p.add_argument("--sort", metavar="KEY", help="sort by KEY (accuracies best first; --sort=-KEY flips the order)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(NAME, help="list the runs under folders (default ./runs), studies included",
                              description="One line per run folder under DIR (default ./runs), searching study "
                                          "folders too. Reads summary.json, else events.jsonl; never writes.")
    p.add_argument("dirs", metavar="DIR", nargs="*", default=["runs"], help="run folders or folders of runs")
    add_where_and_sort(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON list (every key, full precision)")
    out.add_argument("--csv", action="store_true", help="print CSV (every key, full precision)")


def run(args: argparse.Namespace) -> int:
    from actlab.engine import catalog

    records = catalog.select_runs(args.dirs, where=args.where, sort=args.sort)
    if args.json:
        sys.stdout.write(catalog.runs_to_json(records))
    elif args.csv:
        sys.stdout.write(catalog.runs_to_csv(records))
    elif not records:
        print(f"no runs under {', '.join(args.dirs)}" + (" matching --where" if args.where else ""))
    else:
        sys.stdout.write(catalog.format_runs(records))
        unreadable = sum(not r.readable for r in records)
        print(f"{len(records)} runs" + (f" ({unreadable} unreadable)" if unreadable else ""))
    return 0
