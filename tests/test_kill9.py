"""kill -9 at random moments: every checkpoint on disk loads, and `--resume` finishes the run
with exactly the metrics of a run that was never killed (CPU).

The children are real `actlab run` processes forked from tests/forkrunner.py (torch already
imported), so a kill and a resume cost a fraction of a second instead of seconds of imports.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections import Counter

import torch
from robust_harness import final_metrics, forker, only_run, tiny_config  # noqa: F401

from actlab.engine import runs
from actlab.engine.checkpoints import load_checkpoint
from actlab.engine.events import read_events

KILLS = 24  # at least 20, the issue says
SEED = 20261123


def _newest_run(runs_dir):
    found = [p for p in runs_dir.iterdir() if (p / "config.json").is_file()] if runs_dir.is_dir() else []
    assert len(found) <= 1, found
    return found[0] if found else None


def _check_after_kill(run_dir, last_epoch_seen: int) -> tuple[str, int]:
    """Every checkpoint file under its final name loads with finite weights; the log reads.

    Returns (where the kill landed, the epoch of last.pt) and checks that last.pt never went
    back in time (nothing that was saved is lost).
    """
    if run_dir is None:
        return "before the run folder", last_epoch_seen
    folder = run_dir / runs.CHECKPOINT_DIR
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert all(n in (runs.LAST, runs.BEST) or ".tmp-" in n for n in names), names
    epoch = last_epoch_seen
    for name in (runs.LAST, runs.BEST):
        path = folder / name
        if path.exists():
            model, data = load_checkpoint(path)  # raises on a partial or bad file
            assert all(torch.isfinite(p).all() for p in model.parameters())
            if name == runs.LAST:
                epoch = data["epoch"]
                assert epoch >= last_epoch_seen, f"last.pt went back from epoch {last_epoch_seen} to {epoch}"
    if (run_dir / "events.jsonl").exists():
        read_events(run_dir)  # a torn last line is skipped, never an error
    if not (folder / runs.LAST).exists():
        return "before the first checkpoint", epoch
    return ("with a temp checkpoint on disk" if any(".tmp-" in n for n in names) else "after a checkpoint"), epoch


def test_sigkill_at_random_moments_then_resume_matches_an_unkilled_run(forker, tmp_path):  # noqa: F811
    rng = random.Random(SEED)
    config = tiny_config(tmp_path / "lab.toml", tmp_path / "runs", epochs=12, patience=5, dropout=0.1)
    ref_config = tiny_config(tmp_path / "ref.toml", tmp_path / "ref", epochs=12, patience=5, dropout=0.1)
    assert forker.run(["run", "--headless", "--config", ref_config], tmp_path, tmp_path / "ref.log") == 0
    reference = final_metrics(only_run(tmp_path / "ref"))
    assert reference[2] in ("finished", "early-stopped") and reference[1] is not None

    runs_dir = tmp_path / "runs"
    kills, finished, landed, last_epoch = 0, 0, Counter(), 0
    resumes = 0

    def complete(run_dir):
        nonlocal finished, last_epoch
        assert final_metrics(run_dir) == reference
        names = sorted(p.name for p in (run_dir / runs.CHECKPOINT_DIR).iterdir())
        assert ".tmp-" not in "".join(names), names  # resume removed the temp files of killed writers
        shutil.move(str(run_dir), str(tmp_path / f"done-{finished}"))
        finished += 1
        last_epoch = 0

    while kills < KILLS or _newest_run(runs_dir) is None:  # end with a run folder to resume
        run_dir = _newest_run(runs_dir)
        argv = ["run", "--headless", "--resume", run_dir] if run_dir else ["run", "--headless", "--config", config]
        resumes += run_dir is not None
        log = tmp_path / f"child-{kills}-{finished}.log"
        pid = forker.start(argv, tmp_path, log)
        time.sleep(rng.uniform(0.0, 0.3))
        code = forker.wait(pid, timeout=0)
        if code is None:
            os.kill(pid, signal.SIGKILL)
            code = forker.wait(pid)
        if code == -signal.SIGKILL:
            kills += 1
            where, last_epoch = _check_after_kill(_newest_run(runs_dir), last_epoch)
            landed[where] += 1
        else:
            assert code == 0, log.read_text()
            complete(_newest_run(runs_dir))
    run_dir = _newest_run(runs_dir)
    if run_dir is not None:  # the last word is a completed --resume (always: the loop ends on a kill)
        code = forker.run(["run", "--headless", "--resume", run_dir], tmp_path, tmp_path / "final.log")
        assert code == 0, (tmp_path / "final.log").read_text()
        complete(run_dir)
    print(f"\n{kills} kills ({dict(landed)}), {resumes} resumes, {finished} runs completed, all equal to the "
          f"unkilled run: {len(reference[0])} epochs, test acc {reference[1]:.4f}")
    assert kills >= 20 and finished >= 1
