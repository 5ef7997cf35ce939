"""The app as a lab of many runs: past runs, overlays, resume, more epochs, the layers view,
the per-layer warnings, and the small-terminal layout (Pilot tests on the fake engine)."""

from __future__ import annotations

import math

from test_tui_app import drive, make_app, trained, until
from tui_fakes import EXTRA, T0, FakeEngine, catalog, epoch_done, layer_stats, run_started, small_config, write_run_folder

from actlab.engine import metrics
from actlab.engine.config import load_config
from actlab.engine.events import LayerStats, StateChanged
from actlab.tui.app import LabApp
from actlab.tui.colours import OVERLAY
from actlab.tui.feed import LiveFeed, ResumeRequest
from actlab.tui.past_runs import OpenFeed, open_targets
from actlab.tui.leaderboard import Leaderboard
from actlab.tui.screens import HELP_FILE, ActivationPicker, EpochsPrompt
from actlab.tui.session import Session


async def wait_for(pilot, predicate) -> None:
    """`until` with room for a loaded machine (7 agents on 2 cores)."""
    await until(pilot, predicate, timeout=30)


def lab_with_past_runs(tmp_path, engine: FakeEngine | None = None, **config):
    """A live lab whose runs folder already holds three runs of an earlier session."""
    write_run_folder(tmp_path, "20250101-100000-tanh-s42", "tanh", 3, quality=0.95)
    write_run_folder(tmp_path, "20250101-110000-relu-s42", "relu", 4, status="stopped")
    write_run_folder(tmp_path, "20250101-120000-gelu-s42", "gelu", 2, status="early-stopped")
    return make_app(engine, **{"run.runs_dir": str(tmp_path), **config})


def past_loaded(app, n: int = 3):
    return lambda: sum(r.past for r in app.board.rows) >= n


# --- issue 9: the hot swap honours lab.toml -----------------------------------------------------

def test_hot_swap_to_the_configured_activation_takes_its_lab_toml_config(tmp_path):
    (tmp_path / "lab.toml").write_text('[model]\nactivation = "leakyrelu"\nhidden_sizes = [8]\n'
                                       '[model.activation_config]\nalpha = 0.2\n')
    config = load_config(str(tmp_path / "lab.toml")).replace(**{"run.runs_dir": str(tmp_path / "runs")})
    engine = FakeEngine()
    feed = LiveFeed(config, engine=engine)
    app = LabApp(feed, config=config)

    async def script(pilot):
        await wait_for(pilot, trained(app))
        assert engine.runs[0].config.model.activation_config == {"alpha": 0.2}
        await pilot.press("3")  # relu: a new run, without leakyrelu's alpha
        await wait_for(pilot, trained(app, run=2))
        assert engine.runs[1].config.model.activation_config == {}
        await pilot.press("h", "4")  # hot-swap back to leakyrelu: lab.toml's alpha goes with it
        await wait_for(pilot, lambda: app.session.current.activation == "leakyrelu")
        assert engine.controls[1].configs == [("leakyrelu", {"alpha": 0.2})]
        await pilot.press("h", "7")  # gelu was not configured: its defaults
        await wait_for(pilot, lambda: app.session.current.activation == "gelu")
        assert engine.controls[1].configs[-1] == ("gelu", {})

    drive(app, script)


def test_the_swap_name_is_canonicalised_once_before_the_engine_sees_it():
    app, feed, engine = make_app()

    async def script(pilot):
        await wait_for(pilot, trained(app))
        app.swap_to("silu")  # an alias: the engine gets the canonical name
        await pilot.pause()
        assert engine.controls[0].configs == [("swish", {})]

    drive(app, script)


# --- past runs, overlays ---------------------------------------------------------------------------

def test_past_runs_of_the_runs_folder_fill_the_leaderboard(tmp_path):
    app, feed, engine = lab_with_past_runs(tmp_path)

    async def script(pilot):
        await wait_for(pilot, lambda: trained(app)() and past_loaded(app)())
        rows = {r.activation: r for r in app.board.rows}
        assert {a for a, r in rows.items() if r.past} == {"tanh", "relu", "gelu"}
        assert not rows["relu"].current or not rows["relu"].past
        past_tanh = rows["tanh"]
        assert past_tanh.epochs == 3 and past_tanh.state == "finished" and past_tanh.test == 0.95 * 0.84
        assert math.isclose(past_tanh.best_val, max(epoch_done("x", e, "tanh", 0, quality=0.95).val_acc
                                                    for e in (1, 2, 3)))
        assert rows["gelu"].state == "early-stopped" and rows["gelu"].peak_dead == 0.0
        # the live run stays the current one, past runs are not drawn until selected
        assert app.session.current.run_id == "run1-relu" and app.acc.data.overlays == ()
        assert app.acc.data.previous == ()

    drive(app, script)


def test_space_in_the_leaderboard_overlays_runs_each_in_its_own_colour(tmp_path):
    app, feed, engine = lab_with_past_runs(tmp_path)

    async def script(pilot):
        await wait_for(pilot, lambda: trained(app)() and past_loaded(app)())
        await pilot.press("b")
        assert app.board.has_focus
        await pilot.press("up", "space")  # the cursor starts on the current run: up is the newest past one
        first = app.board.under_cursor()
        await pilot.press("up", "up", "space")
        second = app.board.under_cursor()
        overlays = app.acc.data.overlays
        assert [s.label for s in overlays] == [f"#{first.number} {first.activation}",
                                               f"#{second.number} {second.activation}"]
        assert [s.colour for s in overlays] == [first.number, second.number]
        assert overlays[0].epochs == tuple(range(1, first.epochs + 1))
        legend = app.acc.border_subtitle
        assert first.activation in legend and second.activation in legend
        await pilot.press("down", "down", "space")  # the first one off: the second keeps its colour
        assert [s.colour for s in app.acc.data.overlays] == [second.number]
        assert OVERLAY[second.number % len(OVERLAY)]  # a colour of the overlay palette
        await pilot.press("escape")
        assert not app.board.has_focus
        await pilot.press("space")  # the keys are the lab's again: space pauses
        await wait_for(pilot, lambda: app.header.data.state == "paused")

    drive(app, script)


def test_actlab_open_shows_a_runs_folder_read_only(tmp_path):
    write_run_folder(tmp_path, "a-tanh", "tanh", 3)
    write_run_folder(tmp_path, "b-relu", "relu", 2, status="stopped")
    (tmp_path / "not-a-run").mkdir()
    feed = OpenFeed(tmp_path, curves=False)
    app = LabApp(feed, mode="open")

    async def script(pilot):
        await wait_for(pilot, lambda: len(app.board.rows) == 2 and app.header.data.state == "open")
        assert app.header.data.mode == "open" and all(r.past for r in app.board.rows)
        await pilot.press("b", "enter")  # show the run under the cursor in the panels
        assert app.session.current is not None and app.acc.data.current.epochs
        await pilot.press("r")  # read-only: nothing resumes
        assert app.session.pending == ""
        assert app.check_action("toggle_pause", ()) is False and app.check_action("pick", (0,)) is False

    drive(app, script)


def test_open_targets_a_study_folder_by_its_manifest(tmp_path):
    study = tmp_path / "study"
    trials = [write_run_folder(study / "trials", f"t{i}", "relu", 1) for i in range(3)]
    (study / "study.json").write_text('{"trials": [' + ", ".join(
        f'{{"run_dir": "trials/t{i}"}}' for i in (0, 2)) + "]}")
    assert open_targets(study) == [trials[0], trials[2]]
    assert open_targets(trials[1]) == [trials[1]]
    assert open_targets(study / "trials") == trials


# --- resume and more epochs --------------------------------------------------------------------------

def test_r_resumes_a_stopped_run_from_the_leaderboard(tmp_path):
    app, feed, engine = lab_with_past_runs(tmp_path)

    async def script(pilot):
        await wait_for(pilot, lambda: trained(app)() and past_loaded(app)())
        stopped = next(r for r in app.board.rows if r.activation == "relu" and r.past)
        assert stopped.run_dir == str(tmp_path / "20250101-110000-relu-s42")  # the folder read, not the log's path
        await pilot.press("b")
        app.board.cursor = stopped.run_id
        await pilot.press("r")
        await wait_for(pilot, lambda: app.session.current.run_id == stopped.run_id and app.session.current.epochs_run >= 6)
        assert engine.resumes == [(stopped.run_dir, None)]
        assert engine.controls[0].commands == [("stop", "stopped")]  # the live run stopped first
        run = app.session.current
        assert not run.past and [e.epoch for e in run.epochs] == [1, 2, 3, 4, 5, 6]  # history kept
        assert app.header.data.run_number == stopped.number
        finished = next(r for r in app.board.rows if r.activation == "tanh")
        app.board.cursor = finished.run_id
        await pilot.press("r")  # finished: nothing to resume, e extends it
        assert len(engine.resumes) == 1

    drive(app, script)


def test_e_trains_a_finished_run_for_more_epochs(tmp_path):
    app, feed, engine = lab_with_past_runs(tmp_path)

    async def script(pilot):
        await wait_for(pilot, lambda: trained(app)() and past_loaded(app)())
        done = next(r for r in app.board.rows if r.activation == "tanh")
        await pilot.press("b")
        app.board.cursor = done.run_id
        await pilot.press("e")
        assert isinstance(app.screen, EpochsPrompt)
        await pilot.press("backspace", "0")  # "0" is refused with a line, the prompt stays
        await pilot.press("enter")
        assert isinstance(app.screen, EpochsPrompt)
        await pilot.press("backspace", "4", "enter")
        await wait_for(pilot, lambda: app.session.current.run_id == done.run_id)
        assert engine.resumes == [(done.run_dir, 3 + 4)]
        assert app.header.data.max_epochs == 7

    drive(app, script)


def test_actlab_resume_opens_the_app_on_the_run(tmp_path):
    folder = write_run_folder(tmp_path, "20250101-110000-relu-s42", "relu", 4, status="interrupted")
    engine = FakeEngine()
    config = small_config(**{"run.runs_dir": str(tmp_path)})
    feed = LiveFeed(config, engine=engine, resume=ResumeRequest(str(folder)))
    app = LabApp(feed, config=config, past=[folder])

    async def script(pilot):
        await wait_for(pilot, lambda: app.session.current is not None and app.session.current.epochs_run >= 6)
        assert engine.resumes == [(str(folder), None)] and len(engine.runs) == 1
        assert [r.run_id for r in app.board.rows] == [folder.name]
        assert [e.epoch for e in app.session.current.epochs] == [1, 2, 3, 4, 5, 6]

    drive(app, script)


# --- the layers view and the per-layer warnings ------------------------------------------------------

def test_layers_view_shows_every_metric_over_epochs(tmp_path):
    app, feed, engine = make_app(engine=FakeEngine(epochs=3))

    async def script(pilot):
        await wait_for(pilot, trained(app, 3))
        s = app.session
        for epoch in (1, 2, 3):  # the fake run reports layer stats at init only; add three epochs
            app.buffer.put(layer_stats(s.current.run_id, epoch, "relu", T0 + epoch))
        await wait_for(pilot, lambda: app.layers.data.epochs == (0, 1, 2, 3))
        while app.shown_view != "layers":
            await pilot.press("v")
        data = app.layers.data
        assert data.metric == "size" and "z_std" in data.metrics and "dist_from_init" in data.metrics
        assert [r.layer for r in data.rows] == ["act1", "act2", "act3", "act4"]
        seen = {data.metric}
        for _ in range(len(data.metrics) - 1):
            await pilot.press("m")
            seen.add(app.layers.data.metric)
        assert seen == set(data.metrics)  # m reaches every metric
        while app.layers.data.metric != "dist_from_init":
            await pilot.press("m")
        rows = app.layers.data.rows
        assert [r.kind for r in rows] == [metrics.LINEAR] * 5
        assert rows[0].values == (0.0, 0.1, 0.2, 0.30000000000000004)
        text = app.layers.render().plain
        assert "dist_from_init" in text and "fc1" in text and "line" in text
        await pilot.press("M")
        assert app.layers.data.metric != "dist_from_init"

    drive(app, script)


def test_vanishing_gradients_are_flagged_from_the_layer_stats():
    s = Session()
    s.apply(run_started("r", "sigmoid", T0))
    layers = {"fc1": {metrics.GRAD_MEAN_ABS: 2e-6}, "fc2": {metrics.GRAD_MEAN_ABS: 1e-4},
              "out": {metrics.GRAD_MEAN_ABS: 2e-2}}
    kinds = dict.fromkeys(layers, metrics.LINEAR)
    s.apply(LayerStats(run_id="r", epoch=1, layers=layers, kinds=kinds))
    grads = s.grads()
    assert [n for n, _ in grads.rows] == ["fc1", "fc2", "out"]
    assert grads.warning == "vanishing gradients: fc1 |g| is 4.0 orders of magnitude below out"
    layers["fc1"][metrics.GRAD_MEAN_ABS] = 1e-3  # within two orders: no warning
    s.apply(LayerStats(run_id="r", epoch=2, layers=layers, kinds=kinds))
    assert s.grads().warning == ""


def test_saturation_shows_wherever_a_layer_reports_it_and_histograms_fit_the_data():
    s = Session()
    s.apply(catalog())
    s.apply(run_started("r", "sigmoid", T0))
    edges = [-4 + 0.25 * k for k in range(65)]  # the engine's fixed -4..12 bins
    counts = [0.0] * 64
    counts[16:20] = [5, 40, 40, 5]  # sigmoid outputs: 0..1
    layers = {"a": {metrics.SIZE: 10.0, metrics.SATURATION: 0.4, metrics.DEAD_EXACT_FRAC: 0.0}}
    s.apply(LayerStats(run_id="r", epoch=1, layers=layers, kinds={"a": metrics.ACTIVATION},
                       histograms={"act/a": {"edges": edges, "counts": counts}}))
    dead = s.dead()
    assert dead.show_saturation and dead.rows[0].saturation == 0.4 and dead.rows[0].layer == "a"
    (h,) = s.hists().acts
    assert (h.lo, h.hi, h.counts) == (0.0, 1.0, (5, 40, 40, 5))


def test_the_clock_stops_while_paused_and_the_offline_note_stays():
    s = Session()
    started = run_started("r", "relu", T0)
    s.apply(type(started)(**{**started.__dict__, "dataset_note": "offline: using digits instead"}))
    s.apply(StateChanged(run_id="r", time=T0 + 10, state="paused"))
    assert s.header(T0 + 10).elapsed == 10 and s.header(T0 + 500).elapsed == 10
    s.apply(StateChanged(run_id="r", time=T0 + 500, state="running"))
    assert s.header(T0 + 505).elapsed == 15
    assert s.header(T0 + 505).note == "offline: using digits instead" and s.notices == []


# --- small terminals ------------------------------------------------------------------------------------

def test_80x24_every_key_is_reachable_panels_scroll_and_the_current_run_stays_visible(tmp_path):
    hidden = [64] * 10  # a deep net: ten hidden layers
    for i in range(12):
        write_run_folder(tmp_path, f"2025-{i:02d}-relu", "relu", 2)
    app, feed, engine = make_app(**{"model.hidden_sizes": hidden, "run.runs_dir": str(tmp_path)})

    async def script(pilot):
        await wait_for(pilot, lambda: trained(app)() and past_loaded(app, 12)())
        run = app.session.current
        deep = layer_stats(run.run_id, 1, "relu", T0)
        layers = {f"act{i}": dict(deep.layers["act1"]) for i in range(1, 11)}
        app.buffer.put(LayerStats(run_id=run.run_id, epoch=1, layers=layers,
                                  kinds=dict.fromkeys(layers, metrics.ACTIVATION)))
        await wait_for(pilot, lambda: len(app.dead.data.rows) == 10)
        assert app.compact
        # every binding: in the footer, or in the help that the footer's first key opens
        footer_keys = [b.key for b in app.BINDINGS if b.show]
        assert footer_keys[0] == "question_mark,f1" and footer_keys[1] == "v"
        help_text = HELP_FILE.read_text()
        board_keys = [b for b in Leaderboard.BINDINGS if b.show]
        for b in [*app.BINDINGS, *board_keys]:
            key = b.key.split(",")[0].replace("question_mark", "?")
            assert f"`{key}`" in help_text or (key in "2345678" and "`1` … `9`, `0`" in help_text), key
        # the deep net's dead panel scrolls instead of clipping its last layers
        box = app.boxes["dead"]
        assert box.virtual_size.height > box.size.height and box.max_scroll_y > 0
        # the leaderboard: thirteen runs, the current one scrolled into view
        while app.shown_view != "board":
            await pilot.press("v")
        await pilot.pause()
        app.keep_row_visible()
        await pilot.pause()
        line = app.board.row_line(run.run_id)
        top = app.board_box.scroll_y
        assert top <= line < top + app.board_box.scrollable_content_region.height
        # the pickers reach every activation, not just the ten on number keys
        await pilot.press("t")
        picker = app.screen
        assert isinstance(picker, ActivationPicker)
        options = picker.query_one("OptionList")
        assert options.option_count == 10 + len(EXTRA)
        await pilot.press("end", "enter")  # the last one: past the ten on number keys
        await wait_for(pilot, lambda: app.session.current.activation == EXTRA[-1] or len(engine.runs) > 1)
        assert engine.runs[-1].config.model.activation == EXTRA[-1]

    drive(app, script, size=(80, 24))


def test_the_trained_table_is_not_an_epoch_and_shows_once_the_run_ended():
    s = Session()
    s.apply(run_started("r", "relu", T0))
    s.apply(layer_stats("r", 1, "relu", T0))
    trained = layer_stats("r", 1, "relu", T0)
    layers = {k: dict(v) for k, v in trained.layers.items()}
    layers["act4"][metrics.DEAD_EXACT_FRAC] = 0.5
    s.apply(LayerStats(run_id="r", epoch=metrics.TRAINED_EPOCH, layers=layers, kinds=trained.kinds))
    assert s.layers_view().epochs == (1,) and s.dead().epoch == 1  # still training: the epoch's counts
    from actlab.engine.events import RunFinished
    s.apply(RunFinished(run_id="r", status="finished", epochs_run=1, best_epoch=1, best_val_acc=0.8, test_acc=0.8,
                        test_loss=0.5, seconds=1.0))
    dead = s.dead()
    assert dead.epoch == -1 and dead.rows[3].dead_frac == 0.5 and s.board()[0].peak_dead == 0.5


def test_a_run_near_chance_is_drawn_on_a_span_that_shows_it_is_flat():
    s = Session()
    s.apply(run_started("r", "sigmoid", T0))
    for e in (1, 2, 3):
        s.apply(epoch_done("r", e, "sigmoid", T0 + e, quality=0.12))  # ~10%: not learning
    acc = s.metrics("acc")
    assert acc.chance == 10.0 and max(acc.current.val) - min(acc.current.val) < 1.0


def test_the_past_runs_reader_names_run_folders_as_the_engine_does():
    from actlab.engine import runs
    from actlab.tui import past_runs

    assert past_runs.CONFIG_FILE == runs.CONFIG_FILE  # kept apart so the first frame needs no engine.runs


def test_r_resumes_a_past_run_that_was_killed_without_a_last_line(tmp_path):
    killed = write_run_folder(tmp_path, "20250101-090000-elu-s42", "elu", 2, status="")  # kill -9: no RunFinished
    app, feed, engine = make_app(**{"run.runs_dir": str(tmp_path)})

    async def script(pilot):
        await wait_for(pilot, lambda: trained(app)() and past_loaded(app, 1)())
        row = next(r for r in app.board.rows if r.past)
        assert row.state == "running"
        await pilot.press("b")
        app.board.cursor = row.run_id
        await pilot.press("r")
        await wait_for(pilot, lambda: app.session.current.run_id == killed.name)
        assert engine.resumes == [(row.run_dir, None)]

    drive(app, script)
