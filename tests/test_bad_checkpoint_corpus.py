"""Bad checkpoint files (tests/corpus/checkpoints/, written by make_corpus.py there): through
`actlab inspect FILE` and `actlab run --resume RUN` (with the file as the run's last.pt) each
one is a single line naming the file and the problem, exit code 2, and nothing runs. No
pickle code ever executes: the exploit files would create a marker file if it did.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from robust_harness import one_thread  # noqa: F401

from actlab.engine import runs
from actlab.engine.config import LabConfig
from actlab.tui import cli

pytestmark = pytest.mark.usefixtures("one_thread")

CORPUS = Path(__file__).resolve().parent / "corpus" / "checkpoints"
INDEX = json.loads((CORPUS / "index.json").read_text())
MARKER = "actlab-corpus-pwned"  # what the exploit payloads would create in the current folder
IDS = [case["file"] for case in INDEX]


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("actlab: ") and "Traceback" not in err, err
    return err.strip()


def _run_folder(tmp_path: Path, checkpoint: Path) -> Path:
    """A digits run folder (hidden [16]) whose last.pt is `checkpoint`."""
    config = LabConfig().replace(**{"run.runs_dir": str(tmp_path / "runs"), "run.device": "cpu",
                                    "data.dataset": "digits", "model.hidden_sizes": [16], "train.epochs": 3,
                                    "probes.enabled": False})
    _, run_dir = runs.create_run_dir(config)
    runs.write_config(run_dir, config)
    shutil.copyfile(checkpoint, runs.checkpoint_path(run_dir))
    return run_dir


def test_the_corpus_is_complete():
    assert len(INDEX) >= 10
    for case in INDEX:
        assert (CORPUS / case["file"]).is_file(), case
    assert {"pickle-exploit.pt", "pickle-exploit-in-zip.pt", "empty.pt", "truncated-half.pt", "newer-format.pt",
            "foreign-state-dict.pt", "shape-mismatch.pt"} <= set(IDS)


@pytest.mark.parametrize("case", INDEX, ids=IDS)
def test_inspect_names_the_problem_in_one_line(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = CORPUS / case["file"]
    code = cli.main(["inspect", str(path)])
    out, err = capsys.readouterr()
    if case.get("inspect_ok"):  # a fine checkpoint; only a resume must refuse it
        assert code == 0 and err == "" and "model " in out
    else:
        message = _one_line(err)
        assert code == 2 and out == ""
        assert str(path) in message and case["expect"] in message, message
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("case", INDEX, ids=IDS)
def test_resume_from_a_bad_last_checkpoint_is_one_line_and_runs_nothing(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_dir = _run_folder(tmp_path, CORPUS / case["file"])
    before = sorted(p.name for p in run_dir.rglob("*"))
    code = cli.main(["run", "--headless", "--resume", str(run_dir)])
    message = _one_line(capsys.readouterr().err)
    assert code == 2
    assert str(runs.checkpoint_path(run_dir)) in message
    assert case.get("resume_expect", case.get("expect")) in message, message
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # no events.jsonl, no new checkpoint
    assert runs.checkpoint_path(run_dir).read_bytes() == (CORPUS / case["file"]).read_bytes()
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run_dir.name]
    assert not (tmp_path / MARKER).exists()


def test_the_exploit_payloads_are_real(tmp_path, monkeypatch):
    """Loaded unsafely (plain pickle, torch.load(weights_only=False)) they do create the marker:
    so the marker's absence above means the safe loader refused them."""
    monkeypatch.chdir(tmp_path)
    pickle.loads((CORPUS / "pickle-exploit.pt").read_bytes())
    assert (tmp_path / MARKER).exists()
    (tmp_path / MARKER).unlink()
    torch.load(CORPUS / "pickle-exploit-in-zip.pt", weights_only=False)
    assert (tmp_path / MARKER).exists()


def test_inspect_a_good_checkpoint_and_a_run_folder(tmp_path, monkeypatch, capsys, digits_cpu):
    from actlab.engine.training import TrainingRun

    config = LabConfig().replace(**{"run.runs_dir": str(tmp_path / "runs"), "run.device": "cpu",
                                    "data.dataset": "digits", "model.hidden_sizes": [16], "train.epochs": 2,
                                    "probes.enabled": False})
    result = TrainingRun(config, data=digits_cpu).run()
    assert cli.main(["inspect", str(result.run_dir)]) == 0
    out = capsys.readouterr().out
    last = result.history[-1]
    assert f"checkpoint {runs.checkpoint_path(result.run_dir)}" in out
    assert "relu MLP 64-16-10, 1,210 parameters" in out and "epoch 2 done" in out
    assert f"val acc {last.val_acc * 100:.2f}%" in out and "resumable  yes" in out
    assert cli.main(["inspect", "--json", str(runs.checkpoint_path(result.run_dir, runs.BEST))]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["epoch"] == result.best_epoch and facts["config"]["data"]["dataset"] == "digits"
    assert facts["metrics"]["val_acc"] == pytest.approx(result.best_val_acc)
    assert cli.main(["inspect", str(tmp_path)]) == 2  # a folder that is no run and no file
    assert "is a folder" in _one_line(capsys.readouterr().err)
