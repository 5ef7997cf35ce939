"""Long runs stay flat: histories kept in memory are bounded, and 100 epochs of digits (probes
on, event log on, the headless printer on) leave resident memory flat after the first epoch.
"""

from __future__ import annotations

import gc
import os

import psutil
import pytest
from robust_harness import one_thread  # noqa: F401

from actlab.engine import training
from actlab.engine.config import LabConfig
from actlab.engine.events import EpochDone
from actlab.engine.probes import build_probes
from actlab.engine.training import TrainingRun
from actlab.tui.headless import HeadlessPrinter

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(tmp_path, epochs: int) -> LabConfig:
    return LabConfig().replace(**{"run.runs_dir": str(tmp_path / "runs"), "run.device": "cpu",
                                  "data.dataset": "digits", "model.hidden_sizes": [32, 16], "train.epochs": epochs,
                                  "train.batch_size": 64, "train.patience": 0})


def test_the_epoch_history_is_bounded(tmp_path, monkeypatch, digits_cpu):
    monkeypatch.setattr(training, "HISTORY_LIMIT", 5)
    config = _config(tmp_path, 12).replace(**{"probes.enabled": False})
    run = TrainingRun(config, data=digits_cpu)
    result = run.run()
    assert result.epochs_run == 12
    assert [e.epoch for e in run.history] == [8, 9, 10, 11, 12]
    assert [e.epoch for e in result.history] == [8, 9, 10, 11, 12]


@pytest.mark.slow
def test_100_epochs_leave_resident_memory_flat(tmp_path, digits_cpu):
    process = psutil.Process(os.getpid())
    rss: dict[int, int] = {}

    def sample(event):
        if isinstance(event, EpochDone):
            if event.epoch in (1, 100):
                gc.collect()
            rss[event.epoch] = process.memory_info().rss

    config = _config(tmp_path, 100)
    with open(os.devnull, "w") as sink:
        printer = HeadlessPrinter(sink, progress=True, verbose=True)  # the bar and every line, into /dev/null
        run = TrainingRun(config, data=digits_cpu, probes=build_probes(config.probes), consumers=[printer, sample])
        result = run.run()
    assert result.status == "finished" and result.epochs_run == 100
    growth_mb = (rss[100] - rss[1]) / 2**20
    print(f"\nRSS after epoch 1: {rss[1] / 2**20:.1f} MB, after epoch 100: {rss[100] / 2**20:.1f} MB, "
          f"growth {growth_mb:+.1f} MB; max {max(rss.values()) / 2**20:.1f} MB")
    assert growth_mb < 50
    assert len(run.history) == 100 <= training.HISTORY_LIMIT
