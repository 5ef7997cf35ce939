"""How `actlab` reaches the app: imports stay light, bad configs never open it, NO_COLOR holds."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from test_tui_app import drive, until
from tui_fakes import T0, ScriptedFeed, catalog, run_started, small_config

import actlab.tui.app as app_module
from actlab.engine.events import LayerStats
from actlab.tui import cli


def test_the_app_module_does_not_import_torch():
    """The first frame must not wait for PyTorch: nothing the app imports at load time pulls it in."""
    code = ("import sys, actlab.tui.app, actlab.tui.feed, actlab.tui.cli; "
            "bad = [m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture
def no_app(monkeypatch):
    """Opening the app fails the test; the command believes it has a terminal."""
    class Refused:
        def __init__(self, *args, **kwargs):
            raise AssertionError("the app was opened")

    monkeypatch.setattr(app_module, "LabApp", Refused)
    monkeypatch.setattr(cli, "_is_terminal", lambda: True)


def test_a_bad_lab_toml_is_one_line_and_exit_2_without_the_app(tmp_path, capsys, no_app):
    bad = tmp_path / "lab.toml"
    bad.write_text("[train]\nlr = -1\n")
    assert cli.main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.lr" in err and str(bad) in err


def test_an_unknown_activation_is_caught_before_the_app(tmp_path, capsys, no_app):
    assert cli.main(["run", "--activation", "relux"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "relux" in err


def test_watch_needs_a_run_folder(tmp_path, capsys, no_app):
    assert cli.main(["watch", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_no_color_marks_what_colour_would_have_warned(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    layers = {f"act{i}": {"size": 100.0, "dead_exact": float(d), "dead_exact_frac": d / 100}
              for i, d in enumerate((0, 20, 60), 1)}
    feed = ScriptedFeed([catalog(), run_started("r", "relu", T0),
                         LayerStats(run_id="r", epoch=1, layers=layers, kinds=dict.fromkeys(layers, "activation"))])
    app = app_module.LabApp(feed, config=small_config(**{"model.hidden_sizes": [100, 100, 100]}))

    async def script(pilot):
        await until(pilot, lambda: app.dead.data.epoch == 1)
        assert app.no_color
        rows = app.dead.render().plain.splitlines()
        assert rows[0].rstrip().endswith("0.0%")
        assert rows[1].rstrip().endswith("20.0% !") and rows[2].rstrip().endswith("60.0% !!")

    drive(app, script)


def test_flags_without_a_subcommand_mean_run(tmp_path, monkeypatch):
    """`actlab --epochs 1 --dataset digits` is `actlab run ...`: on a pipe it trains headless."""
    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_headless(args):
        seen.update(epochs=args.epochs, dataset=args.dataset, command=args.command)
        return 0

    monkeypatch.setattr(cli, "cmd_run_headless", fake_headless)
    monkeypatch.setattr(cli, "_is_terminal", lambda: False)
    assert cli.main(["--epochs", "1", "--dataset", "digits"]) == 0
    assert seen == {"epochs": 1, "dataset": "digits", "command": "run"}


def test_resume_with_epochs_extends_a_finished_run_headless(tmp_path, monkeypatch, capsys):
    from actlab.engine.runs import read_config, read_run

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.toml").write_text('[data]\ndataset = "blobs"\n[model]\nhidden_sizes = [8]\n'
                                       '[train]\nepochs = 2\npatience = 1\n[run]\ndevice = "cpu"\n')
    assert cli.main(["run", "--headless"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert read_run(run_dir).status in ("finished", "early-stopped")
    capsys.readouterr()
    # no more epochs than it has: one line, exit 2, nothing trained or rewritten
    before = (run_dir / "events.jsonl").read_bytes()
    assert cli.main(["run", "--headless", "--resume", str(run_dir), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--epochs 2" in err and "already trained 2 epochs" in err
    assert (run_dir / "events.jsonl").read_bytes() == before
    assert cli.main(["run", "--headless", "--resume", str(run_dir), "--lr", "0.1"]) == 2  # other overrides: refused
    capsys.readouterr()
    # a new total: the run goes on from its checkpoint, its patience counted afresh
    assert cli.main(["run", "--headless", "--resume", str(run_dir), "--epochs", "4"]) == 0
    table = read_run(run_dir)
    epochs = [row["epoch"] for row in table.epochs]
    assert epochs in ([1, 2, 3], [1, 2, 3, 4])  # at least one more epoch, even after an early stop
    assert table.status == ("finished" if epochs[-1] == 4 else "early-stopped")
    assert read_config(run_dir).train.epochs == 4  # a later resume continues to the new total


def test_resume_on_a_terminal_opens_the_app_and_checks_epochs_first(tmp_path, monkeypatch, capsys):
    from tui_fakes import write_run_folder

    folder = write_run_folder(tmp_path, "20250101-110000-relu-s42", "relu", 4, status="stopped")
    opened = []
    monkeypatch.setattr(cli, "_is_terminal", lambda: True)
    monkeypatch.setattr(app_module, "run_app", lambda app: opened.append(app) or 0)
    assert cli.main(["--resume", str(folder), "--epochs", "3"]) == 2
    assert "already trained 4 epochs" in capsys.readouterr().err and opened == []
    assert cli.main(["--resume", str(folder), "--epochs", "9"]) == 0
    (app,) = opened
    assert app.feed.planned() == (f"{folder.name} to epoch 9",) and app.config.train.epochs == 9


def subcommands() -> list[str]:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


def test_every_command_is_listed():
    assert {"run", "watch", "inspect", "bench", "runs", "compare", "export", "study", "open"} <= set(subcommands())


@pytest.mark.parametrize("argv", [[]] + [[name] for name in subcommands()])
def test_help_of_every_command_prints_usage_and_exits_0(argv, capsys):
    """A help text with a bare % (argparse formats help strings) once crashed `actlab --help`."""
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: actlab") and len(out.splitlines()) >= 3
