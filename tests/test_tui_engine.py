"""The live app on the real engine: digits, a small MLP, a few epochs (seconds)."""

from __future__ import annotations

import json

import pytest
from test_tui_app import drive, until

from actlab.engine.config import LabConfig
from actlab.engine.events import ActivationSwapped, RunFinished, read_events
from actlab.tui.app import LabApp
from actlab.tui.feed import LiveFeed


@pytest.mark.slow
def test_real_engine_trains_hot_swaps_pauses_switches_and_quits(tmp_path):
    config = LabConfig().replace(**{"data.dataset": "digits", "model.hidden_sizes": [32, 16], "train.epochs": 1000,
                                    "train.patience": 0, "run.device": "cpu", "run.runs_dir": str(tmp_path)})
    feed = LiveFeed(config)
    app = LabApp(feed, config=config)

    async def script(pilot):
        at = lambda n: app.session.current is not None and app.session.current.epochs_run >= n
        await until(pilot, lambda: at(1), timeout=60)
        s = app.session
        assert s.catalog is not None and s.curve().name == "relu" and len(s.curve().xs) == 201
        assert s.curve().dys[0] == 0.0 and s.curve().dys[-1] == 1.0  # f' by autograd
        header = app.header.data
        assert header.dataset == "digits" and header.shape == "64-32-16-10" and header.device.startswith("cpu")
        assert app.dead.data.epoch is not None and len(app.dead.data.rows) == 2
        assert [name for name, _ in app.grads.data.rows] == ["fc1", "fc2", "out"]
        await pilot.press("h", "8")  # hot-swap to swish
        await until(pilot, lambda: s.current.activation == "swish", timeout=20)
        swapped_at = s.current.swaps[0][0]
        await until(pilot, lambda: at(swapped_at + 1), timeout=20)
        assert app.acc.data.swaps == ((swapped_at, "swish"),)
        assert s.current.epochs[-1].activation == "swish"
        await pilot.press("space")
        await until(pilot, lambda: app.header.data.state == "paused", timeout=20)
        await pilot.press("2")  # tanh: stops the paused run (checkpointed), same seed
        await until(pilot, lambda: s.current.number == 2, timeout=60)
        assert [r.state for r in app.board.rows] == ["stopped", "running"]
        assert app.header.data.activation == "tanh"
        assert app.board.rows[0].activation == "relu→swish" and app.board.rows[0].test is not None
        await pilot.press("q")

    drive(app, script)
    assert feed.wait(2)
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(runs) == 2
    first, second = (read_events(r) for r in runs)
    assert any(isinstance(e, ActivationSwapped) and e.new == "swish" for e in first)
    assert [e.status for e in first if isinstance(e, RunFinished)] == ["stopped"]
    assert [e.status for e in second if isinstance(e, RunFinished)] == ["interrupted"]  # q checkpoints
    assert (runs[1] / "checkpoints" / "last.pt").exists()
    seeds = {json.loads((r / "config.json").read_text())["run"]["seed"] for r in runs}
    assert seeds == {42}


@pytest.mark.slow
def test_real_engine_extends_a_finished_run_in_the_app(tmp_path):
    from actlab.engine import lab
    from actlab.tui.feed import ResumeRequest

    config = LabConfig().replace(**{"data.dataset": "digits", "model.hidden_sizes": [16], "train.epochs": 2,
                                    "train.patience": 0, "run.device": "cpu", "run.runs_dir": str(tmp_path)})
    first = lab.open_run(config).run()
    assert first.status == "finished"
    feed = LiveFeed(config, resume=ResumeRequest(str(first.run_dir), 4))
    app = LabApp(feed, config=config.replace(**{"train.epochs": 4}))

    async def script(pilot):
        await until(pilot, lambda: app.session.current is not None and app.session.current.state == "finished",
                    timeout=120)
        run = app.session.current
        assert run.run_id == first.run_id and run.epochs_run == 4
        assert [e.epoch for e in run.epochs] == [1, 2, 3, 4]  # the past epochs read back, two trained on
        assert app.header.data.epoch == 4 and app.header.data.max_epochs == 4

    drive(app, script)
    assert [e.epoch for e in read_events(first.run_dir) if type(e).__name__ == "EpochDone"] == [1, 2, 3, 4]
