"""The study view: trial grid with live status, group bands, grouped table (engine/stats.py)."""

from __future__ import annotations

import json
import time

from test_tui_app import drive
from tui_fakes import small_config, write_run_folder

from actlab.engine.stats import format_group_table, group_table
from actlab.tui.feed import Feed
from actlab.tui.study_view import StudyApp, StudyFeed, StudySnapshot, TrialView, group_rows

GROUPS = {"relu": (0.85, 0.86, 0.87), "gelu": (0.88, 0.89, 0.90)}


class SnapshotFeed(Feed):
    """Hands the app the snapshots it is given, when the test says so."""

    def __init__(self) -> None:
        import queue

        self.items: "queue.SimpleQueue[StudySnapshot]" = queue.SimpleQueue()
        self.closed = False

    def run(self, sink, cancelled=lambda: False) -> None:
        import queue

        while not self.closed and not cancelled():
            try:
                sink(self.items.get(timeout=0.02))
            except queue.Empty:
                pass

    def close(self) -> None:
        self.closed = True


def trials(done_per_group: int, running: bool = True) -> tuple[TrialView, ...]:
    out = []
    for g, (group, tests) in enumerate(GROUPS.items()):
        for seed, test in enumerate(tests):
            index = seed * len(GROUPS) + g
            curve = tuple(test - 0.1 + 0.03 * e for e in range(4))
            if seed < done_per_group:
                out.append(TrialView(f"{group}-s{seed}", group, index, "finished", 4, 4, curve, max(curve), test))
            elif running and seed == done_per_group:
                out.append(TrialView(f"{group}-s{seed}", group, index, "running", 2, 4, curve[:2], curve[1]))
            else:
                out.append(TrialView(f"{group}-s{seed}", group, index, "pending"))
    return tuple(out)


async def until(pilot, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        pilot.app.apply_pending()
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await pilot.pause(0.02)
    await pilot.pause()


def test_the_study_view_follows_the_trials_and_compares_the_groups():
    feed = SnapshotFeed()
    app = StudyApp(feed)

    async def script(pilot):
        feed.items.put(StudySnapshot("demo", trials(1)))
        await until(pilot, lambda: app.snapshot is not None)
        head = str(app.query_one("#study-head").render())
        assert "demo" in head and "2/6 trials done" in head
        grid = app.query_one("TrialGrid").render()
        assert grid.row_count == 2  # a row per group
        text = str(app.query_one("#groups").render())
        assert "relu" in text and "gelu" in text
        feed.items.put(StudySnapshot("demo", trials(3, running=False)))  # every trial done
        await until(pilot, lambda: app.snapshot.counts() == {"finished": 6})
        text = str(app.query_one("#groups").render())
        expected = format_group_table(group_table({g: list(v) for g, v in GROUPS.items()}, baseline="relu"),
                                      metric="test_acc")
        assert text == expected  # the same table as `actlab compare`, gelu against relu with p-values
        assert "p (Welch)" in text
        rows = group_rows(app.snapshot)
        assert [r.group for r in rows] == ["relu", "gelu"] and rows[1].p_value is not None
        assert rows[1].diff == sum(GROUPS["gelu"]) / 3 - sum(GROUPS["relu"]) / 3
        await pilot.press("q")

    drive(app, script)
    assert feed.closed


def test_the_bands_are_the_mean_and_ci_of_each_group():
    from actlab.engine.stats import band

    feed = SnapshotFeed()
    app = StudyApp(feed)

    async def script(pilot):
        feed.items.put(StudySnapshot("demo", trials(3, running=False)))
        await until(pilot, lambda: app.snapshot is not None)
        chart = app.query_one("BandChart")
        assert "95% CI" in chart.border_title
        curves = [[v * 100 for v in t.val_acc] for t in app.snapshot.trials if t.group == "gelu"]
        mean, low, high = band(curves)
        assert len(mean) == 4 and all(lo < m < hi for lo, m, hi in zip(low, mean, high))

    drive(app, script, size=(80, 24))


def test_study_feed_reads_the_manifest_and_the_trials_logs(tmp_path):
    study = tmp_path / "demo"
    write_run_folder(study, "relu-s0", "relu", 3)
    write_run_folder(study, "gelu-s0", "gelu", 2, status="")  # still running: no terminal event
    base = small_config().to_dict()
    records = [dict(trial_id="relu-s0", index=0, group="relu", overrides={}, config_hash="a", run_dir="relu-s0",
                    status="finished", best_val_acc=0.9, test_acc=0.85, epochs=3),
               dict(trial_id="gelu-s0", index=1, group="gelu", overrides={}, config_hash="b", run_dir="gelu-s0",
                    status="running"),
               dict(trial_id="mish-s0", index=2, group="mish", overrides={}, config_hash="c", run_dir="mish-s0")]
    (study / "study.json").write_text(json.dumps({"format": 1, "study_id": "demo", "created": 0.0, "command": [],
                                                  "spec": {"base": base}, "trials": records}))
    snap = StudyFeed(study).snapshot()
    assert snap.study_id == "demo" and [t.status for t in snap.trials] == ["finished", "running", "pending"]
    relu, gelu, mish = snap.trials
    assert relu.epochs == 3 and relu.test_acc == 0.85 and len(relu.val_acc) == 3
    assert gelu.epochs == 2 and gelu.max_epochs == 2 and gelu.test_acc is None
    assert mish.val_acc == () and mish.epochs == 0


def test_q_stops_a_study_running_beside_the_view():
    stopped = []
    feed = SnapshotFeed()
    app = StudyApp(feed, stop=lambda: stopped.append(True))

    async def script(pilot):
        feed.items.put(StudySnapshot("demo", trials(1)))
        await until(pilot, lambda: app.snapshot is not None)
        await pilot.press("q")

    drive(app, script)
    assert stopped == [True] and feed.closed


def test_the_study_thread_hands_its_error_to_the_caller():
    import pytest

    from actlab.tui.study_view import StudyWork

    done = StudyWork(lambda: 7)
    done.start()
    done.join_result()  # no error: returns
    failing = StudyWork(lambda: (_ for _ in ()).throw(RuntimeError("workers cannot start here")))
    failing.start()
    with pytest.raises(RuntimeError, match="workers cannot start"):
        failing.join_result()
