"""Exporting runs as tidy CSV tables and as TensorBoard event files.

The CSV tables are long ("tidy"): one value per line, so any tool can pivot them.

    epochs.csv  run, epoch, metric, value                    (every EpochDone number)
    layers.csv  run, epoch, layer, kind, metric, value       (every LayerStats number; epoch 0 = at
                init, epoch -1 = the trained table: exact counts on the best weights after training)
    steps.csv   run, epoch, first_step, sample, layer, metric, value
                (per-step gradient series: `sample` counts the measured steps of one StepStats,
                 the first of which is global step `first_step`)
    runs.csv    one line per run: its summary (as `actlab runs --csv`)

Floats are written with repr(), so reading a table back gives the logged values exactly.
For a resumed run, an epoch trained twice (replayed after a kill) keeps its newest values.
TensorBoard export is an optional extra (`pip install "actlab[tensorboard]"`): scalars per
epoch, per layer and per measured step, and the probes' histograms, one folder per run.
Nothing here writes into a run folder.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .catalog import RunRecord, runs_to_csv
from .errors import UserError
from .events import EVENTS_FILE, EpochDone, LayerStats, RunFinished, RunStarted, StepStats, read_events
from .metrics import TRAINED_EPOCH

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "seconds", "lr", "best_val_acc")
TENSORBOARD_MISSING = 'TensorBoard export needs the tensorboard package: pip install "actlab[tensorboard]"'


@dataclass
class RunEvents:
    """What an export needs of one run, de-duplicated by epoch (a resumed run replays epochs)."""

    label: str
    started: RunStarted | None
    epochs: dict[int, EpochDone]
    layers: dict[int, LayerStats]
    steps: dict[int, StepStats]  # first_step -> series
    finished: RunFinished | None


def read_run_events(record: RunRecord, label: str) -> RunEvents:
    """Read one run's events.jsonl (UserError naming the folder when it has none)."""
    path = record.path / EVENTS_FILE
    try:
        events = read_events(path)
    except OSError as exc:
        raise UserError(f"{record.path}: cannot read {EVENTS_FILE} ({exc.strerror or exc})") from None
    out = RunEvents(label, None, {}, {}, {}, None)
    for event in events:
        if isinstance(event, RunStarted):
            out.started = out.started or event
        elif isinstance(event, EpochDone):
            out.epochs[event.epoch] = event
        elif isinstance(event, LayerStats):
            out.layers[event.epoch] = event
        elif isinstance(event, StepStats):
            out.steps[event.first_step] = event
        elif isinstance(event, RunFinished):
            out.finished = event
    return out


def run_labels(records: Sequence[RunRecord]) -> list[str]:
    """The name of each run in the exported tables: its run id, with the study in front when
    two exported runs share an id (the same id in two studies)."""
    ids = [r.run_id for r in records]
    return [f"{r.study}/{r.run_id}" if ids.count(r.run_id) > 1 and r.study else r.run_id for r in records]


def exportable(records: Iterable[RunRecord]) -> list[RunRecord]:
    """The readable runs that have an event log (the tables come from it)."""
    return [r for r in records if r.readable and (r.path / EVENTS_FILE).is_file()]


def check_target(out_dir: Path, records: Sequence[RunRecord]) -> None:
    """Refuse a target that is a file or lies inside one of the runs being exported."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    target = out_dir.resolve()
    for record in records:
        run = record.path.resolve()
        if target == run or run in target.parents:
            raise UserError(f"{out_dir}: inside the run folder {record.path}; export somewhere else "
                            "(run folders are never written to)")


# -- CSV ---------------------------------------------------------------------------------------

def _cell(value: Any) -> Any:
    return repr(float(value)) if isinstance(value, float) else value


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write atomically (temp + rename); returns the number of data rows."""
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            for row in rows:
                writer.writerow([_cell(v) for v in row])
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return count


def _epoch_rows(runs: Sequence[RunEvents]):
    for run in runs:
        for epoch in sorted(run.epochs):
            event = run.epochs[epoch]
            for metric in EPOCH_METRICS:
                yield run.label, epoch, metric, getattr(event, metric)


def _layer_rows(runs: Sequence[RunEvents]):
    for run in runs:
        for epoch in sorted(run.layers):
            event = run.layers[epoch]
            for layer, metrics in event.layers.items():
                kind = event.kinds.get(layer, "")
                for metric, value in metrics.items():
                    yield run.label, epoch, layer, kind, metric, value


def _step_rows(runs: Sequence[RunEvents]):
    for run in runs:
        for first in sorted(run.steps):
            event = run.steps[first]
            for layer, metrics in event.series.items():
                for metric, values in metrics.items():
                    for sample, value in enumerate(values):
                        yield run.label, event.epoch, first, sample, layer, metric, value


def export_csv(records: Sequence[RunRecord], out_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Write epochs.csv, layers.csv, steps.csv and runs.csv into `out_dir`; rows per file."""
    out = Path(out_dir)
    records = exportable(records)
    check_target(out, records)
    runs = [read_run_events(r, label) for r, label in zip(records, run_labels(records))]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the folder ({exc.strerror or exc})") from None
    counts = {
        "epochs.csv": _write_csv(out / "epochs.csv", ("run", "epoch", "metric", "value"), _epoch_rows(runs)),
        "layers.csv": _write_csv(out / "layers.csv", ("run", "epoch", "layer", "kind", "metric", "value"),
                                 _layer_rows(runs)),
        "steps.csv": _write_csv(out / "steps.csv",
                                ("run", "epoch", "first_step", "sample", "layer", "metric", "value"), _step_rows(runs)),
    }
    text = runs_to_csv(records)
    (out / ".runs.csv.tmp").write_text(text, encoding="utf-8")
    os.replace(out / ".runs.csv.tmp", out / "runs.csv")
    counts["runs.csv"] = len(records)
    return counts


# -- TensorBoard -------------------------------------------------------------------------------

def tensorboard_writer_class():
    """torch's SummaryWriter; UserError with the install line when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(TENSORBOARD_MISSING) from None
    return SummaryWriter


def _add_histogram(writer, tag: str, hist: dict[str, list[float]], step: int) -> bool:
    """A pre-binned probe histogram as a TensorBoard histogram (bin centres stand for the values)."""
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if len(edges) != len(counts) + 1 or not counts:
        return False
    total = float(sum(counts))
    if total <= 0:
        return False
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    writer.add_histogram_raw(tag, min=float(edges[0]), max=float(edges[-1]), num=int(total),
                             sum=sum(c * n for c, n in zip(centres, counts)),
                             sum_squares=sum(c * c * n for c, n in zip(centres, counts)),
                             bucket_limits=[float(e) for e in edges[1:]], bucket_counts=[float(n) for n in counts],
                             global_step=step)
    return True


def export_tensorboard(records: Sequence[RunRecord], out_dir: str | os.PathLike[str]) -> dict[str, int]:
    """One TensorBoard folder per run under `out_dir` (`tensorboard --logdir out_dir`).

    Tags: `epoch/<metric>` and `layer/<layer>/<metric>` by epoch (epoch 0 = at init),
    `hist/<kind>/<layer>` histograms by epoch, the trained table as `trained/<layer>/<metric>`
    (and `trained_hist/...`) at the last epoch, `step/<layer>/<metric>` by global step (the
    measured steps: the first of each StepStats, then every `probes.gradients_every`-th),
    `run/test_acc`, and the config as text. Returns counts of runs, scalars and histograms.
    """
    writer_class = tensorboard_writer_class()
    out = Path(out_dir)
    records = exportable(records)
    check_target(out, records)
    counts = {"runs": 0, "scalars": 0, "histograms": 0}
    for record, label in zip(records, run_labels(records)):
        run = read_run_events(record, label)
        every = 1
        if run.started is not None:
            every = int((run.started.config.get("probes") or {}).get("gradients_every", 1) or 1)
        try:
            writer = writer_class(log_dir=str(out / label))
        except OSError as exc:
            raise UserError(f"{out / label}: cannot write ({exc.strerror or exc})") from None
        try:
            if run.started is not None:
                writer.add_text("config", "```\n" + json.dumps(run.started.config, indent=2) + "\n```", 0)
            for epoch in sorted(run.epochs):
                event = run.epochs[epoch]
                for metric in EPOCH_METRICS:
                    writer.add_scalar(f"epoch/{metric}", getattr(event, metric), epoch)
                    counts["scalars"] += 1
            last_epoch = max(run.epochs, default=0)
            for epoch in sorted(run.layers):
                event = run.layers[epoch]
                # the trained table (best weights, after training) gets tags of its own at the last epoch
                layer_tag, hist_tag, step = ("trained", "trained_hist", last_epoch) if epoch == TRAINED_EPOCH \
                    else ("layer", "hist", epoch)
                for layer, metrics in event.layers.items():
                    for metric, value in metrics.items():
                        writer.add_scalar(f"{layer_tag}/{layer}/{metric}", value, step)
                        counts["scalars"] += 1
                for name, hist in event.histograms.items():
                    counts["histograms"] += _add_histogram(writer, f"{hist_tag}/{name}", hist, step)
            for first in sorted(run.steps):
                event = run.steps[first]
                for layer, metrics in event.series.items():
                    for metric, values in metrics.items():
                        for i, value in enumerate(values):
                            writer.add_scalar(f"step/{layer}/{metric}", value, first + i * every)
                            counts["scalars"] += 1
            if run.finished is not None and run.finished.test_acc is not None:
                writer.add_scalar("run/test_acc", run.finished.test_acc, run.finished.epochs_run)
                counts["scalars"] += 1
        finally:
            writer.close()
        counts["runs"] += 1
    return counts
