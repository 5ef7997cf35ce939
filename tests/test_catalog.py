"""`actlab runs` and the catalog: summary.json per run, the events fallback, unreadable
folders, filters and sort, JSON and CSV, and that reading never changes a run folder."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from actlab.engine import catalog
from actlab.engine.errors import UserError
from actlab.engine.events import EpochDone, LayerStats, RunFinished, RunStarted, read_events
from actlab.engine.metrics import TRAINED_EPOCH
from actlab.engine.runs import UnknownColumnError, read_run
from actlab.engine.summary import SUMMARY_FILE, SummaryWriter, activation_dead_fraction, summarize_events
from run_folders import REAL_RUNS, broken_folders, run_actlab as actlab, shared_real_runs, synthetic_run, tree_state


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, digits_cpu):
    return shared_real_runs(tmp_path_factory, digits_cpu)


# -- summary.json -----------------------------------------------------------------------------

def test_each_real_run_writes_a_summary_matching_its_events(real_runs):
    root, folders = real_runs
    for folder, (study, activation, seed) in zip(folders, REAL_RUNS):
        summary = json.loads((folder / SUMMARY_FILE).read_text())
        events = read_events(folder)
        finished = [e for e in events if isinstance(e, RunFinished)][-1]
        epochs = [e for e in events if isinstance(e, EpochDone)]
        stats = [e for e in events if isinstance(e, LayerStats)]
        deads = {s.epoch: activation_dead_fraction(s) for s in stats}  # epoch -1: the trained table
        assert summary["run_id"] == folder.name and summary["status"] == "finished"
        assert (summary["activation"], summary["seed"], summary["dataset"]) == (activation, seed, "digits")
        assert summary["epochs"] == 2 and summary["max_epochs"] == 2
        assert summary["best_val_acc"] == finished.best_val_acc == max(e.val_acc for e in epochs)
        assert summary["test_acc"] == finished.test_acc and 0.0 < summary["test_acc"] <= 1.0
        assert summary["val_acc_curve"] == [e.val_acc for e in epochs]
        assert summary["seconds_per_epoch"] == pytest.approx(sum(e.seconds for e in epochs) / 2)
        assert summary["peak_dead"] == max(deads.values())
        # at the end: the trained table (exact, best weights) when the probes made one, else the last epoch's
        trained = deads.get(TRAINED_EPOCH)
        assert summary["trained_dead"] == trained
        assert summary["final_dead"] == (trained if trained is not None else deads[max(deads)])
        assert summary["differences"] == {"model.hidden_sizes": [48, 32], "train.epochs": 2, "train.lr": 0.1}
        # the summary is what the events fold to (the fallback gives the same numbers)
        assert {k: v for k, v in summary.items() if k != "updated"} == summarize_events(events)
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_dead_fraction_weighs_layers_by_their_units():
    stats = LayerStats(run_id="r", epoch=1, kinds={"a1": "activation", "a2": "activation", "fc1": "linear"},
                       layers={"a1": {"size": 30.0, "dead_exact_frac": 0.5},
                               "a2": {"size": 10.0, "dead_live_frac": 0.1},
                               "fc1": {"size": 999.0, "dead_exact_frac": 1.0}})
    assert activation_dead_fraction(stats) == pytest.approx((15 + 1) / 40)


def test_seeds_of_one_setting_share_a_config_hash_and_others_do_not(real_runs):
    _, folders = real_runs
    hashes = {(a, s): json.loads((f / SUMMARY_FILE).read_text())["config_hash"] for f, (_, a, s) in zip(folders, REAL_RUNS)}
    assert hashes["relu", 1] == hashes["relu", 2] == hashes["relu", 3]
    assert hashes["tanh", 1] != hashes["relu", 1]


def _events(run_id: str, epochs: int, *, config=None):
    config = config or {"run": {"seed": 7}, "model": {"activation": "relu"}}
    yield RunStarted(run_id=run_id, run_dir="x", config=config, dataset="digits", dataset_note="", device="cpu",
                     input_size=64, num_classes=10, hidden_sizes=(8,), activation="relu", activation_config={},
                     max_epochs=5, steps_per_epoch=4, train_size=1, val_size=1, test_size=1, param_count=1)
    for epoch in range(1, epochs + 1):
        yield EpochDone(run_id=run_id, epoch=epoch, train_loss=1.0, train_acc=0.5, val_loss=1.0,
                        val_acc=0.1 * epoch, seconds=float(epoch), lr=0.01, activation="relu",
                        best_val_acc=0.1 * epoch, best_epoch=epoch, improved=True)


def test_summary_is_current_after_every_epoch_and_on_interruption(tmp_path):
    writer = SummaryWriter(tmp_path)
    for event in _events("r1", 3):
        writer(event)
        data = json.loads((tmp_path / SUMMARY_FILE).read_text())
        assert data["status"] == "running"
        assert data["epochs"] == getattr(event, "epoch", 0)  # written at every epoch, not only at the end
    writer(RunFinished(run_id="r1", status="interrupted", epochs_run=3, best_epoch=3, best_val_acc=0.3,
                       test_acc=None, test_loss=None, seconds=6.0))
    data = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert (data["status"], data["epochs"], data["test_acc"], data["seconds_per_epoch"]) == ("interrupted", 3, None, 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SUMMARY_FILE]  # no temp file left


def test_a_resumed_run_summarises_its_earlier_epochs_from_the_log(tmp_path):
    from actlab.engine.events import event_to_json

    events = list(_events("r2", 2))
    (tmp_path / "events.jsonl").write_text("".join(event_to_json(e) + "\n" for e in events))
    writer = SummaryWriter(tmp_path)  # a resume: subscribed before the run's new events
    for event in list(_events("r2", 4))[0:1] + list(_events("r2", 4))[2:]:  # restarts, replays epoch 2, goes on
        writer(event)
    data = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert data["epochs"] == 4 and data["val_acc_curve"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert data["started"] == events[0].time  # the day the run began, not the resume
    assert data["seconds_per_epoch"] == pytest.approx((1 + 2 + 3 + 4) / 4)


def test_a_refused_summary_write_never_reaches_the_training_loop(tmp_path, monkeypatch):
    import errno

    from actlab.engine import summary

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = SummaryWriter(tmp_path)
    monkeypatch.setattr(summary.os, "fsync", full)
    for event in _events("r3", 1):
        writer(event)  # does not raise
    assert "No space left on device" in writer.error
    assert list(tmp_path.iterdir()) == []  # neither a summary nor a temp file


# -- listing ----------------------------------------------------------------------------------

def test_runs_lists_every_real_run_with_study_and_numbers(real_runs, capsys):
    root, folders = real_runs
    code, out, err = actlab(capsys, "runs", str(root / "runs"), "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert sorted(r["run_id"] for r in rows) == sorted(f.name for f in folders)
    by_id = {r["run_id"]: r for r in rows}
    for folder, (study, activation, seed) in zip(folders, REAL_RUNS):
        row = by_id[folder.name]
        summary = json.loads((folder / SUMMARY_FILE).read_text())
        assert (row["study"] or "", row["activation"], row["seed"]) == (study, activation, seed)
        assert row["test_acc"] == summary["test_acc"] and row["source"] == "summary"
    code, out, _ = actlab(capsys, "runs", str(root / "runs"))
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["run", "date", "study", "activation"]
    assert lines[-1] == f"{len(REAL_RUNS)} runs"
    tanh = next(line for line in lines if "-tanh-" in line)
    summary = json.loads((folders[2] / SUMMARY_FILE).read_text())
    assert f"{100 * summary['test_acc']:.2f}" in tanh and "finished" in tanh
    assert "model.hidden_sizes=48,32 train.epochs=2 train.lr=0.1" in tanh


def test_without_summaries_the_events_give_the_same_table(real_runs, tmp_path, capsys):
    root, _ = real_runs
    copy = tmp_path / "runs"
    shutil.copytree(root / "runs", copy)
    for summary in copy.rglob(SUMMARY_FILE):
        summary.unlink()
    _, with_summary, _ = actlab(capsys, "runs", str(root / "runs"), "--json")
    _, from_events, _ = actlab(capsys, "runs", str(copy), "--json")
    a, b = json.loads(with_summary), json.loads(from_events)
    assert [r["source"] for r in b] == ["events"] * len(REAL_RUNS)
    for row_a, row_b in zip(a, b):
        for key in ("run_id", "study", "activation", "seed", "status", "epochs", "best_val_acc", "test_acc",
                    "peak_dead", "seconds_per_epoch", "config_hash", "differences", "val_acc_curve"):
            assert row_a[key] == row_b[key], key


def test_unreadable_folders_are_listed_with_their_reason(real_runs, tmp_path, capsys):
    root, folders = real_runs
    runs = tmp_path / "runs"
    shutil.copytree(folders[0], runs / folders[0].name)
    (runs / folders[0].name / SUMMARY_FILE).unlink()
    cases = broken_folders(runs, folders[0] / "events.jsonl")
    cut = runs / "torn-mid-run"  # killed mid-line after epoch 1: still a run, still running
    cut.mkdir()
    text = (folders[0] / "events.jsonl").read_bytes()
    end_of_epoch_1 = text.index(b"\n", text.index(b'"type":"EpochDone"')) + 1
    (cut / "events.jsonl").write_bytes(text[: end_of_epoch_1 + 40])  # epoch 1, then half a line
    code, out, err = actlab(capsys, "runs", str(runs), "--json")
    assert code == 0 and err == ""
    rows = {Path(r["path"]).name: r for r in json.loads(out)}
    assert set(rows) == {*cases, folders[0].name, "torn-mid-run"}
    for name, words in cases.items():
        assert rows[name]["status"].startswith("unreadable: "), name
        assert words in rows[name]["status"], (name, rows[name]["status"])
        assert rows[name]["test_acc"] is None
    # no final event and no live process holding the folder's lock: killed (resumable)
    assert rows["torn-mid-run"]["status"] == "killed" and rows["torn-mid-run"]["epochs"] == 1
    assert rows[folders[0].name]["status"] == "finished"
    code, out, _ = actlab(capsys, "runs", str(runs))
    assert code == 0 and "Traceback" not in out
    assert out.splitlines()[-1] == f"{len(cases) + 2} runs ({len(cases)} unreadable)"
    code, out, _ = actlab(capsys, "runs", str(runs), "--where", "status=unreadable", "--json")
    assert sorted(Path(r["path"]).name for r in json.loads(out)) == sorted(cases)


def test_a_permission_denied_log_is_unreadable_not_a_traceback(real_runs, tmp_path, monkeypatch):
    _, folders = real_runs
    run = tmp_path / "runs" / "locked"
    shutil.copytree(folders[0], run)
    (run / SUMMARY_FILE).unlink()
    events = run / "events.jsonl"
    if os.geteuid() != 0:
        events.chmod(0)
    else:  # root reads anything: make the open fail as it would for a user
        real_open = open

        def refusing_open(path, *args, **kwargs):
            if Path(path) == events:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", refusing_open)
    try:
        [record] = catalog.list_runs([tmp_path / "runs"])
    finally:
        events.chmod(0o644)
    assert record.status == "unreadable: cannot read events.jsonl (Permission denied)"


def test_a_run_folder_given_directly_is_listed_alone(real_runs):
    _, folders = real_runs
    [record] = catalog.list_runs([folders[3]])
    assert record.run_id == folders[3].name and record.readable


def test_study_folders_name_the_study_of_their_runs(real_runs):
    root, folders = real_runs
    studies = {r.run_id: r.study for r in catalog.list_runs([root / "runs"])}
    assert studies[folders[3].name] == "study-a"
    assert studies[folders[0].name] is None


# -- filters and sort -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "runs"
    specs = [("a", "relu", 1, 0.91, "finished", 0.1), ("b", "relu", 2, 0.95, "finished", 0.1),
             ("c", "gelu", 1, 0.93, "finished", 0.01), ("d", "gelu", 2, None, "interrupted", 0.1),
             ("e", "tanh", 1, 0.89, "early-stopped", 0.1)]
    for run_id, activation, seed, test_acc, status, lr in specs:
        synthetic_run(root / run_id, run_id=run_id, activation=activation, seed=seed, test_acc=test_acc,
                      status=status, config_extra={"train.lr": lr, **({"probes.enabled": False} if run_id == "e" else {})})
    return root


def ids(capsys, *argv) -> list[str]:
    code, out, err = actlab(capsys, "runs", *argv, "--json")
    assert code == 0, err
    return [r["run_id"] for r in json.loads(out)]


@pytest.mark.parametrize("where, expected", [
    (["activation=relu"], ["a", "b"]),
    (["activation=relu", "seed=2"], ["b"]),
    (["status=finished"], ["a", "b", "c"]),
    (["status!=finished"], ["d", "e"]),
    (["activation=gelu", "status=finished"], ["c"]),
    (["test_acc>0.92"], ["b", "c"]),
    (["test_acc<=0.91"], ["a", "e"]),
    (["test_acc=none"], ["d"]),
    (["train.lr=0.01"], ["c"]),  # a config key; 0.01 is also the lab's default
    (["train.lr=0.1"], ["a", "b", "d", "e"]),
    (["dataset=digits", "seed>=2"], ["b", "d"]),
    (["probes.enabled=false"], ["e"]),  # not in the short list of differences, still a filter
    (["probes.enabled=true", "activation=relu"], ["a", "b"]),
    (["activation=swish"], []),
])
def test_where_filters(synthetic, capsys, where, expected):
    argv = [str(synthetic)]
    for condition in where:
        argv += ["--where", condition]
    assert ids(capsys, *argv) == expected


@pytest.mark.parametrize("sort, expected", [
    ("test_acc", ["b", "c", "a", "e", "d"]),  # accuracies best first, missing last
    ("=-test_acc", ["e", "a", "c", "b", "d"]),  # --sort=-KEY flips
    ("seed", ["a", "c", "e", "b", "d"]),  # stable: folder order within a seed
    ("activation", ["c", "d", "a", "b", "e"]),
    ("best_val_acc", ["a", "b", "c", "d", "e"]),
])
def test_sort(synthetic, capsys, sort, expected):
    argv = [f"--sort{sort}"] if sort.startswith("=") else ["--sort", sort]
    assert ids(capsys, str(synthetic), *argv) == expected


@pytest.mark.parametrize("argv, words", [
    (["--where", "colour=red"], "--where 'colour': unknown key; use one of run_id, date"),
    (["--where", "activation"], "--where 'activation': expected KEY=VALUE"),
    (["--where", "test_acc>high"], "> needs a number"),
    (["--sort", "speed"], "--sort 'speed': unknown key"),
    (["--sort", "train.nope"], "--sort 'train.nope': unknown key"),
])
def test_bad_filters_and_sorts_are_one_line_exit_2(synthetic, capsys, argv, words):
    code, out, err = actlab(capsys, "runs", str(synthetic), *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("actlab: ") and words in err, err


@pytest.mark.parametrize("folder, words", [("missing", "no such folder"), ("a-file", "not a folder")])
def test_bad_folders_are_one_line_exit_2(tmp_path, capsys, folder, words):
    (tmp_path / "a-file").write_text("x")
    code, out, err = actlab(capsys, "runs", str(tmp_path / folder))
    assert code == 2 and out == "" and words in err and err.count("\n") == 1


def test_csv_output_round_trips_the_summaries(synthetic, capsys):
    code, out, _ = actlab(capsys, "runs", str(synthetic), "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["run_id"] for r in rows] == ["a", "b", "c", "d", "e"]
    for row in rows:
        summary = summarize_events(read_events(synthetic / row["run_id"]))
        assert row["test_acc"] == ("" if summary["test_acc"] is None else repr(summary["test_acc"]))
        assert float(row["best_val_acc"]) == summary["best_val_acc"]
        assert float(row["peak_dead"]) == summary["peak_dead"] == 0.2
        lr = "" if row["run_id"] == "c" else " train.lr=0.1"  # c keeps the default lr: no difference
        assert row["differences"] == f"train.epochs=2{lr}"


def test_an_empty_folder_says_no_runs(tmp_path, capsys):
    code, out, _ = actlab(capsys, "runs", str(tmp_path))
    assert code == 0 and out == f"no runs under {tmp_path}\n"


# -- read-only --------------------------------------------------------------------------------

def test_runs_compare_and_export_change_nothing_in_run_folders(real_runs, tmp_path, capsys):
    root, _ = real_runs
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs", runs)
    for summary in list(runs.rglob(SUMMARY_FILE))[:2]:  # some from summaries, some from events
        summary.unlink()
    broken_folders(runs / "broken", next(runs.glob("*relu-s1*")) / "events.jsonl")
    before = tree_state(runs)
    for argv in (["runs", str(runs)], ["runs", str(runs), "--json"], ["runs", str(runs), "--csv", "--sort", "test_acc"],
                 ["compare", str(runs), "--baseline", "relu", "--curves"], ["compare", str(runs), "--json"],
                 ["export", str(runs), "--csv", str(tmp_path / "csv"), "--tensorboard", str(tmp_path / "tb")]):
        code, _, err = actlab(capsys, *argv)
        assert code == 0, (argv, err)
    assert tree_state(runs) == before


# -- RunTable.column --------------------------------------------------------------------------

def test_read_run_column_names_the_valid_layers_and_metrics(real_runs):
    import re

    _, folders = real_runs
    table = read_run(folders[0])
    layers = sorted({name for stats in table.layer_stats.values() for name in stats})
    linear = next(name for name in layers if table.layer_stats[1][name].get("grad_l2") is not None)
    metrics = sorted(table.layer_stats[1][linear])
    logged = [(e.epoch, e.layers["act1"]["dead_live_frac"]) for e in read_events(folders[0])
              if isinstance(e, LayerStats) and e.epoch != TRAINED_EPOCH and "dead_live_frac" in e.layers.get("act1", {})]
    assert len(logged) >= 2 and table.column("act1", "dead_live_frac") == logged
    with pytest.raises(UnknownColumnError, match=re.escape(f"no layer 'act9'; layers: {', '.join(layers)}")):
        table.column("act9", "dead_live_frac")
    with pytest.raises(KeyError, match=re.escape(f"layer {linear!r} has no metric 'dead_exact'; "
                                                 f"metrics: {', '.join(metrics)}")):
        table.column(linear, "dead_exact")
    with pytest.raises(UserError):
        table.column("act1", "nope")


def test_a_study_folder_given_directly_names_its_runs_study(tmp_path):
    study = tmp_path / "seeds-table"
    synthetic_run(study / "t1", run_id="t1")
    synthetic_run(study / "t2", run_id="t2")
    (study / "study.json").write_text("{}")
    (tmp_path / "plain").mkdir()
    synthetic_run(tmp_path / "plain" / "t3", run_id="t3")
    assert {r.run_id: r.study for r in catalog.list_runs([study, tmp_path / "plain"])} == \
        {"t1": "seeds-table", "t2": "seeds-table", "t3": None}
