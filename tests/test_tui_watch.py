"""`actlab watch RUN_DIR`: the same screen fed from a growing events.jsonl, read-only."""

from __future__ import annotations

from tui_fakes import T0, demo_events, epoch_done, small_config
from test_tui_app import drive, until

from actlab.engine.events import LayerStats, RunFinished, event_to_json
from actlab.tui.app import LabApp
from actlab.tui.feed import WatchFeed


def _lines(events) -> list[str]:
    return [event_to_json(e) + "\n" for e in events]


def test_watch_follows_a_growing_log_with_a_torn_last_line(tmp_path):
    events = [e for e in demo_events() if not isinstance(e, LayerStats) or e.epoch in (0, 5)]
    lines = _lines(events)
    extra = _lines([epoch_done("20260101-120030-relu-s42", 6, "relu", T0 + 60)])[0]
    log = tmp_path / "events.jsonl"
    log.write_text("".join(lines) + extra[:40])  # the writer was caught mid-line
    feed = WatchFeed(tmp_path, interval=0.02, curves=False)
    app = LabApp(feed, config=small_config())

    async def script(pilot):
        await until(pilot, lambda: app.session.current is not None and app.session.current.epochs_run == 5)
        assert app.mode == "watch" and app.header.data.mode == "watch"
        assert [r.activation for r in app.board.rows] == ["tanh", "relu"]
        assert app.dead.data.epoch == 5 and app.hists.data.acts
        with open(log, "a") as f:  # the rest of the line arrives, then the run ends
            f.write(extra[40:])
            f.write(_lines([RunFinished(run_id="20260101-120030-relu-s42", status="early-stopped", epochs_run=6,
                                        best_epoch=6, best_val_acc=0.88, test_acc=0.87, test_loss=0.35,
                                        seconds=80.0)])[0])
        await until(pilot, lambda: app.header.data.state == "early-stopped")
        assert app.header.data.epoch == 6 and app.board.rows[1].test == 0.87
        # read-only: the engine keys are off and hidden from the footer
        assert app.check_action("pick", (0,)) is False and app.check_action("toggle_pause", ()) is False
        await pilot.press("7", "space", "h")
        assert app.session.pending == "" and app.screen is app._main_screen
        assert app.check_action("cycle_sort", ()) is True
        await pilot.press("q")

    drive(app, script)
    assert feed.wait(1)


def test_watch_before_the_file_exists_waits_for_it(tmp_path):
    feed = WatchFeed(tmp_path, interval=0.02, curves=False)
    app = LabApp(feed)

    async def script(pilot):
        await until(pilot, lambda: app.header.data.state == "watching")
        (tmp_path / "events.jsonl").write_text("".join(_lines(demo_events()[:3])))
        await until(pilot, lambda: app.session.current is not None)
        assert app.header.data.activation == "tanh"

    drive(app, script)
