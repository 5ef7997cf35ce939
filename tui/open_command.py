"""`actlab open DIR|STUDY`: past runs or a study in the app, read-only.

    actlab open runs                 every run folder of a runs folder (the newest 100)
    actlab open runs/<run-id>        one run
    actlab open runs/<study-id>      a study: its trials, group bands and table (live while it runs)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "open"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("open", help="open a runs folder, a run or a study in the app (read-only)")
    p.add_argument("path", metavar="DIR|STUDY", help="a runs folder, a run folder or a study folder")


def run(args: argparse.Namespace) -> int:
    from actlab.engine.errors import UserError

    from .past_runs import is_run_folder, is_study_folder, open_targets

    path = Path(args.path)
    if not path.is_dir():
        raise UserError(f"{args.path}: no such folder (give a runs folder, a run folder or a study folder)")
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UserError("actlab open needs a terminal (for tables, use actlab runs or actlab compare)")
    if is_study_folder(path):
        from .study_view import run_study_app

        return run_study_app(path)
    if not is_run_folder(path) and not open_targets(path):
        raise UserError(f"{args.path}: no run folders here (a run folder holds config.json and events.jsonl)")
    from .app import LabApp, run_app
    from .past_runs import OpenFeed

    return run_app(LabApp(OpenFeed(path), mode="open"))
