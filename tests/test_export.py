"""`actlab export`: tidy CSV tables that read back to the logged values, and real TensorBoard
event files read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from actlab.engine.events import EpochDone, LayerStats, StepStats, event_to_json, read_events
from actlab.engine.export import EPOCH_METRICS
from actlab.engine.metrics import TRAINED_EPOCH
from run_folders import run_actlab as actlab, shared_real_runs, synthetic_run


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, digits_cpu):
    return shared_real_runs(tmp_path_factory, digits_cpu)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_tables_read_back_to_the_event_values(real_runs, tmp_path, capsys):
    root, folders = real_runs
    out_dir = tmp_path / "csv"
    code, out, err = actlab(capsys, "export", str(root / "runs"), "--csv", str(out_dir))
    assert code == 0 and err == ""
    epochs, layers, steps = (read_csv(out_dir / name) for name in ("epochs.csv", "layers.csv", "steps.csv"))
    assert list(epochs[0]) == ["run", "epoch", "metric", "value"]
    assert list(layers[0]) == ["run", "epoch", "layer", "kind", "metric", "value"]
    assert list(steps[0]) == ["run", "epoch", "first_step", "sample", "layer", "metric", "value"]
    assert f"epochs.csv ({len(epochs)} rows)" in out
    got_epochs = {(r["run"], int(r["epoch"]), r["metric"]): float(r["value"]) for r in epochs}
    got_layers = {(r["run"], int(r["epoch"]), r["layer"], r["kind"], r["metric"]): float(r["value"]) for r in layers}
    got_steps = {(r["run"], int(r["first_step"]), int(r["sample"]), r["layer"], r["metric"]): float(r["value"])
                 for r in steps}
    want_epochs, want_layers, want_steps = {}, {}, {}
    for folder in folders:
        run = folder.name
        for event in read_events(folder):
            if isinstance(event, EpochDone):
                for metric in EPOCH_METRICS:
                    want_epochs[run, event.epoch, metric] = getattr(event, metric)
            elif isinstance(event, LayerStats):
                for layer, metrics in event.layers.items():
                    for metric, value in metrics.items():
                        want_layers[run, event.epoch, layer, event.kinds.get(layer, ""), metric] = value
            elif isinstance(event, StepStats):
                for layer, metrics in event.series.items():
                    for metric, values in metrics.items():
                        for i, value in enumerate(values):
                            want_steps[run, event.first_step, i, layer, metric] = value
    assert got_epochs == want_epochs  # exact: floats are written with repr()
    assert got_layers == want_layers
    assert got_steps == want_steps
    assert len(epochs) == len(want_epochs) and len(layers) == len(want_layers) and len(steps) == len(want_steps)
    assert {k[2] for k in want_layers} >= {"act1", "act2"}
    assert len(want_steps) > 0
    runs = read_csv(out_dir / "runs.csv")
    assert sorted(r["run_id"] for r in runs) == sorted(f.name for f in folders)


def test_a_replayed_epoch_keeps_its_newest_values(tmp_path, capsys):
    run = synthetic_run(tmp_path / "runs" / "r", run_id="r", val_accs=(0.5, 0.6))
    replay = [e for e in read_events(run) if isinstance(e, EpochDone) and e.epoch == 2][0]
    import dataclasses

    with open(run / "events.jsonl", "a", encoding="utf-8") as f:  # resumed after a kill: epoch 2 again
        f.write(event_to_json(dataclasses.replace(replay, val_acc=0.65, best_val_acc=0.65)) + "\n")
    actlab(capsys, "export", str(run), "--csv", str(tmp_path / "csv"))
    rows = [r for r in read_csv(tmp_path / "csv" / "epochs.csv") if r["metric"] == "val_acc"]
    assert [(r["epoch"], float(r["value"])) for r in rows] == [("1", 0.5), ("2", 0.65)]


def test_tensorboard_files_read_back_with_tensorboard(real_runs, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, folders = real_runs
    out_dir = tmp_path / "tb"
    code, out, err = actlab(capsys, "export", str(root / "runs"), "--tensorboard", str(out_dir))
    assert code == 0 and err == "" and f"{len(folders)} runs" in out
    for folder in folders:
        files = list((out_dir / folder.name).glob("events.out.tfevents.*"))
        assert len(files) == 1
        acc = EventAccumulator(str(out_dir / folder.name), size_guidance={"scalars": 0, "histograms": 0})
        acc.Reload()
        events = read_events(folder)
        epochs = [e for e in events if isinstance(e, EpochDone)]
        stats = [e for e in events if isinstance(e, LayerStats) and e.epoch != TRAINED_EPOCH]
        trained = [e for e in events if isinstance(e, LayerStats) and e.epoch == TRAINED_EPOCH]
        val = acc.Scalars("epoch/val_acc")
        assert [s.step for s in val] == [e.epoch for e in epochs]
        assert [s.value for s in val] == pytest.approx([e.val_acc for e in epochs], rel=1e-6)  # float32
        dead = acc.Scalars("layer/act1/dead_live_frac")
        assert [(s.step, s.value) for s in dead] == [(e.epoch, pytest.approx(e.layers["act1"]["dead_live_frac"],
                                                                             abs=1e-7))
                                                     for e in stats if "dead_live_frac" in e.layers["act1"]]
        tags = acc.Tags()
        if trained:  # the probes' trained table (best weights, after training): own tags at the last epoch
            [exact] = acc.Scalars("trained/act1/dead_exact_frac")
            assert (exact.step, exact.value) == (epochs[-1].epoch,
                                                 pytest.approx(trained[0].layers["act1"]["dead_exact_frac"], abs=1e-7))
        else:
            assert not [t for t in tags["scalars"] if t.startswith("trained/")]
        hist_names = sorted({name for e in stats for name in e.histograms})
        assert hist_names and sorted(t[len("hist/"):] for t in tags["histograms"] if t.startswith("hist/")) == hist_names
        name = hist_names[0]
        for record in acc.Histograms(f"hist/{name}"):
            source = next(e for e in stats if e.epoch == record.step).histograms[name]
            assert record.histogram_value.num == pytest.approx(sum(source["counts"]))
            assert list(record.histogram_value.bucket_limit) == pytest.approx(source["edges"][1:])
            assert list(record.histogram_value.bucket) == pytest.approx(source["counts"])
        step_tags = [t for t in tags["scalars"] if t.startswith("step/")]
        series = defaultdict(int)
        for e in events:
            if isinstance(e, StepStats):
                for layer, metrics in e.series.items():
                    for metric, values in metrics.items():
                        series[f"step/{layer}/{metric}"] += len(values)
        assert sorted(step_tags) == sorted(series)
        assert {t: len(acc.Scalars(t)) for t in step_tags} == dict(series)
        finished_test = json.loads((folder / "summary.json").read_text())["test_acc"]
        assert acc.Scalars("run/test_acc")[0].value == pytest.approx(finished_test, rel=1e-6)


def test_without_tensorboard_one_line_says_what_to_install(real_runs, tmp_path, capsys, monkeypatch):
    root, _ = real_runs
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "torch.utils.tensorboard"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    code, out, err = actlab(capsys, "export", str(root / "runs"), "--tensorboard", str(tmp_path / "tb"),
                            "--csv", str(tmp_path / "csv"))
    assert code == 2 and out == ""
    assert err == 'actlab: TensorBoard export needs the tensorboard package: pip install "actlab[tensorboard]"\n'
    assert not (tmp_path / "tb").exists() and not (tmp_path / "csv").exists()


@pytest.mark.parametrize("case, words", [
    ("no-target", "say where to, with --csv DIR and/or --tensorboard DIR"),
    ("inside-run", "inside the run folder"),
    ("target-is-a-file", "exists and is not a folder"),
    ("no-runs", "no readable runs under"),
    ("missing", "no such folder"),
])
def test_bad_exports_are_one_line_and_write_nothing(real_runs, tmp_path, capsys, case, words):
    import shutil

    from run_folders import tree_state

    root, folders = real_runs
    runs = tmp_path / "runs"
    shutil.copytree(folders[0], runs / folders[0].name)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty").mkdir()
    argv = {"no-target": [str(runs)],
            "inside-run": [str(runs), "--csv", str(runs / folders[0].name / "export")],
            "target-is-a-file": [str(runs), "--csv", str(tmp_path / "a-file")],
            "no-runs": [str(tmp_path / "empty"), "--csv", str(tmp_path / "out")],
            "missing": [str(tmp_path / "nowhere"), "--csv", str(tmp_path / "out")]}[case]
    before = tree_state(tmp_path)
    code, out, err = actlab(capsys, "export", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err, err
    assert tree_state(tmp_path) == before
