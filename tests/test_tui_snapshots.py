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
