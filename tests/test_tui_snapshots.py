"""SVG snapshots of the main screen with scripted data (no training, frozen clock).

Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import pytest
from tui_fakes import T0, ScriptedFeed, catalog, demo_events, small_config

from actlab.tui.app import LabApp


def demo_app() -> LabApp:
    feed = ScriptedFeed([catalog(), *demo_events()])
    return LabApp(feed, config=small_config(), clock=lambda: T0 + 52)


async def settle(pilot) -> None:
    """Wait until every scripted event is on screen."""
    app = pilot.app
    for _ in range(100):
        app.apply_pending()
        if app.session.current is not None and app.session.current.progress is not None:
            break
        await pilot.pause(0.02)
    await pilot.pause()


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_main_screen_120x40(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(120, 40), run_before=settle)


def test_main_screen_80x24(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=settle)


def test_activation_view_80x24(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("v")
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


def test_hot_swap_picker_80x24(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


def test_layers_view_80x24(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        while pilot.app.shown_view != "layers":
            await pilot.press("v")
        await pilot.press("m", "m", "m")  # z_mean... : a metric that varies per layer
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


def past_runs_app(tmp_path) -> LabApp:
    """The demo session with three runs of an earlier session in its runs folder."""
    from tui_fakes import write_run_folder

    from actlab.engine.runs import read_run
    from actlab.tui.feed_items import PastRun

    past = [write_run_folder(tmp_path, f"20250101-1{i}0000-{name}-s42", name, epochs, quality=q)
            for i, (name, epochs, q) in enumerate((("sigmoid", 8, 0.2), ("gelu", 10, 1.01), ("mish", 7, 1.0)))]
    feed = ScriptedFeed([catalog(), *(PastRun(read_run(p)) for p in past), *demo_events()])
    return LabApp(feed, config=small_config(), clock=lambda: T0 + 52, past=[])


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_past_runs_overlaid_from_the_leaderboard(snap_compare, tmp_path, size):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("b", "up", "up", "space", "up", "space")  # overlay gelu and sigmoid
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(past_runs_app(tmp_path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_study_view(snap_compare, size):
    from test_tui_study import SnapshotFeed, trials

    from actlab.tui.study_view import StudyApp, StudySnapshot

    feed = SnapshotFeed()
    feed.items.put(StudySnapshot("seeds-table", trials(2)))
    app = StudyApp(feed)

    async def run_before(pilot):
        for _ in range(200):
            app.apply_pending()
            if app.snapshot is not None:
                break
            await pilot.pause(0.02)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
