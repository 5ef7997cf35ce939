"""Run folders for the runs/compare/export tests: small real runs, synthetic ones, broken ones.

Real runs train on digits for two epochs with every probe on; synthetic runs are event logs
written with the engine's own event classes (so only numbers the test chose appear in them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from actlab.engine.events import (CheckpointSaved, EpochDone, LayerStats, RunFinished, RunStarted, StepStats,
                                  event_to_json)

#: (study sub-folder or "", activation, seed) of the real runs made once per test session
REAL_RUNS = (("", "relu", 1), ("", "relu", 2), ("", "tanh", 1), ("study-a", "relu", 3))
_MADE: dict[str, tuple[Path, list[Path]]] = {}


def shared_real_runs(tmp_path_factory, digits) -> tuple[Path, list[Path]]:
    """REAL_RUNS made once per test session (per xdist worker); tests copy before changing them."""
    if "runs" not in _MADE:
        root = tmp_path_factory.mktemp("real-runs")
        _MADE["runs"] = root, make_real_runs(root, digits)
    return _MADE["runs"]


def make_real_runs(root: Path, digits) -> list[Path]:
    """Train REAL_RUNS under root/runs (2 epochs on digits, probes on); their folders."""
    import torch

    from actlab.engine import lab
    from actlab.engine.config import LabConfig

    torch.set_num_threads(1)
    folders = []
    for study, activation, seed in REAL_RUNS:
        config = LabConfig().replace(**{
            "data.dataset": "digits", "run.runs_dir": str(root / "runs" / study), "run.device": "cpu",
            "run.seed": seed, "model.activation": activation, "model.hidden_sizes": [48, 32],
            "train.epochs": 2, "train.lr": 0.1, "probes.gradients_every": 2})
        result = lab.open_run(config, data=digits).run()
        assert result.status == "finished", result
        folders.append(Path(result.run_dir))
    return folders


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root: (sha256, mtime_ns); compared before and after a read-only command."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            state[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        else:
            state[str(path.relative_to(root)) + "/"] = ("dir", path.stat().st_mtime_ns)
    return state


def synthetic_run(folder: Path, *, run_id: str, activation: str = "relu", seed: int = 0, dataset: str = "digits",
                  val_accs: tuple[float, ...] = (0.5, 0.6), test_acc: float | None = 0.55, status: str = "finished",
                  dead: tuple[float, ...] = (0.0, 0.1, 0.2), study: str | None = None, config_extra: dict | None = None,
                  started: float = 1.7e9, finished: bool = True) -> Path:
    """A run folder whose events.jsonl holds exactly the given numbers (no summary.json)."""
    from actlab.engine.config import LabConfig

    folder.mkdir(parents=True)
    config = LabConfig().to_dict()
    config["model"]["activation"] = activation
    config["run"]["seed"] = seed
    config["data"]["dataset"] = dataset
    config["train"]["epochs"] = len(val_accs)
    if study is not None:
        config["run"]["study"] = study
    for dotted, value in (config_extra or {}).items():
        section, key = dotted.split(".")
        config[section][key] = value
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    events = [RunStarted(run_id=run_id, time=started, run_dir=str(folder), config=config, dataset=dataset,
                         dataset_note="", device="cpu", input_size=64, num_classes=10, hidden_sizes=(8,),
                         activation=activation, activation_config={}, max_epochs=len(val_accs),
                         steps_per_epoch=4, train_size=1024, val_size=256, test_size=256, param_count=600)]
    best, best_epoch = -1.0, 0
    events.append(_layer_stats(run_id, 0, dead[0]))
    for epoch, acc in enumerate(val_accs, start=1):
        improved = acc > best
        if improved:
            best, best_epoch = acc, epoch
        events.append(StepStats(run_id=run_id, epoch=epoch, first_step=4 * epoch - 3,
                                series={"fc1": {"grad_l2": [0.1 * epoch, 0.2 * epoch]}}))
        events.append(_layer_stats(run_id, epoch, dead[min(epoch, len(dead) - 1)]))
        events.append(EpochDone(run_id=run_id, epoch=epoch, train_loss=1.0 / epoch, train_acc=acc - 0.01,
                                val_loss=2.0 / epoch, val_acc=acc, seconds=0.25 * epoch, lr=0.01,
                                activation=activation, best_val_acc=best, best_epoch=best_epoch, improved=improved))
        events.append(CheckpointSaved(run_id=run_id, epoch=epoch, step=4 * epoch, path="x", reason="last"))
    if finished:
        events.append(RunFinished(run_id=run_id, status=status, epochs_run=len(val_accs), best_epoch=best_epoch,
                                  best_val_acc=best, test_acc=test_acc, test_loss=None, seconds=1.0))
    (folder / "events.jsonl").write_text("".join(event_to_json(e) + "\n" for e in events), encoding="utf-8")
    return folder


def _layer_stats(run_id: str, epoch: int, dead_frac: float) -> LayerStats:
    return LayerStats(run_id=run_id, epoch=epoch,
                      layers={"fc1": {"grad_l2": 0.5 + epoch, "weight_norm": 3.0},
                              "act1": {"size": 8.0, "dead_exact": 8 * dead_frac, "dead_exact_frac": dead_frac}},
                      kinds={"fc1": "linear", "act1": "activation"},
                      histograms={"act/act1": {"edges": [0.0, 1.0, 2.0], "counts": [3.0, 5.0]}})


def broken_folders(root: Path, good_events: Path) -> dict[str, str]:
    """A family of folders `runs` must list as unreadable: name -> expected words of the reason."""
    text = good_events.read_bytes()
    cases = {}

    def folder(name: str) -> Path:
        path = root / name
        path.mkdir(parents=True)
        return path

    first_newline = text.index(b"\n")
    (folder("torn-first-line") / "events.jsonl").write_bytes(text[: first_newline // 2])
    cases["torn-first-line"] = "no actlab events"
    (folder("torn-start-missing") / "events.jsonl").write_bytes(text[first_newline + 1:])  # RunStarted lost
    cases["torn-start-missing"] = "no RunStarted"
    (folder("binary-garbage") / "events.jsonl").write_bytes(os.urandom(4096).replace(b"\n", b"\x00"))
    cases["binary-garbage"] = "no actlab events"
    (folder("empty-events") / "events.jsonl").write_bytes(b"")
    cases["empty-events"] = "events.jsonl is empty"
    folder("empty-folder")
    cases["empty-folder"] = "empty folder"
    (folder("config-only") / "config.json").write_text("{}", encoding="utf-8")
    cases["config-only"] = "no events.jsonl"
    (folder("foreign-json") / "events.jsonl").write_text('{"step": 1, "loss": 0.5}\n[1, 2, 3]\n"x"\n',
                                                         encoding="utf-8")
    cases["foreign-json"] = "no actlab events"
    foreign_summary = folder("foreign-summary")
    (foreign_summary / "summary.json").write_text('{"accuracy": 0.9}', encoding="utf-8")
    cases["foreign-summary"] = "summary.json unreadable and no events.jsonl"
    (folder("just-files") / "notes.txt").write_text("hello", encoding="utf-8")
    cases["just-files"] = "not a run folder"
    checkpoints_only = folder("checkpoints-only")
    (checkpoints_only / "checkpoints").mkdir()
    cases["checkpoints-only"] = "no events.jsonl"
    return cases


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def run_actlab(capsys, *argv: str) -> tuple[int, str, str]:
    """`actlab ARGV...` in this process: (exit code, stdout, stderr)."""
    from actlab.tui import cli

    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
