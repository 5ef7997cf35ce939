"""The TUI's pure parts: text plots, the session model folded from events, the event buffer."""

from __future__ import annotations

import math

from tui_fakes import T0, catalog, demo_events, epoch_done, layer_stats, run_started

from actlab.engine.events import (ActivationSwapped, BatchProgress, LayerStats, RunFailed, RunFinished,
                                  StateChanged, StepStats)
from actlab.tui.feed import EventBuffer
from actlab.tui.leaderboard import sort_rows
from actlab.tui.feed_items import FeedError
from actlab.tui.session import BOARD, CURVE, DEAD, GRADS, HEADER, METRICS, Session
from actlab.tui.textplots import bar, fmt_duration, fmt_sci, resample, ridgeline, sparkline


# --- text plots ----------------------------------------------------------------------------------

def test_sparkline_scales_to_the_given_range_and_keeps_the_last_values():
    assert sparkline([0, 1, 2, 3], 4) == "▁▃▆█"
    assert sparkline([5, 0, 1, 2, 3], 4) == "▁▃▆█"  # only the last `width` values
    assert sparkline([1, 1, 1], 3) == "▄▄▄"  # flat: mid-height
    assert sparkline([0, math.nan, 2], 3, lo=0, hi=4) == "▁ ▅"  # shared scale, NaN is a gap


def test_bar_rounds_but_never_hides_a_nonzero_share():
    assert bar(0.5, 10) == "█" * 5 + "░" * 5
    assert bar(0.001, 10) == "█" + "░" * 9  # one dead neuron of 512 still shows
    assert bar(0.0, 4) == "░░░░"
    assert bar(2.0, 4) == "████" and bar(math.nan, 3) == "░░░"


def test_ridgeline_log_scales_a_spike_and_fills_rows_bottom_up():
    rows = ridgeline([10000, 10, 10, 0], 4, height=2)
    assert len(rows) == 2 and all(len(r) == 4 for r in rows)
    assert rows[0][0] == "█" and rows[1][0] == "█"  # the spike fills both rows
    assert rows[1][1] != " " and rows[0][3] == " " and rows[1][3] == " "  # the tail is still visible
    linear = ridgeline([10000, 10, 10, 0], 4, height=1, log=False)
    assert linear[0][1] == " "  # on a linear scale the tail vanishes


def test_resample_stretches_and_squeezes():
    assert resample([1, 2], 4) == [1, 1, 2, 2]
    assert resample([1, 3, 5, 7], 2) == [2, 6]


def test_formatting():
    assert fmt_duration(42) == "0:42" and fmt_duration(3723) == "1:02:03" and fmt_duration(None) == "--:--"
    assert fmt_sci(3.2e-5) == "3.2e-05" and fmt_sci(0.153) == "0.153" and fmt_sci(None) == "-"


# --- the session model -------------------------------------------------------------------------------

def _session(items) -> Session:
    s = Session(dataset="fashion-mnist", hidden_sizes=(512, 256, 256, 128), activation="relu", max_epochs=50)
    for item in items:
        s.apply(item)
    return s


def test_demo_session_folds_into_runs_panels_and_leaderboard():
    s = _session([catalog(), *demo_events()])
    assert list(r.activations[0] for r in s.runs.values()) == ["tanh", "relu"]
    run = s.current
    assert run.activation == "relu" and run.epochs_run == 5 and run.state == "running"
    header = s.header(T0 + 52)
    # the header's epoch is the one in progress, the same number the bar under it shows
    assert (header.activation, header.shape, header.epoch, header.step, header.steps) == \
        ("relu", "784-512-256-256-128-10", 6, 88, 195)
    assert header.elapsed == 22 and header.eta == (45 - 88 / 195) * 4.0
    acc = s.metrics("acc")
    assert acc.current.epochs == (1, 2, 3, 4, 5) and len(acc.previous) == 1 and acc.previous[0].label == "#1 tanh"
    assert acc.current.val[0] == 100 * epoch_done("x", 1, "relu", 0).val_acc
    dead = s.dead()
    assert dead.epoch == 5 and [r.dead for r in dead.rows] == [0, 0, 4, 12]
    assert not dead.show_saturation  # relu is not smooth
    assert dead.rows[3].dead_frac == 12 / 128
    grads = s.grads()
    assert [name for name, _ in grads.rows] == ["fc1", "fc2", "fc3", "fc4", "out"] and grads.per == "step"
    assert len(grads.rows[0][1]) == 512  # bounded: 5 x 195 steps arrived, the last 512 kept
    hists = s.hists()
    assert [h.layer for h in hists.acts] == ["act1", "act2", "act3", "act4"] and hists.act_epoch == 5
    assert [h.layer for h in hists.grads] == ["fc1", "fc2", "fc3", "fc4", "out"]
    board = s.board()
    assert [(r.activation, r.state, r.current) for r in board] == [("tanh", "stopped", False),
                                                                   ("relu", "running", True)]
    assert board[0].test == 0.8412 and board[1].peak_dead == 12 / 128 and board[1].sec_per_epoch == 4.0


def test_smooth_activation_shows_saturation():
    s = _session([catalog(), run_started("r", "gelu", T0), layer_stats("r", 1, "gelu", T0)])
    dead = s.dead()
    assert dead.show_saturation and dead.rows[0].saturation == 0.03


def test_hot_swap_marks_the_chart_and_renames_the_run():
    s = _session([catalog(), run_started("r", "relu", T0), epoch_done("r", 1, "relu", T0)])
    changed = s.apply(ActivationSwapped(run_id="r", epoch=2, step=10, old="relu", new="swish", new_config={}))
    assert {HEADER, METRICS, CURVE, DEAD, BOARD} <= changed
    assert s.metrics("acc").swaps == ((2, "swish"),)
    assert s.curve().name == "swish"
    assert s.board()[0].activation == "relu→swish"


def test_pending_commands_clear_when_the_engine_acknowledges():
    s = _session([run_started("r", "relu", T0)])
    s.pending = "pausing"
    s.apply(StateChanged(run_id="r", state="paused"))
    assert s.pending == "" and s.state == "paused" and s.header(T0).eta is None
    s.pending = "switching to gelu"
    s.apply(RunFinished(run_id="r", status="stopped", epochs_run=0, best_epoch=0, best_val_acc=0.0, test_acc=None,
                        test_loss=None, seconds=1.0))
    assert s.pending == "switching to gelu"  # the switch is done only when the new run starts
    assert s.board()[0].best_val is None  # no epoch trained: no accuracy to show
    s.apply(run_started("r2", "gelu", T0 + 5))
    assert s.pending == "" and s.current.activation == "gelu"


def test_failures_and_errors_are_shown_not_raised():
    s = _session([FeedError("fashion-mnist unavailable: no network")])
    assert s.state == "failed" and s.header(T0).message == "fashion-mnist unavailable: no network"
    assert s.notices == [("fashion-mnist unavailable: no network", "error")]
    s = _session([run_started("r", "relu", T0), RunFailed(run_id="r", error="RuntimeError: boom", error_type="X")])
    header = s.header(T0)
    assert header.state == "failed" and header.message == "RuntimeError: boom" and header.message_is_error


def test_probe_data_may_be_missing_entirely():
    s = _session([run_started("r", "relu", T0), epoch_done("r", 1, "relu", T0)])
    assert s.dead().epoch is None and s.grads().rows == () and s.hists().acts == ()
    s.apply(LayerStats(run_id="r", epoch=1, layers={"act1": {"size": 512.0}, "fc1": {}}))  # metrics missing
    assert s.dead().rows[0].dead_frac is None and s.grads().rows == ()


def test_per_epoch_gradients_when_no_step_series_arrive():
    s = _session([run_started("r", "relu", T0)])
    for epoch in (1, 2):
        s.apply(layer_stats("r", epoch, "relu", T0))
        s.apply(epoch_done("r", epoch, "relu", T0))
    grads = s.grads()
    assert grads.per == "epoch" and len(grads.rows[0][1]) == 2
    assert GRADS in s.apply(StepStats(run_id="r", epoch=3, first_step=1, series={"fc1": {"grad_mean_abs": [1e-3]}}))
    assert s.grads().per == "step" and s.grads().rows == (("fc1", (1e-3,)),)


def test_leaderboard_sorts_with_ties_in_run_order():
    s = _session([run_started("a", "tanh", T0), epoch_done("a", 1, "tanh", T0, quality=0.9),
                  run_started("b", "relu", T0), epoch_done("b", 1, "relu", T0),
                  run_started("c", "gelu", T0), epoch_done("c", 1, "gelu", T0, quality=0.9)])
    rows = s.board()
    assert [r.activation for r in sort_rows(rows, 0)] == ["tanh", "relu", "gelu"]
    assert [r.activation for r in sort_rows(rows, 1)] == ["relu", "tanh", "gelu"]  # best val, descending


def test_event_buffer_collapses_progress_and_keeps_order():
    buffer = EventBuffer()
    buffer.put("a")
    for step in range(1, 100):
        buffer.put(BatchProgress(run_id="r", epoch=1, step=step, steps=99, global_step=step))
    buffer.put("b")
    items = buffer.take()
    assert items[:2] == ["a", "b"] and len(items) == 3 and items[2].step == 99
    assert buffer.take() == []


def test_a_silent_watched_run_is_flagged():
    s = Session(mode="watch")
    s.apply(run_started("r", "relu", T0))
    s.apply(epoch_done("r", 1, "relu", T0 + 10))
    assert s.header(T0 + 30).message == ""
    header = s.header(T0 + 100)
    assert header.message.startswith("no new events for 1:30") and header.message_is_error
    s.mode = "live"  # a live run is in this process: silence there is a long epoch, not a dead run
    assert s.header(T0 + 100).message == ""
