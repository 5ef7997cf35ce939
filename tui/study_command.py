"""`actlab study`: a grid of runs (activations x seeds x config keys), run in parallel, resumable.

    actlab study --activations relu,gelu,mish --seeds 5 --dataset digits --epochs 10
    actlab study --preset seeds-table --workers 2
    actlab study --grid train.lr=0.01,0.003 --grid "model.hidden_sizes=[512,256];[256]*10"
    actlab study --config study.toml           (a [study] table: activations, seeds, grid, preset, name)
    actlab study --resume runs/<study-id>      (or re-run the same command)
    actlab study ... --executor ray --address auto

On a terminal the study view (tui/study_view.py) follows the study while it runs: the trials'
status, each group's mean validation accuracy with its 95% band, the group table; `q` stops
the study (each running trial checkpoints). With --headless or on a pipe: one line per
finished trial and an overall bar (trials done, ETA, throughput). Both end with the grouped
summary (mean and 95% CI per group, engine/stats.py).
Exit codes: 0 every trial done, 1 some trial failed, 2 bad usage (nothing created),
128+N when signal N stopped the study (each running trial wrote a checkpoint).
"""

from __future__ import annotations

import argparse
import io
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from .cli import EXIT_FAILED, EXIT_OK, add_overrides, load_lab_config

NAME = "study"
BAR_WIDTH = 28


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("study", help="run a grid of runs (activations x seeds x config keys), in parallel, "
                                            "resumable; prints a summary with 95%% confidence intervals")
    add_overrides(p)
    p.add_argument("--preset", metavar="NAME", help="a published experiment: seeds-table, deep-init, tanhexp-lr, "
                                                    "depth (--list-presets says what each shows)")
    p.add_argument("--activations", metavar="NAMES", help="comma-separated names, 'lab' (the lab's ten) or 'all'")
    p.add_argument("--seeds", metavar="N|S,S,...", help="a count (5: seeds 0-4) or a list of seeds (0,1,2)")
    p.add_argument("--grid", metavar="SECTION.KEY=V1,V2,...", action="append", default=[],
                   help="an axis over any lab.toml key, values as TOML; ';' separates list values: "
                        "\"model.hidden_sizes=[512,256];[256]*10\" (repeatable)")
    p.add_argument("--name", metavar="ID", help="the study id (default: preset or 'study' plus a hash of the spec)")
    p.add_argument("--resume", metavar="STUDY_DIR", help="continue runs/<study-id> with its own spec")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: a Ray cluster")
    p.add_argument("--workers", metavar="N", type=int, help="local: worker processes (default: one per core, "
                                                            "or --per-device per GPU)")
    p.add_argument("--threads", metavar="N", type=int, help="torch threads per trial (default 1)")
    p.add_argument("--per-device", metavar="K", type=int, default=1, help="cuda: trials sharing each GPU (default 1)")
    p.add_argument("--address", metavar="auto|HOST:PORT", help="ray: the cluster to join (default: start a local one)")
    p.add_argument("--gpus-per-trial", metavar="F", type=float, default=None,
                   help="ray: GPU share of each trial, fractions allowed (default 1 on cuda, else 0)")
    p.add_argument("--dry-run", action="store_true", help="list the trials and exit (nothing created)")
    p.add_argument("--list-presets", action="store_true", help="describe the presets and exit")
    p.add_argument("--headless", action="store_true", help="plain progress lines (the default for now)")


def run(args: argparse.Namespace) -> int:
    from actlab.engine import study

    if args.list_presets:
        for p in study.PRESETS.values():
            print(f"{p.name}: {p.title}\n  source: {p.source}\n  shows: {p.shows}\n")
        return EXIT_OK
    _check_executor_flags(args)
    if args.resume:
        study_dir, manifest, trials = _resumed(args)
    else:
        study_dir, manifest, trials = _planned(args)
    spec = manifest.spec
    if args.dry_run:
        for t in trials:
            print(f"{t.trial_id}  {t.group}  seed {t.config.run.seed}  config {t.config_hash}")
        print(f"{len(trials)} trials in {study_dir}")
        return EXIT_OK
    return _execute(args, study_dir, manifest, trials, spec.init_only)


# --- planning -------------------------------------------------------------------------------------


def _check_executor_flags(args: argparse.Namespace) -> None:
    from actlab.engine.errors import UserError

    for flag, value, low in (("--workers", args.workers, 1), ("--threads", args.threads, 1),
                             ("--per-device", args.per_device, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} {value}: must be at least {low}")
    if args.gpus_per_trial is not None and not (0 <= args.gpus_per_trial and math.isfinite(args.gpus_per_trial)):
        raise UserError(f"--gpus-per-trial {args.gpus_per_trial}: must be a number >= 0 (fractions allowed)")
    if args.executor != "ray" and (args.address or args.gpus_per_trial is not None):
        raise UserError("--address and --gpus-per-trial need --executor ray")
    if args.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError('--executor ray needs Ray: pip install "actlab[ray]"') from None


def _resumed(args: argparse.Namespace):
    from actlab.engine import study
    from actlab.engine.errors import UserError

    spec_flags = [f"--{k.replace('_', '-')}" for k in ("config", "preset", "activations", "seeds", "name", "activation",
                                                         "epochs", "dataset", "seed", "lr", "batch_size", "hidden")
                  if getattr(args, k, None) is not None] + (["--grid"] if args.grid else []) + \
        (["--set"] if args.set else [])
    if spec_flags:
        raise UserError(f"--resume continues a study with its own spec; drop {', '.join(spec_flags)}")
    study_dir = Path(args.resume)
    if not study_dir.is_dir():
        raise UserError(f"--resume {args.resume}: no such study folder")
    manifest = study.read_manifest(study_dir)
    trials = study.expand(manifest.spec, study_dir)
    study.reconcile(manifest, trials)
    return study_dir, manifest, trials


def _axis_values(axis_flag: str | None, one_flag: Any, what: str, parse: Callable[[str], tuple[Any, ...]],
                 fallback: tuple[Any, ...]) -> tuple[Any, ...]:
    """The values of the activation or seed axis: `--{what}s` (an axis) wins, `--{what}` (one
    value, set in the config) means no axis, else the [study] table's or the preset's."""
    from actlab.engine.errors import UserError

    if axis_flag is not None and one_flag is not None:
        raise UserError(f"give --{what} (one) or --{what}s (an axis), not both")
    if axis_flag is not None:
        return parse(axis_flag)
    return () if one_flag is not None else fallback


def _planned(args: argparse.Namespace):
    """The spec from the config file, its [study] table, the preset and the flags; checked in full
    before anything is created."""
    from actlab.engine import study
    from actlab.engine.config import apply_overrides, check_names, load_config
    from actlab.engine.errors import UserError

    if args.config:
        config, table = study.load_study_file(args.config)
    else:
        config, table = load_config(None), {}
    preset_name = args.preset or table.get("preset")
    preset = study.preset(preset_name, "--preset" if args.preset else f"{args.config}: study.preset") \
        if preset_name else None
    if preset is not None:
        config = apply_overrides(config, preset.overrides, source=f"--preset {preset.name}:")
    epochs = args.epochs if args.epochs is not None else table.get("epochs")
    init_only = bool(preset and preset.init_only) if epochs is None else epochs == 0
    if args.epochs is not None and args.epochs < 0:
        raise UserError(f"--epochs {args.epochs}: must be >= 1 (or 0 in a study: at initialisation only)")
    saved_epochs = args.epochs
    args.epochs = None if init_only else epochs
    try:
        config = load_lab_config(args, config)
    finally:
        args.epochs = saved_epochs
    if init_only:
        config = config.replace(**{"train.epochs": 1, "probes.enabled": True})

    activations = _axis_values(args.activations, args.activation, "activation", study.parse_activations,
                               table.get("activations") or (preset.activations if preset else ()))
    seeds = _axis_values(args.seeds, args.seed, "seed", study.parse_seeds,
                         table.get("seeds") or (preset.seeds if preset else ()))
    axes: dict[str, tuple[Any, ...]] = dict(preset.axes if preset else ())
    labels = {key: f"--preset {preset.name}: {key} =" for key in axes} if preset else {}
    axes.update(dict(table.get("grid", ())))
    labels.update({key: f"{args.config}: study.grid.{key} =" for key, _ in table.get("grid", ())})
    given: set[str] = set()
    for text in args.grid:
        key, values = study.parse_grid_axis(text)
        if key in given:
            raise UserError(f"--grid {key}: given twice; put every value in one --grid")
        given.add(key)
        axes[key] = values
        labels[key] = f"--grid {key}="
    if "model.activation" in axes and activations:
        raise UserError("--grid model.activation=... and --activations both set the activation; use one")
    if "run.seed" in axes and seeds:
        raise UserError("--grid run.seed=... and --seeds both set the seed; use one")
    study.check_axes_values(config, axes.items(), labels)
    spec = study.StudySpec(base=study.settings_of(config), activations=tuple(activations), seeds=tuple(seeds),
                           axes=tuple(axes.items()), init_only=init_only, preset=preset.name if preset else "")
    study_id = study.study_id_for(spec, args.name or table.get("name", ""))
    study_dir = Path(config.run.runs_dir) / study_id
    trials = study.expand(spec, study_dir)
    checked = set()
    for t in trials:  # each distinct activation with its config, once (builds it: imports torch)
        key = (t.config.model.activation, repr(sorted(t.config.model.activation_config.items())))
        if key not in checked:
            checked.add(key)
            check_names(t.config, source=f"trial {t.trial_id}")
    if (study_dir / study.STUDY_FILE).exists():
        manifest = study.read_manifest(study_dir)
        study.reconcile(manifest, trials)
    else:
        manifest = study.new_manifest(study_id, spec, trials, command=sys.argv[1:])
    return study_dir, manifest, trials


# --- running --------------------------------------------------------------------------------------


def _execute(args: argparse.Namespace, study_dir: Path, manifest, trials, init_only: bool) -> int:
    from actlab.engine import study
    from actlab.engine.executors import TrialTask, make_executor

    try:
        study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from actlab.engine.errors import UserError

        raise UserError(f"{study_dir}: cannot create the study folder ({exc.strerror or exc})") from None
    lock = study.StudyLock(study_dir)
    lock.acquire_driver(note=lambda text: print(text, file=sys.stderr, flush=True))
    try:
        if (study_dir / study.STUDY_FILE).exists():  # another driver may have moved it on while we waited
            manifest = study.read_manifest(study_dir)
        view = sys.stdout.isatty() and sys.stdin.isatty() and not args.headless  # the study view (tui/study_view.py)
        book_display = StudyProgress(manifest, io.StringIO() if view else sys.stdout)
        book = study.StudyBook(study_dir, manifest, book_display)
        todo = study.to_resume(manifest)  # running ones lost their driver: they resume from their checkpoint
        book.save()
        by_id = {t.trial_id: t for t in trials}
        threads = args.threads or 1
        tasks = [TrialTask(r.trial_id, by_id[r.trial_id].settings, str((study_dir / r.run_dir).resolve()),
                           init_only, threads) for r in todo]
        device = by_id[trials[0].trial_id].config.run.device if trials else "cpu"
        if args.executor == "ray":
            executor = make_executor("ray", address=args.address, study_dir=str(study_dir.resolve()),
                                     threads=threads, gpus_per_trial=args.gpus_per_trial, device=device)
        else:
            executor = make_executor("local", workers=args.workers or 0, threads=threads,
                                     device=_resolved_device(device), per_device=args.per_device,
                                     study_dir=str(study_dir.resolve()))
        done_before = len(manifest.trials) - len(todo)
        print(f"study {manifest.study_id}: {len(manifest.trials)} trials ({done_before} done before, "
              f"{len(todo)} to run) in {study_dir}", flush=True)
        received: list[int] = []
        previous = {}

        def handler(signum, frame):
            received.append(signum)
            executor.request_stop()

        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                previous[getattr(signal, name)] = signal.signal(getattr(signal, name), handler)
        book_display.begin(len(todo))
        try:
            if view:
                from .study_view import run_beside_study_view

                run_beside_study_view(study_dir, lambda: executor.run(tasks, book), stop=executor.request_stop)
            else:
                executor.run(tasks, book)
        except RuntimeError as exc:  # e.g. the workers cannot start here: one line, the study stays resumable
            print(f"actlab: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)
            book.save()
        book_display.end()
        print(format_summary(study_dir, manifest, init_only), end="", flush=True)
    finally:
        lock.release()
    if received:
        print(f"actlab: study stopped by signal {received[0]}; every running trial wrote a checkpoint. "
              f"Continue with: actlab study --resume {study_dir}", file=sys.stderr)
        return 128 + received[0]
    if any(r.status == "failed" for r in manifest.trials):
        return EXIT_FAILED
    return EXIT_OK


def _resolved_device(device: str) -> str:
    from actlab.engine.device import resolve_device

    return str(resolve_device(device))


# --- progress -------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _pct(value: float | None) -> str:
    return "     -" if value is None else f"{value * 100:6.2f}"


class StudyProgress:
    """One line per finished trial, and the overall bar (a line per trial on a pipe, redrawn on a terminal)."""

    def __init__(self, manifest, stream: TextIO) -> None:
        self.manifest = manifest
        self.stream = stream
        self.tty = stream.isatty()
        self.total = len(manifest.trials)
        self.running: dict[str, float] = {}  # trial -> fraction of its epochs done
        self.started = time.monotonic()
        self.finished_here = 0
        self.to_run = 0
        self._bar_shown = False

    def begin(self, to_run: int) -> None:
        self.started, self.to_run = time.monotonic(), to_run

    def _done(self) -> int:
        return sum(r.done for r in self.manifest.trials)

    def _write(self, text: str) -> None:
        try:
            if self._bar_shown:
                self.stream.write("\r\x1b[2K")
                self._bar_shown = False
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def bar(self) -> str:
        done = self._done()
        elapsed = time.monotonic() - self.started
        progress_here = self.finished_here + sum(self.running.values())
        remaining = self.total - done - sum(self.running.values())
        eta = elapsed * remaining / progress_here if progress_here > 0 else math.inf
        rate = self.finished_here / elapsed * 3600 if elapsed > 0 and self.finished_here else 0.0
        filled = int(BAR_WIDTH * (done + sum(self.running.values())) / max(1, self.total))
        return (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} trials  "
                f"{len(self.running)} running  elapsed {_clock(elapsed)}  ETA {_clock(eta)}  {rate:.1f} trials/h")

    def _draw_bar(self) -> None:
        if not self.tty:
            return
        try:
            self.stream.write("\r\x1b[2K" + self.bar())
            self.stream.flush()
            self._bar_shown = True
        except (OSError, ValueError):
            pass

    def trial_started(self, task, worker: str) -> None:
        self.running.setdefault(task.trial_id, 0.0)
        self._draw_bar()

    def trial_progress(self, progress) -> None:
        if progress.max_epochs:
            self.running[progress.trial_id] = min(1.0, progress.epoch / progress.max_epochs)
        self._draw_bar()

    def trial_finished(self, outcome) -> None:
        self.running.pop(outcome.trial_id, None)
        if outcome.status in ("finished", "early-stopped", "diverged", "failed"):
            self.finished_here += 1
        message = f"  {outcome.message}" if outcome.message and outcome.status != "finished" else ""
        self._write(f"{outcome.trial_id:<30} {outcome.status:<13} best val {_pct(outcome.best_val_acc)}%  "
                    f"test {_pct(outcome.test_acc)}%  {outcome.epochs:>3} epochs  {outcome.seconds:7.1f}s"
                    f"{message}")
        if self.tty:
            self._draw_bar()
        else:
            self._write(self.bar())

    def end(self) -> None:
        if self._bar_shown:
            self._write(self.bar())


# --- summary --------------------------------------------------------------------------------------


def format_summary(study_dir: Path, manifest, init_only: bool) -> str:
    """Test accuracy per group (mean, 95% CI; engine/stats.py), or per-layer init statistics."""
    if init_only:
        return format_init_summary(study_dir, manifest)
    from actlab.engine.stats import format_group_table, group_table

    values: dict[str, list[float]] = {}
    extras: dict[str, dict[str, list[float]]] = {}
    for r in manifest.trials:
        if r.test_acc is not None and r.status in ("finished", "early-stopped"):
            values.setdefault(r.group, []).append(float(r.test_acc))
            extras.setdefault(r.group, {}).setdefault("best_val_acc", []).append(float(r.best_val_acc or 0.0))
            extras[r.group].setdefault("epochs", []).append(float(r.epochs))
    counts = manifest.counts()
    lines = [f"\nstudy {manifest.study_id}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]
    if not values:
        return "\n".join(lines) + "\n(no finished trial with a test accuracy yet)\n"
    from dataclasses import replace

    baseline = "relu" if "relu" in values and len(values["relu"]) >= 2 and len(values) > 1 else None
    rows = group_table(values, baseline=baseline)
    rows = [replace(row, extras={k: sum(v) / len(v) for k, v in extras[row.group].items()}) for row in rows]
    lines.append(format_group_table(rows, metric="test_acc"))
    others = [r for r in manifest.trials if r.status in ("diverged", "failed")]
    for r in others:
        lines.append(f"{r.trial_id}: {r.status}: {r.message}")
    return "\n".join(lines) + ("\n" if others else "")


def format_init_summary(study_dir: Path, manifest) -> str:
    """deep-init style studies: dead units per activation layer and mean |grad| per linear layer, at init."""
    from actlab.engine import lab, metrics

    dead: dict[str, list[list[float]]] = {}
    grads: dict[str, list[list[float]]] = {}
    for r in manifest.trials:
        if r.status != "finished":
            continue
        try:
            table = lab.read_run(study_dir / r.run_dir)
        except Exception:  # an unreadable folder is reported by its trial line already
            continue
        layers = table.layer_stats.get(0, {})
        act = [v.get(metrics.DEAD_EXACT) for k, v in layers.items() if metrics.DEAD_EXACT in v]
        lin = [v.get(metrics.GRAD_MEAN_ABS) for k, v in layers.items() if metrics.GRAD_MEAN_ABS in v]
        dead.setdefault(r.group, []).append([float(x) for x in act])
        grads.setdefault(r.group, []).append([float(x) for x in lin])
    out = [f"\nstudy {manifest.study_id}: at initialisation (no training), mean over seeds",
           "dead units per hidden layer (exact: zero on every training example):"]
    for group, runs_ in dead.items():
        means = [sum(col) / len(col) for col in zip(*runs_)] if runs_ else []
        out.append(f"  {group:<12} [" + ", ".join(f"{m:g}" for m in means) + "]")
    out.append("mean |gradient| of each linear layer's weights (one batch, input to output):")
    for group, runs_ in grads.items():
        means = [sum(col) / len(col) for col in zip(*runs_)] if runs_ else []
        out.append(f"  {group:<12} [" + ", ".join(f"{m:.1e}" for m in means) + "]")
    return "\n".join(out) + "\n"
