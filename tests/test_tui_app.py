"""The live app driven by Textual's Pilot against a fake engine that records every command.

Each test presses keys and asserts both what the screen's widgets hold and what the engine
received (FakeControl.commands), in the order the engine saw them.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from tui_fakes import FakeEngine, small_config

from actlab.engine.errors import DataError
from actlab.tui.app import LabApp
from actlab.tui.feed import LiveFeed
from actlab.tui.feed_items import LAB_ORDER
from actlab.tui.screens import ActivationPicker


def make_app(engine: FakeEngine | None = None, **config) -> tuple[LabApp, LiveFeed, FakeEngine]:
    engine = engine or FakeEngine()
    cfg = small_config(**config)
    feed = LiveFeed(cfg, engine=engine)
    return LabApp(feed, config=cfg), feed, engine


def drive(app: LabApp, script, size=(120, 40)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await script(pilot)
            if app.is_running:
                app.exit()
    asyncio.run(main())


async def until(pilot, predicate, timeout: float = 5.0) -> None:
    """Drain the feed into the screen until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while True:
        pilot.app.apply_pending()
        if predicate():
            await pilot.pause()
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; session state {pilot.app.session.state!r}, "
                                 f"pending {pilot.app.session.pending!r}")
        await pilot.pause(0.02)


def trained(app: LabApp, epochs: int = 2, run: int = 1):
    def check() -> bool:
        current = app.session.current
        return current is not None and current.number == run and current.epochs_run >= epochs
    return check


def test_starts_training_the_configured_activation_at_once():
    app, feed, engine = make_app()

    async def script(pilot):
        await until(pilot, trained(app))
        header = app.header.data
        assert (header.activation, header.state, header.epoch, header.max_epochs) == ("relu", "running", 2, 50)
        assert header.shape == "784-512-256-256-128-10" and header.device == "cpu (2 threads)"
        assert app.curve.curve.name == "relu"
        assert app.acc.data.current.epochs == (1, 2)
        assert [r.activation for r in app.board.rows] == ["relu"]
        assert app.dead.data.epoch == 0 and [r.dead for r in app.dead.data.rows] == [0, 0, 3, 10]
        assert engine.runs[0].config.model.activation == "relu"

    drive(app, script)


def test_number_key_stops_the_run_and_starts_the_activation_with_the_same_seed():
    app, feed, engine = make_app(**{"run.seed": 7})

    async def script(pilot):
        await until(pilot, trained(app))
        engine.gate.clear()  # hold the next run back
        await pilot.press("7")
        assert engine.controls[0].commands == [("stop", "stopped")]
        await pilot.pause(0.15)
        app.apply_pending()
        assert app.header.data.pending == "switching to gelu"  # shown until the new run starts
        assert app.board.rows[0].state == "stopped"
        engine.gate.set()
        await until(pilot, trained(app, run=2))
        assert app.header.data.activation == "gelu" and app.header.data.run_number == 2
        assert [(r.activation, r.state) for r in app.board.rows] == [("relu", "stopped"), ("gelu", "running")]
        assert app.board.rows[0].test == 0.83  # the stopped run was tested on its best checkpoint
        assert len(app.acc.data.previous) == 1  # relu now drawn faintly behind gelu
        assert app.curve.curve.name == "gelu"

    drive(app, script)
    configs = [run.config for run in engine.runs]
    assert [c.model.activation for c in configs] == ["relu", "gelu"]
    assert {c.run.seed for c in configs} == {7}
    assert configs[0].replace(**{"model.activation": "gelu"}) == configs[1]  # only the activation changed
    assert engine.data_loads == 1  # the data is loaded once per session


def test_a_pick_while_the_data_loads_replaces_the_first_run():
    engine = FakeEngine()
    engine.load_gate.clear()
    app, feed, engine = make_app(engine)

    async def script(pilot):
        await until(pilot, engine.loading.is_set)
        assert app.header.data.state == "loading" and app.header.data.activation == "relu"
        await pilot.press("7")
        engine.load_gate.set()
        await until(pilot, trained(app))
        assert app.header.data.activation == "gelu"

    drive(app, script)
    assert [r.activation for r in engine.runs] == ["gelu"]  # relu never started


def test_next_and_previous_walk_the_lab_list():
    app, feed, engine = make_app()

    async def script(pilot):
        await until(pilot, trained(app))
        await pilot.press("n")
        await until(pilot, trained(app, run=2))
        assert app.session.current.activation == "leakyrelu"
        await pilot.press("p", "p")  # twice before the engine answers: leakyrelu -> relu -> tanh
        await until(pilot, lambda: app.session.current.activation == "tanh")
        await pilot.press("1")
        await until(pilot, lambda: app.session.current.activation == "sigmoid")

    drive(app, script)
    names = [r.activation for r in engine.runs]
    # the fake engine may start relu before the second `p` arrives; either way p, p lands on tanh
    assert names[:2] == ["relu", "leakyrelu"] and names[-2:] == ["tanh", "sigmoid"]
    assert set(names[2:-2]) <= {"relu"}


def test_space_pauses_and_resumes():
    app, feed, engine = make_app()

    async def script(pilot):
        await until(pilot, trained(app))
        await pilot.press("space")
        assert engine.controls[0].commands == [("pause",)]
        await until(pilot, lambda: app.header.data.state == "paused")
        assert app.header.data.pending == "" and app.board.rows[0].state == "paused"
        await pilot.press("space")
        await until(pilot, lambda: app.header.data.state == "running")
        assert engine.controls[0].commands == [("pause",), ("resume",)]

    drive(app, script)


def test_h_then_a_number_hot_swaps_in_place():
    app, feed, engine = make_app()

    async def script(pilot):
        await until(pilot, trained(app))
        await pilot.press("h")
        picker = app.screen
        assert isinstance(picker, ActivationPicker)
        assert picker.query_one("OptionList").highlighted == LAB_ORDER.index("leakyrelu")  # the next one
        await pilot.press("8")
        assert not isinstance(app.screen, ActivationPicker)
        assert engine.controls[0].commands == [("swap", "swish")]
        await until(pilot, lambda: app.session.current.activation == "swish")
        assert len(engine.runs) == 1  # the same run goes on
        assert app.acc.data.swaps == ((3, "swish"),)  # the chart marks the first epoch with swish
        assert app.board.rows[0].activation == "relu→swish"
        assert app.curve.curve.name == "swish" and app.header.data.activation == "swish"
        # h, enter: the highlighted next activation; escape cancels
        await pilot.press("h", "escape")
        await pilot.press("h", "enter")
        assert engine.controls[0].commands[-1] == ("swap", "mish")
        await until(pilot, lambda: app.session.current.activation == "mish")

    drive(app, script)


def test_a_bad_hot_swap_is_reported_and_the_app_goes_on():
    app, feed, engine = make_app()

    async def script(pilot):
        await until(pilot, trained(app))
        app.swap_to("nosuchthing")  # what a palette entry would do with a name the engine rejects
        await pilot.pause()
        assert any("cannot hot-swap" in n.message for n in app._notifications)
        await pilot.press("space")
        await until(pilot, lambda: app.header.data.state == "paused")

    drive(app, script)


def test_a_queues_every_activation_not_yet_trained():
    app, feed, engine = make_app()

    async def script(pilot):
        await until(pilot, trained(app))
        await pilot.press("a")
        assert feed.planned() == tuple(n for n in LAB_ORDER if n != "relu")
        assert app.header.data.queue == feed.planned()
        engine.finish.set()  # every run now trains to its end
        await until(pilot, lambda: len(app.session.runs) == 10 and app.session.current.state == "finished",
                    timeout=10)
        assert [r.activation for r in app.board.rows] == ["relu", *[n for n in LAB_ORDER if n != "relu"]]
        assert {r.state for r in app.board.rows} == {"finished"}
        await pilot.press("a")  # all trained: nothing to queue
        assert feed.planned() == ()
        await pilot.press("o")
        assert app.board.sort == 1 and "best val acc" in app.board_box.border_title

    drive(app, script)


def test_q_checkpoints_and_quits_within_a_second():
    app, feed, engine = make_app()
    timing = {}

    async def script(pilot):
        await until(pilot, trained(app))
        timing["pressed"] = time.monotonic()
        await pilot.press("q")
        while app.is_running and time.monotonic() - timing["pressed"] < 3:
            await asyncio.sleep(0.01)
        timing["exited"] = time.monotonic()

    drive(app, script)
    assert timing["exited"] - timing["pressed"] < 1.0
    assert engine.controls[0].commands == [("stop", "interrupted")]
    assert app.return_code == 0 and feed.wait(0)
    assert app.session.current.state == "interrupted"


def test_an_engine_error_shows_and_the_app_stays_usable():
    engine = FakeEngine()
    engine.fail_with = "RuntimeError: CUDA out of memory"
    app, feed, engine = make_app(engine)

    async def script(pilot):
        await until(pilot, lambda: app.header.data.state == "failed")
        assert app.header.data.message == "RuntimeError: CUDA out of memory" and app.header.data.message_is_error
        engine.fail_with = ""
        await pilot.press("3")
        await until(pilot, trained(app))
        assert app.header.data.state == "running" and app.header.data.message == ""

    drive(app, script)


def test_unreadable_data_shows_the_message_and_a_pick_tries_again():
    engine = FakeEngine()
    engine.data_error = DataError("fashion-mnist unavailable: no network and no cache")
    app, feed, engine = make_app(engine)

    async def script(pilot):
        await until(pilot, lambda: app.header.data.state == "failed")
        assert "no network" in app.header.data.message
        await pilot.press("n")  # the app still answers keys; the load is tried again
        await until(pilot, trained(app))
        assert app.session.current.activation == "leakyrelu"

    drive(app, script)
    assert engine.data_loads == 2


@pytest.mark.parametrize("size,compact", [((120, 40), False), ((80, 24), True)])
def test_small_terminals_page_through_views(size, compact):
    app, feed, engine = make_app()

    async def script(pilot):
        await until(pilot, trained(app))
        screen = app.screen
        assert app.compact is compact
        panels = (app.acc, app.curve, app.dead, app.hists, app.layers, app.board_box)
        shown = lambda: {w.id for w in panels if all(n.display for n in (w, *w.ancestors[:-1]))}
        if compact:
            assert screen.has_class("view-train") and shown() == {"acc", "dead"}
            await pilot.press("v")
            assert shown() == {"curve", "hists"}
            await pilot.press("v")
            assert shown() == {"layers"}
            await pilot.press("v")
            assert shown() == {"board-box"}
            await pilot.press("v")
            assert shown() == {"acc", "dead"}
        else:
            assert screen.has_class("view-all") and shown() == {"acc", "curve", "dead", "hists", "board-box"}
            await pilot.press("v")
            assert shown() == {"acc", "dead"}
            await pilot.press("v", "v", "v", "v")
            assert shown() == {"acc", "curve", "dead", "hists", "board-box"}
            await pilot.resize_terminal(80, 24)  # the terminal shrinks: one view at a time
            await pilot.pause()
            assert app.compact and shown() == {"acc", "dead"}
            await pilot.resize_terminal(130, 45)
            await pilot.pause()
            assert not app.compact and shown() == {"acc", "curve", "dead", "hists", "board-box"}

    drive(app, script, size=size)


def test_help_screen_and_palette_commands():
    app, feed, engine = make_app()

    async def script(pilot):
        await until(pilot, trained(app))
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        text = app.screen.query_one("Markdown").source
        for key in ("`h`", "`a`", "`space`", "`q`", "`n` / `p`"):
            assert key in text
        await pilot.press("n")  # keys of the lab are off while the help is open
        assert engine.controls[0].commands == []
        await pilot.press("escape")
        assert type(app.screen).__name__ != "HelpScreen"
        from actlab.tui.command_palette import lab_commands

        titles = [title for title, _, _ in lab_commands(app)]
        assert "Train gelu" in titles and "Hot-swap to swish" in titles and "Quit (checkpoint first)" in titles
        dict((t, cb) for t, cb, _ in lab_commands(app))["Pause / resume training"]()
        assert engine.controls[0].commands == [("pause",)]

    drive(app, script)
