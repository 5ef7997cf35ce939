"""Studies: grid expansion, flag and [study] validation, the local executor against `actlab run`,
failing and diverging trials, resume, and the missing-Ray message."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actlab.engine import lab, study
from actlab.engine.config import config_from_dict
from actlab.engine.events import RunStarted, read_events
from actlab.tui.cli import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--dataset", "digits", "--set", "probes.enabled=false", "--device", "cpu"]


def base_dict(**sections):
    return config_from_dict(sections).to_dict()


# --- grid expansion -------------------------------------------------------------------------------

VALUE_CASES = [  # (text as on the command line, parsed values)
    ("train.lr=0.01,0.003", (0.01, 0.003)),
    ("train.lr=1e-2,3e-3,1", (0.01, 0.003, 1)),
    ("train.optimizer=sgd,adam", ("sgd", "adam")),
    ('train.optimizer="sgd","adam"', ("sgd", "adam")),
    ("probes.enabled=true,false", (True, False)),
    ("model.hidden_sizes=[512,256,256,128];[256]*10", ([512, 256, 256, 128], [256] * 10)),
    ("model.hidden_sizes=[64, 32],[16]", ([64, 32], [16])),
    ("model.hidden_sizes=[8]*3;[4]*2;[2]", ([8] * 3, [4] * 2, [2])),
    ("model.activation_config={alpha = 0.2},{alpha = 0.05}", ({"alpha": 0.2}, {"alpha": 0.05})),
]


@pytest.mark.parametrize("text,values", VALUE_CASES)
def test_grid_values_parse_as_toml_with_repetition(text, values):
    key, parsed = study.parse_grid_axis(text)
    assert key == text.split("=")[0]
    assert parsed == values


@pytest.mark.parametrize("n_act,n_seeds,axis_lens", list(itertools.product((1, 2, 3), (1, 3), ((), (2,), (2, 3)))))
def test_expansion_is_the_cross_product_seeds_outermost(tmp_path, n_act, n_seeds, axis_lens):
    acts = ("relu", "gelu", "mish")[:n_act]
    seeds = tuple(range(10, 10 + n_seeds))
    pools = {"train.lr": (0.1, 0.03, 0.01), "train.batch_size": (16, 32, 64)}
    axes = tuple((key, pools[key][:n]) for key, n in zip(pools, axis_lens))
    spec = study.StudySpec(base=base_dict(data={"dataset": "digits"}), activations=acts, seeds=seeds, axes=axes)
    trials = study.expand(spec, tmp_path / "s")
    expected = n_act * n_seeds * math.prod(axis_lens)
    assert len(trials) == expected
    assert len({t.trial_id for t in trials}) == expected  # one folder per trial
    assert len({t.config_hash for t in trials}) == expected  # each trial computes something different
    combos = {(t.config.model.activation, t.config.run.seed, t.config.train.lr, t.config.train.batch_size)
              for t in trials}
    assert len(combos) == expected
    # seeds outermost: the first block of trials covers every group with the first seed
    per_seed = expected // n_seeds
    assert {t.config.run.seed for t in trials[:per_seed]} == {seeds[0]}
    assert len({t.group for t in trials[:per_seed]}) == per_seed
    # every trial writes into the study folder, named after itself
    assert all(t.config.run.runs_dir == str(tmp_path / "s") and t.config.run.name == t.trial_id for t in trials)
    # the same spec gives the same trials and hashes (a re-run finds its study)
    again = study.expand(spec, tmp_path / "s")
    assert [(t.trial_id, t.config_hash) for t in again] == [(t.trial_id, t.config_hash) for t in trials]


def test_study_id_follows_the_spec_and_config_hash_ignores_placement(tmp_path):
    spec = study.StudySpec(base=base_dict(), activations=("relu",), seeds=(0, 1))
    moved = study.StudySpec(base=base_dict(run={"runs_dir": "elsewhere", "name": "x"}), activations=("relu",),
                            seeds=(0, 1))
    other = study.StudySpec(base=base_dict(), activations=("relu",), seeds=(0, 2))
    assert study.study_id_for(spec) == study.study_id_for(moved)
    assert study.study_id_for(spec) != study.study_id_for(other)
    a = study.expand(spec, tmp_path / "a")[0]
    b = study.expand(spec, tmp_path / "b")[0]
    assert a.config_hash == b.config_hash and a.config.run.runs_dir != b.config.run.runs_dir


@pytest.mark.parametrize("text,count", [("5", 5), ("1", 1), ("0,1,2", 3), ("7,3", 2), ("42", 42)])
def test_seeds_count_or_list(text, count):
    seeds = study.parse_seeds(text)
    assert len(seeds) == count
    if "," in text:
        assert seeds == tuple(int(s) for s in text.split(","))
    else:
        assert seeds == tuple(range(count))


def test_activation_sets():
    assert study.parse_activations("lab") == study.LAB_ACTIVATIONS and len(study.LAB_ACTIVATIONS) == 10
    assert study.parse_activations("SiLU,relu") == ("swish", "relu")
    assert len(study.parse_activations("all")) >= 10


def test_study_table_in_a_toml_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.toml").write_text(textwrap.dedent("""
        [data]
        dataset = "digits"
        [train]
        epochs = 2
        [study]
        activations = ["relu", "tanh"]
        seeds = [3, 4, 5]
        grid = { "train.lr" = [0.1, 0.01], "model.hidden_sizes" = "[32];[16]*2" }
    """), encoding="utf-8")
    assert main(["study", "--config", "study.toml", "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("t")]
    assert len(lines) == 2 * 3 * 2 * 2
    assert not (tmp_path / "runs").exists()  # a dry run creates nothing


# --- bad input: one line, exit 2, nothing created ----------------------------------------------

BAD_STUDY = [
    (["--grid", "train.lrr=0.1,0.2"], "train.lrr"),
    (["--grid", "trian.lr=0.1"], "trian.lr"),
    (["--grid", "train.lr=-1,0.1"], "train.lr"),
    (["--grid", "train.lr="], "--grid train.lr="),
    (["--grid", "train.lr"], "--grid train.lr"),
    (["--grid", "train.lr=0.1,0.1"], "repeated"),
    (["--grid", "model.hidden_sizes=[0];[8]"], "model.hidden_sizes"),
    (["--grid", "model.hidden_sizes=[8]*x"], "model.hidden_sizes"),
    (["--grid", "train.optimizer=sgd,rmsprop"], "train.optimizer"),
    (["--grid", "train.lr=0.1", "--grid", "train.lr=0.2"], "given twice"),
    (["--seeds", "-1"], "--seeds"),
    (["--seeds", "0"], "--seeds"),
    (["--seeds", "1,1"], "--seeds"),
    (["--seeds", "x"], "--seeds"),
    (["--seeds", "2", "--seed", "3"], "--seed"),
    (["--activations", "relu,nope"], "--activations"),
    (["--activations", "relu,relu"], "--activations"),
    (["--activations", "relu", "--activation", "gelu"], "--activation"),
    (["--activations", "relu", "--grid", "model.activation=gelu,tanh"], "model.activation"),
    (["--preset", "nope"], "--preset"),
    (["--set", "train.lr=-1"], "--set train.lr"),
    (["--set", "bogus.key=1"], "bogus"),
    (["--set", "train.lr"], "--set train.lr"),
    (["--lr", "-0.5"], "--lr"),
    (["--batch-size", "0"], "--batch-size"),
    (["--hidden", "512,x"], "--hidden"),
    (["--hidden", "0"], "--hidden"),
    (["--workers", "0"], "--workers"),
    (["--threads", "0"], "--threads"),
    (["--address", "auto"], "--executor ray"),
    (["--name", "../escape"], "--name"),
    (["--resume", "no/such/study"], "--resume"),
]


@pytest.mark.parametrize("argv,named", BAD_STUDY)
def test_bad_study_input_is_one_line_exit_2_nothing_created(tmp_path, monkeypatch, capsys, argv, named):
    monkeypatch.chdir(tmp_path)
    code = main(["study", "--dataset", "digits", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("actlab: ") and "Traceback" not in err
    assert named in err
    assert list(tmp_path.iterdir()) == []


BAD_TABLES = [  # ([study] table body, what the one line must name)
    ("bogus = 1", "study.bogus"),
    ("seeds = -1", "study.seeds"),
    ("seeds = [1, 1]", "study.seeds"),
    ("seeds = 1.5", "study.seeds"),
    ("activations = 3", "study.activations"),
    ('activations = ["relu", "nope"]', "study.activations"),
    ("grid = 5", "study.grid"),
    ('grid = { "train.lrr" = [0.1] }', "train.lrr"),
    ('grid = { "train.lr" = [] }', "study.grid.train.lr"),
    ('grid = { "train.lr" = [-1.0, 0.1] }', "train.lr"),
    ('preset = "nope"', "study.preset"),
    ("epochs = -1", "study.epochs"),
    ('name = 7', "study.name"),
]


@pytest.mark.parametrize("body,named", BAD_TABLES)
def test_bad_study_table_is_one_line_with_file_and_line(tmp_path, monkeypatch, capsys, body, named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(f"[data]\ndataset = \"digits\"\n\n[study]\n{body}\n", encoding="utf-8")
    assert main(["study", "--config", "s.toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "s.toml" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


BAD_RUN = [(["--set", "train.momentum=1.5"], "train.momentum"), (["--set", "model.hidden_sizes=[]"], "hidden_sizes"),
           (["--set", "nosuch=1"], "nosuch"), (["--set", "train.epochs=ten"], "train.epochs"),
           (["--lr", "0"], "--lr"), (["--hidden", ""], "--hidden")]


@pytest.mark.parametrize("argv,named", BAD_RUN)
def test_bad_set_on_actlab_run(tmp_path, monkeypatch, capsys, argv, named):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--headless", "--dataset", "digits", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err
    assert not (tmp_path / "runs").exists()


def test_set_and_short_flags_reach_the_run_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--headless", "--dataset", "digits", "--epochs", "1", "--set", "train.optimizer=adam",
            "--set", "train.lr=0.5", "--lr", "0.002", "--batch-size", "64", "--hidden", "32,16",
            "--set", "probes.enabled=false"]
    assert main(argv) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = lab.read_run_config(run_dir)
    assert (config.train.optimizer, config.train.lr, config.train.batch_size) == ("adam", 0.002, 64)
    assert config.model.hidden_sizes == (32, 16)


# --- the local executor ----------------------------------------------------------------------------


def epochs_of(run_dir: Path) -> list[tuple[int, float, float]]:
    return [(e["epoch"], e["train_loss"], e["val_acc"]) for e in lab.read_run(run_dir).epochs]


def test_local_study_matches_actlab_run(tmp_path, monkeypatch, capsys):
    """Each trial of a 2-worker study trains exactly as `actlab run` with the same config and seed."""
    import torch

    torch.set_num_threads(1)  # the workers train with one thread each
    monkeypatch.chdir(tmp_path)
    common = [*FAST, "--epochs", "3", "--hidden", "64,32"]
    assert main(["study", *common, "--activations", "relu,tanh", "--seeds", "3,4", "--workers", "2",
                 "--name", "s"]) == 0
    out = capsys.readouterr().out
    manifest = study.read_manifest(tmp_path / "runs" / "s")
    assert [r.status for r in manifest.trials] == ["finished"] * 4
    assert "mean %" in out and "95% CI" in out  # the grouped summary from engine/stats.py
    for activation, seed in (("tanh", 3), ("relu", 4)):
        assert main(["run", "--headless", *common, "--activation", activation, "--seed", str(seed),
                     "--set", "run.runs_dir=\"solo\""]) == 0
        (solo,) = [d for d in (tmp_path / "solo").iterdir() if f"-{activation}-s{seed}" in d.name]
        record = next(r for r in manifest.trials if r.group == activation and f"-s{seed}" in r.trial_id)
        trial_dir = tmp_path / "runs" / "s" / record.run_dir
        assert epochs_of(trial_dir) == epochs_of(solo)
        assert record.test_acc == lab.read_run(solo).test_acc
        assert lab.read_run_config(trial_dir).train.lr == lab.read_run_config(solo).train.lr


def test_failing_and_diverging_trials_are_recorded_and_the_others_finish(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["study", "--set", "probes.enabled=false", "--device", "cpu", "--epochs", "2",
            "--hidden", "16", "--set", 'data.source="/nonexistent/folder"', "--set", 'data.fallback="none"',
            "--grid", "data.dataset=digits,mnist", "--grid", "train.lr=0.01,1e30", "--workers", "2", "--name", "f"]
    code = main(argv)
    assert code == 1  # some trial failed; the study itself ran to its end
    manifest = study.read_manifest(tmp_path / "runs" / "f")
    by_key = {(r.overrides["data.dataset"], r.overrides["train.lr"]): r for r in manifest.trials}
    assert by_key[("digits", 0.01)].status == "finished" and by_key[("digits", 0.01)].test_acc is not None
    assert by_key[("digits", 1e30)].status == "diverged" and "non-finite" in by_key[("digits", 1e30)].message
    for lr in (0.01, 1e30):
        failed = by_key[("mnist", lr)]
        assert failed.status == "failed" and "/nonexistent/folder" in failed.message
    out = capsys.readouterr().out
    assert out.count(" failed ") >= 2 and "diverged" in out
    # run again: the failed trials are tried again (their cause may be fixed), the others are not
    assert main(argv) == 1
    again = {(r.overrides["data.dataset"], r.overrides["train.lr"]): r for r in
             study.read_manifest(tmp_path / "runs" / "f").trials}
    assert {k: r.attempts for k, r in again.items()} == {("digits", 0.01): 1, ("digits", 1e30): 1,
                                                          ("mnist", 0.01): 2, ("mnist", 1e30): 2}
    assert again[("digits", 0.01)].test_acc == by_key[("digits", 0.01)].test_acc


def test_rerunning_the_same_command_skips_finished_trials(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["study", *FAST, "--epochs", "2", "--hidden", "16", "--activations", "relu", "--seeds", "2",
            "--workers", "1"]
    assert main(argv) == 0
    (study_dir,) = (tmp_path / "runs").iterdir()
    before = {r.trial_id: r.attempts for r in study.read_manifest(study_dir).trials}
    assert main(argv) == 0
    assert "0 to run" in capsys.readouterr().out
    after = study.read_manifest(study_dir)
    assert {r.trial_id: r.attempts for r in after.trials} == before == {t: 1 for t in before}
    for record in after.trials:
        starts = [e for e in read_events(study_dir / record.run_dir) if isinstance(e, RunStarted)]
        assert len(starts) == 1
    assert main(["study", "--resume", str(study_dir)]) == 0


def test_a_different_spec_under_the_same_name_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["study", *FAST, "--epochs", "1", "--hidden", "8", "--seeds", "1", "--name", "n"]) == 0
    capsys.readouterr()
    assert main(["study", *FAST, "--epochs", "2", "--hidden", "8", "--seeds", "1", "--name", "n"]) == 2
    assert "different study" in capsys.readouterr().err


def test_deep_init_style_study_stops_at_initialisation(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--dataset", "digits", "--device", "cpu", "--epochs", "0", "--hidden", "32,32,32",
                 "--activations", "relu,swish", "--seeds", "1", "--name", "init"]) == 0
    out = capsys.readouterr().out
    manifest = study.read_manifest(tmp_path / "runs" / "init")
    assert [r.status for r in manifest.trials] == ["finished", "finished"]
    assert all(r.epochs == 0 for r in manifest.trials)
    table = lab.read_run(tmp_path / "runs" / "init" / manifest.trials[1].run_dir)
    assert table.epochs == [] and 0 in table.layer_stats  # init statistics, no training epoch
    assert "dead units per hidden layer" in out and "swish        [0, 0, 0]" in out


# --- kill -9 of the driver, then resume -------------------------------------------------------------


def _wait_for(predicate, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_resume_after_kill9_of_the_driver_reruns_nothing_and_loses_nothing(tmp_path):
    import os
    import signal

    argv = [sys.executable, "-m", "actlab.tui.cli", "study", *FAST, "--epochs", "40", "--set", "train.patience=0",
            "--hidden", "32", "--activations", "relu,tanh", "--seeds", "2", "--workers", "1", "--name", "k"]
    study_dir = tmp_path / "runs" / "k"
    driver = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def one_done_one_going() -> bool:
        try:
            manifest = study.read_manifest(study_dir)
        except study.StudyError:
            return False
        running = [r for r in manifest.trials if r.status == "running"]
        return (sum(r.done for r in manifest.trials) >= 1 and bool(running)
                and (study_dir / running[0].run_dir / "checkpoints" / "last.pt").exists())

    try:
        assert _wait_for(one_done_one_going, 120), "the study never had a finished and a checkpointed trial"
        before = study.read_manifest(study_dir)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    done_before = {r.trial_id for r in before.trials if r.done}
    running = next(r for r in before.trials if r.status == "running")
    # the orphaned worker sees its driver gone, checkpoints and leaves; the resume waits for it
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    after = study.read_manifest(study_dir)
    assert all(r.status == "finished" for r in after.trials)  # none lost
    for record in after.trials:
        events = read_events(study_dir / record.run_dir)
        starts = [e.start_epoch for e in events if isinstance(e, RunStarted)]
        epochs = [row["epoch"] for row in lab.read_run(study_dir / record.run_dir).epochs]
        assert epochs == list(range(1, 41))  # every epoch once in the table
        if record.trial_id in done_before:
            assert starts == [0]  # finished before the kill: never run again
        elif record.trial_id == running.trial_id:
            assert starts[0] == 0 and len(starts) == 2 and starts[1] >= 1  # resumed, not restarted
        else:
            assert starts[0] == 0


@pytest.mark.slow
def test_kill9_of_a_worker_resumes_its_trial_and_sigterm_stops_the_study_with_checkpoints(tmp_path):
    import signal

    import psutil

    argv = [sys.executable, "-m", "actlab.tui.cli", "study", *FAST, "--epochs", "120", "--set", "train.patience=0",
            "--hidden", "32", "--activations", "relu,tanh", "--seed", "7", "--workers", "2", "--name", "w"]
    study_dir = tmp_path / "runs" / "w"
    trials = ("t000-relu-s7", "t001-tanh-s7")
    log = open(tmp_path / "driver.err", "w+")
    driver = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log, text=True)

    def epochs_done(trial: str) -> int:
        path = study_dir / trial / "events.jsonl"
        return path.read_text().count('"EpochDone"') if path.exists() else 0

    def workers() -> list:  # the spawned workers (not multiprocessing's resource tracker)
        return [p for p in psutil.Process(driver.pid).children() if "spawn_main" in " ".join(p.cmdline())]

    def attempts() -> dict[str, int]:
        return {r.trial_id: r.attempts for r in study.read_manifest(study_dir).trials}

    try:
        assert _wait_for(lambda: min(map(epochs_done, trials)) >= 3 and len(workers()) == 2, 120)
        # kill -9 one worker: the driver puts its trial back and a fresh worker resumes it
        workers()[0].send_signal(signal.SIGKILL)
        assert _wait_for(lambda: sum(attempts().values()) == 3, 120)
        resumed = next(t for t, n in attempts().items() if n == 2)
        at_resume = epochs_done(resumed)
        assert _wait_for(lambda: epochs_done(resumed) >= at_resume + 2, 120)
        driver.send_signal(signal.SIGTERM)  # stop the study: every running trial checkpoints
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    log.seek(0)
    err = log.read()
    assert driver.returncode == 128 + signal.SIGTERM, err
    assert "--resume" in err
    stopped = {r.trial_id: r for r in study.read_manifest(study_dir).trials}
    assert stopped[resumed].status == "interrupted"  # stopped mid-run by the signal, not lost
    assert {r.status for r in stopped.values()} <= {"interrupted", "finished"}
    for record in stopped.values():
        assert (study_dir / record.run_dir / "checkpoints" / "last.pt").exists()
    result = subprocess.run([sys.executable, "-m", "actlab.tui.cli", "study", "--resume", str(study_dir)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for record in study.read_manifest(study_dir).trials:
        assert record.status == "finished"
        starts = [e.start_epoch for e in read_events(study_dir / record.run_dir) if isinstance(e, RunStarted)]
        assert starts[0] == 0 and all(later >= 1 for later in starts[1:])
        assert [row["epoch"] for row in lab.read_run(study_dir / record.run_dir).epochs] == list(range(1, 121))
    starts = [e.start_epoch for e in read_events(study_dir / resumed) if isinstance(e, RunStarted)]
    assert len(starts) == 3  # fresh, after the worker's kill -9, after the SIGTERM


# --- the missing extra -------------------------------------------------------------------------------


def test_executor_ray_without_ray_says_how_to_install(tmp_path):
    code = textwrap.dedent("""
        import importlib.abc, sys
        class NoRay(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ImportError("No module named 'ray'")
        sys.meta_path.insert(0, NoRay())
        for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
            del sys.modules[name]
        from actlab.tui.cli import main
        sys.exit(main(["study", "--dataset", "digits", "--executor", "ray"]))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == 'actlab: --executor ray needs Ray: pip install "actlab[ray]"'
    assert list(tmp_path.iterdir()) == []
