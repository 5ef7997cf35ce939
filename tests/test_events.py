"""engine/events.py: JSON round trip of every event, the JSONL log, and readers that skip torn lines."""

from __future__ import annotations

import json

from actlab.engine.events import (EVENT_TYPES, BatchProgress, EpochDone, EventFollower, EventLog, LayerStats,
                                  RunFinished, RunStarted, event_from_dict, event_to_dict, read_events)


def _epoch(n: int) -> EpochDone:
    return EpochDone(run_id="r", epoch=n, train_loss=1.0 / n, train_acc=0.5, val_loss=0.4, val_acc=0.8 + n / 100,
                     seconds=1.5, lr=0.01, activation="relu", best_val_acc=0.9, best_epoch=n, improved=True)


def test_every_event_type_round_trips():
    started = RunStarted(run_id="r", run_dir="runs/r", config={"a": 1}, dataset="digits", dataset_note="",
                         device="cpu", input_size=64, num_classes=10, hidden_sizes=(32, 16), activation="relu",
                         activation_config={}, max_epochs=3, steps_per_epoch=4, train_size=1000, val_size=300,
                         test_size=300, param_count=2000)
    stats = LayerStats(run_id="r", epoch=0, layers={"act1": {"dead_exact": 3.0}},
                       histograms={"act/act1": {"edges": [0.0, 1.0], "counts": [5.0]}})
    events = [started, _epoch(1), stats,
              RunFinished(run_id="r", status="finished", epochs_run=3, best_epoch=2, best_val_acc=0.9,
                          test_acc=0.88, test_loss=0.3, seconds=10.0)]
    for event in events:
        back = event_from_dict(json.loads(json.dumps(event_to_dict(event))))
        assert back == event
    assert len(EVENT_TYPES) == 10


def test_unknown_event_type_and_extra_fields_are_tolerated():
    assert event_from_dict({"type": "FromTheFuture", "run_id": "r"}) is None
    event = _epoch(2)
    assert event_from_dict(event_to_dict(event) | {"new_field": 1}) == event


def test_log_keeps_epochs_throttles_progress_and_skips_truncated_tail(tmp_path):
    log = EventLog(tmp_path, progress_interval=3600)
    for step in range(1, 101):
        log(BatchProgress(run_id="r", epoch=1, step=step, steps=100, global_step=step))
    log(_epoch(1))
    log.close()
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"type": "EpochDone", "run_id": "r", "epo')  # a kill mid-line
    events = read_events(tmp_path)
    assert [type(e).__name__ for e in events] == ["BatchProgress", "EpochDone"]
    # a new writer (resume) ends the torn line first, so its own lines parse
    log = EventLog(tmp_path)
    log(_epoch(2))
    log.close()
    assert [e.epoch for e in read_events(tmp_path) if isinstance(e, EpochDone)] == [1, 2]


def test_follower_returns_only_complete_lines_as_they_arrive(tmp_path):
    path = tmp_path / "events.jsonl"
    follower = EventFollower(tmp_path)
    assert follower.poll() == []
    line = json.dumps(event_to_dict(_epoch(1)))
    path.write_text(line[:20])
    assert follower.poll() == []
    with open(path, "a") as f:
        f.write(line[20:] + "\n" + json.dumps(event_to_dict(_epoch(2))) + "\n")
    assert [e.epoch for e in follower.poll()] == [1, 2]
    assert follower.poll() == []
