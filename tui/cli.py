"""The `actlab` command.

    actlab                      open the live lab on lab.toml (same as `actlab run` on a terminal)
    actlab run --headless       train lab.toml without the app, one line per epoch (also when
                                stdin/stdout is not a terminal)
    actlab run --resume RUN     continue an interrupted run from its last checkpoint (in the app on
                                a terminal); with --epochs N, extend a finished run to N epochs
    actlab watch RUN            the live lab fed from a run folder's events.jsonl
    actlab inspect CHECKPOINT   what a checkpoint file (or a run folder's last.pt) holds
    actlab bench                time every activation on this machine's device

Exit codes: 0 done, 1 the run failed or diverged (also: the disk filled up or the run
folder stopped taking writes mid-run; the newest checkpoint stays intact), 2 bad usage,
config, data folder or checkpoint file (one line, no traceback, nothing trained),
128+N when signal N stopped the run (after it wrote a checkpoint).
Heavy imports (torch, textual) happen inside the commands, so `--help` and usage errors
answer at once.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"actlab: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def add_overrides(p: argparse.ArgumentParser) -> None:
    """The config flags shared by `actlab run` and `actlab study` (read by `load_lab_config`)."""
    p.add_argument("--config", metavar="FILE", help="configuration file (default: ./lab.toml if present)")
    p.add_argument("--activation", metavar="NAME", help="activation function, e.g. relu, gelu, tanhexp")
    p.add_argument("--epochs", metavar="N", type=int, help="maximum number of epochs")
    p.add_argument("--dataset", metavar="NAME", help="fashion-mnist, mnist, digits or blobs")
    p.add_argument("--seed", metavar="N", type=int, help="random seed")
    p.add_argument("--device", metavar="DEV", help="cpu, cuda, mps or auto")
    p.add_argument("--lr", metavar="X", type=float, help="learning rate (train.lr)")
    p.add_argument("--batch-size", metavar="N", type=int, help="batch size (train.batch_size)")
    p.add_argument("--hidden", metavar="W,W,...", help="hidden layer widths, e.g. 512,256 (model.hidden_sizes)")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="set",
                   help="any lab.toml key, value as TOML (repeatable), e.g. --set train.optimizer=adam")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="actlab", description="A terminal training lab for activation functions.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="train the configuration (headless or in the app)")
    add_overrides(run)
    run.add_argument("--headless", action="store_true", help="no app: print one line per epoch")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint "
                                                         "(with --epochs N: extend a finished run to N epochs)")
    run.add_argument("--verbose", action="store_true", help="also print every checkpoint written")
    watch = sub.add_parser("watch", help="watch a run folder (e.g. a headless run under nohup or tmux)")
    watch.add_argument("run_dir", metavar="RUN_DIR")
    inspect = sub.add_parser("inspect", help="show what a checkpoint holds (safe: no pickle code runs)")
    inspect.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file, or a run folder (its last.pt)")
    inspect.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    for module in _command_modules():
        module.add_parser(sub)
    return parser


#: subcommands that live in modules of their own; each module has `NAME`,
#: `add_parser(subparsers)` and `run(args) -> exit code`, and imports heavy things inside `run`
COMMAND_MODULES: tuple[str, ...] = ("study_command", "runs_command", "compare_command", "export_command",
                                     "open_command", "bench_command")


def _command_modules() -> list:
    import importlib

    return [importlib.import_module(f"actlab.tui.{name}") for name in COMMAND_MODULES]


OVERRIDE_FLAGS = {"activation": "model.activation", "epochs": "train.epochs", "dataset": "data.dataset",
                  "seed": "run.seed", "device": "run.device", "lr": "train.lr", "batch_size": "train.batch_size",
                  "hidden": "model.hidden_sizes"}


def load_lab_config(args: argparse.Namespace, config=None):
    """lab.toml (or --config, or the given config) with `--set` and the short flags applied and checked.

    `--set` items apply in order, then the short flags (`--lr` wins over `--set train.lr=`).
    """
    from actlab.engine.config import apply_overrides, load_config, parse_set_override

    if config is None:
        config = load_config(args.config)
    for item in getattr(args, "set", None) or ():
        key, value = parse_set_override(item)
        config = apply_overrides(config, {key: value}, source={key: f"--set {key}="})
    overrides = {OVERRIDE_FLAGS[k]: getattr(args, k) for k in OVERRIDE_FLAGS if getattr(args, k, None) is not None}
    if "model.hidden_sizes" in overrides:
        overrides["model.hidden_sizes"] = parse_widths(overrides["model.hidden_sizes"])
    labels = {v: f"--{k.replace('_', '-')}" for k, v in OVERRIDE_FLAGS.items()}
    return apply_overrides(config, overrides, source=labels)


def parse_widths(text: str) -> list[int]:
    """`--hidden 512,256` -> [512, 256]; anything else is one line saying what is allowed."""
    from actlab.engine.errors import ConfigError

    try:
        widths = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise ConfigError(f"--hidden {text!r}: expected comma-separated widths >= 1, e.g. 512,256") from None
    if not widths or min(widths) < 1:
        raise ConfigError(f"--hidden {text!r}: expected comma-separated widths >= 1, e.g. 512,256")
    return widths


def _install_signal_handlers(control, previous: dict | None = None) -> dict[int, int]:
    """SIGINT/SIGTERM/SIGHUP stop the run between batches; a second one exits at once.

    The handlers they replace go into `previous` (for `_restore_signal_handlers`).
    """
    received: dict[int, int] = {}

    def handler(signum, frame):
        if received:
            raise SystemExit(128 + signum)
        received[signum] = 1
        control.stop("interrupted")

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            old = signal.signal(getattr(signal, name), handler)
            if previous is not None:
                previous[getattr(signal, name)] = old
    return received


def _restore_signal_handlers(previous: dict) -> None:
    """Put back what `_install_signal_handlers` replaced (main() may be called as a library)."""
    for signum, old in previous.items():
        if old is not None:
            signal.signal(signum, old)


def cmd_run_headless(args: argparse.Namespace) -> int:
    from actlab.engine import lab
    from actlab.engine.config import check_names
    from actlab.engine.errors import UserError
    from actlab.engine.runs import checkpoint_path

    from .headless import HeadlessPrinter

    control = lab.RunControl()
    previous: dict = {}
    received = _install_signal_handlers(control, previous)
    printer = HeadlessPrinter(verbose=args.verbose)
    try:
        if args.resume:
            run_dir = _resume_dir(args.resume)
            _check_resume_flags(args)
            if not checkpoint_path(run_dir).exists():
                printer.note(f"{run_dir} has no checkpoint yet (stopped before its first epoch ended); "
                             "training it from the start")
            result = lab.resume_run(run_dir, consumers=[printer], control=control, epochs=args.epochs).run()
        else:
            config = load_lab_config(args)
            where = "--activation" if args.activation is not None else _config_where(args, "model", "activation")
            check_names(config, source=where)
            result = lab.open_run(config, consumers=[printer], control=control).run()
    finally:
        _restore_signal_handlers(previous)
    exc = getattr(result, "exception", None)
    if exc is not None:
        if isinstance(exc, UserError):
            raise exc if args.resume else _located(exc, args)
        print(f"actlab: run failed: {result.message}", file=sys.stderr)
        return EXIT_FAILED
    if result.status == "interrupted":
        return 128 + next(iter(received), signal.SIGINT)
    if result.status == "diverged":
        print(f"actlab: run diverged: {result.message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _check_resume_flags(args: argparse.Namespace) -> None:
    """--resume keeps the run's own config; only --epochs (a new total, to extend it) may change."""
    from actlab.engine.errors import UserError

    if any(getattr(args, k, None) is not None for k in (*OVERRIDE_FLAGS, "config") if k != "epochs") or args.set:
        raise UserError("--resume continues a run with its own config; drop --config and the overrides "
                        "(only --epochs N, a new total, extends it)")


def _config_where(args: argparse.Namespace, section: str, key: str) -> str:
    """`FILE:LINE` of a key in the config file this run read (`FILE` where the line is unknown)."""
    path = args.config or "lab.toml"
    try:
        from actlab.engine.config import locate_key

        return locate_key(str(path), Path(path).read_text(encoding="utf-8"), section, key)
    except (OSError, UnicodeDecodeError):
        return str(path)


def _located(exc: Exception, args: argparse.Namespace) -> Exception:
    """A run-time error about a config value (`data.source = ...: ...`) gets the file and line."""
    import re

    match = re.match(r"(run|data|model)\.(\w+) = ", str(exc))
    if not match or (args.config is None and not Path("lab.toml").is_file()):
        return exc
    return type(exc)(f"{_config_where(args, match[1], match[2])}: {exc}")


def _resume_dir(given: str) -> str:
    """`--resume` takes the run folder, or a checkpoint inside it (runs/ID/checkpoints/last.pt)."""
    from actlab.engine.errors import UserError
    from actlab.engine.runs import CHECKPOINT_DIR, CONFIG_FILE

    path = Path(given)
    if path.is_file() and path.parent.name == CHECKPOINT_DIR:
        path = path.parent.parent
    if not path.is_dir():
        raise UserError(f"--resume {given}: no such run folder")
    if not (path / CONFIG_FILE).is_file():
        raise UserError(f"--resume {given}: not a run folder (no {CONFIG_FILE}); give runs/<run-id>")
    return str(path)


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what a checkpoint holds; a bad or unsafe file is one line and exit 2."""
    import json

    from .checkpoint_info import describe, print_to_pipe, summary

    if args.json:
        print_to_pipe(json.dumps(summary(args.checkpoint), default=str))
    else:
        print_to_pipe("\n".join(describe(args.checkpoint)))
    return EXIT_OK


def _is_terminal() -> bool:
    """The live app needs a terminal on both ends; otherwise `actlab run` trains headless."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _check_names_early(config, source: str) -> None:
    """A bad activation name or config stops here, before the app opens (exit 2).

    The check builds the activation, which imports PyTorch (seconds); the lab's own ten
    names with default hyper-parameters are known good, so the app opens at once for them.
    """
    from actlab.engine.config import check_names

    from .feed_items import LAB_ORDER

    model = config.model
    if model.activation_config or model.activation not in LAB_ORDER:
        check_names(config, source=source)


def cmd_app(args: argparse.Namespace) -> int:
    """The live lab on lab.toml: training starts at once."""
    config = load_lab_config(args)
    _check_names_early(config, args.config or "lab.toml")
    from .app import LabApp, run_app
    from .feed import LiveFeed

    return run_app(LabApp(LiveFeed(config), config=config))


def cmd_app_resume(args: argparse.Namespace) -> int:
    """`actlab --resume RUN_DIR [--epochs N]` on a terminal: the app continues the run folder."""
    from actlab.engine import lab

    run_dir = _resume_dir(args.resume)
    _check_resume_flags(args)
    config = lab.read_run_config(run_dir)
    if args.epochs is not None:  # checked here, before the app opens (lab.resume_run checks it again)
        lab.check_more_epochs(run_dir, args.epochs)
        config = config.replace(**{"train.epochs": args.epochs})
    from .app import LabApp, run_app
    from .feed import LiveFeed, ResumeRequest

    return run_app(LabApp(LiveFeed(config, resume=ResumeRequest(run_dir, args.epochs)), config=config))


def cmd_watch(args: argparse.Namespace) -> int:
    """The live lab's screen for a run folder, following its events.jsonl (read-only)."""
    from actlab.engine.errors import UserError
    from actlab.engine.events import EVENTS_FILE
    from actlab.engine import lab
    from actlab.engine.runs import CONFIG_FILE

    run_dir = Path(args.run_dir)
    events = run_dir / EVENTS_FILE if run_dir.is_dir() else run_dir
    if not events.is_file():
        raise UserError(f"{args.run_dir}: not a run folder (no {EVENTS_FILE})")
    if not sys.stdout.isatty():
        raise UserError("actlab watch needs a terminal (for a log, read the run's events.jsonl)")
    config = None
    if run_dir.is_dir() and (run_dir / CONFIG_FILE).exists():
        try:
            config = lab.read_run_config(run_dir)
        except UserError:
            config = None  # the events alone are enough to draw the screen
    from .app import LabApp, run_app
    from .feed import WatchFeed

    return run_app(LabApp(WatchFeed(run_dir), config=config))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]  # `actlab --activation gelu` means `actlab run --activation gelu`
    args = parser.parse_args(argv)
    from actlab.engine.errors import UserError

    try:
        if args.command is None:
            args = parser.parse_args(["run"])
        if args.command == "run":
            if args.headless or not _is_terminal():
                return cmd_run_headless(args)
            if args.resume:
                return cmd_app_resume(args)
            return cmd_app(args)
        if args.command == "watch":
            return cmd_watch(args)
        if args.command == "inspect":
            return cmd_inspect(args)
        for module in _command_modules():
            if args.command == module.NAME:
                return module.run(args)
    except UserError as exc:
        print(f"actlab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
