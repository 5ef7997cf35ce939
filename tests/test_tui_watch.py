"""`actlab watch RUN_DIR`: the same screen fed from a growing events.jsonl, read-only."""

from __future__ import annotations

import json
import os

from tui_fakes import T0, demo_events, epoch_done, run_started, small_config
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


def test_the_event_log_reaches_the_file_line_by_line_not_on_buffer_size(tmp_path, monkeypatch):
    from actlab.engine import events as events_module
    from actlab.engine.events import BatchProgress, EventLog, StepStats

    now = [100.0]
    monkeypatch.setattr(events_module.time, "monotonic", lambda: now[0])
    log = EventLog(tmp_path, progress_interval=0.5)
    path = tmp_path / "events.jsonl"
    log(StepStats(run_id="r", epoch=1, first_step=1, series={"fc1": {"grad_mean_abs": [1e-3]}}))
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == ["StepStats"]  # 100-odd bytes
    log(BatchProgress(run_id="r", epoch=1, step=2, steps=9, global_step=2))
    now[0] += 0.2
    log(BatchProgress(run_id="r", epoch=1, step=3, steps=9, global_step=3))  # within progress_interval: dropped
    now[0] += 0.4
    log(BatchProgress(run_id="r", epoch=1, step=4, steps=9, global_step=4))
    # the last batch before the epoch-end work (validation, probes: seconds without events) is on disk
    assert [json.loads(line).get("step") for line in path.read_text().splitlines()] == [None, 2, 4]
    log.close()


def test_staleness_is_judged_by_the_writer_when_it_can_be_asked():
    from actlab.tui.feed_items import WriterStatus
    from actlab.tui.session import Session

    s = Session(mode="watch")
    s.apply(run_started("r", "relu", T0))
    s.apply(epoch_done("r", 1, "relu", T0 + 10))
    s.apply(WriterStatus(known=True, alive=True, holder="pid 1 on here"))
    assert s.header(T0 + 3600).message == ""  # an hour-long epoch of a live process is not stale
    s.apply(WriterStatus(known=True, alive=False))
    header = s.header(T0 + 11)
    assert header.message.startswith("the run's process is gone") and header.message_is_error
    s.apply(WriterStatus(known=False))  # no lock to read: silence for several epoch-lengths
    assert s.header(T0 + 30).message == ""
    assert s.header(T0 + 100).message.startswith("no new events for 1:30")


def test_writer_status_reads_the_run_folders_lock(tmp_path):
    from actlab.engine import runs
    from actlab.tui.feed import writer_status

    assert writer_status(tmp_path).known is False  # no lock file: cannot tell
    lock = runs.lock_run_dir(tmp_path)
    status = writer_status(tmp_path)
    assert status.known and status.alive and f"pid {os.getpid()}" in status.holder
    lock.release()
    status = writer_status(tmp_path)
    assert status.known and not status.alive
