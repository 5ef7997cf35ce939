"""The Ray executor for real: a two-node local cluster (`ray.cluster_utils.Cluster`), shared by the
tests of this module, whose nodes write their run folders in different places. The driver must
end up with every trial's complete run folder, trained exactly as `actlab run` trains it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install \"actlab[ray]\"")

from actlab.engine import lab, study  # noqa: E402
from actlab.engine.events import EpochDone, RunStarted, read_events  # noqa: E402
from actlab.tui.cli import main  # noqa: E402

FAST = ["--dataset", "digits", "--set", "probes.enabled=false", "--device", "cpu", "--hidden", "32,16"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes of one CPU each; every worker writes under ACTLAB_RAY_ROOT/actlab-ray-<node id>/."""
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("ray-nodes")
    old = os.environ.get("ACTLAB_RAY_ROOT")
    os.environ["ACTLAB_RAY_ROOT"] = str(root)  # inherited by the nodes' worker processes
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes.add_node(num_cpus=1)
    ray.init(address=nodes.address, include_dashboard=False)
    try:
        yield root
    finally:
        ray.shutdown()
        nodes.shutdown()
        if old is None:
            os.environ.pop("ACTLAB_RAY_ROOT", None)
        else:
            os.environ["ACTLAB_RAY_ROOT"] = old


def epochs_of(run_dir: Path):
    return [(e["epoch"], e["train_loss"], e["val_acc"]) for e in lab.read_run(run_dir).epochs]


def test_ray_trials_match_actlab_run_and_come_home_complete(cluster, tmp_path, monkeypatch, capsys):
    import torch

    torch.set_num_threads(1)  # Ray tasks train with one thread (one CPU each)
    monkeypatch.chdir(tmp_path)
    argv = ["study", *FAST, "--epochs", "3", "--activations", "tanh", "--seeds", "5,6", "--name", "r",
            "--executor", "ray"]
    assert main(argv) == 0
    capsys.readouterr()
    study_dir = tmp_path / "runs" / "r"
    manifest = study.read_manifest(study_dir)
    assert [r.status for r in manifest.trials] == ["finished"] * 2
    # the driver holds every trial's whole run folder
    for record in manifest.trials:
        run_dir = study_dir / record.run_dir
        for rel in ("config.json", "events.jsonl", "checkpoints/best.pt", "checkpoints/last.pt"):
            assert (run_dir / rel).is_file(), rel
        events = read_events(run_dir)
        assert sum(isinstance(e, EpochDone) for e in events) == 3
        assert lab.read_run(run_dir).test_acc == record.test_acc
    # the nodes wrote in folders of their own, not in the driver's
    node_dirs = sorted(p.name for p in cluster.iterdir() if p.name.startswith("actlab-ray-"))
    assert len(node_dirs) == 2, node_dirs  # both nodes took a trial (one CPU each, two trials at once)
    assert all(not str(p).startswith(str(tmp_path)) for p in cluster.iterdir())
    # trained exactly as `actlab run` trains the same config and seed
    assert main(["run", "--headless", *FAST, "--epochs", "3", "--activation", "tanh", "--seed", "6",
                 "--set", 'run.runs_dir="solo"']) == 0
    (solo,) = (tmp_path / "solo").iterdir()
    record = next(r for r in manifest.trials if r.group == "tanh" and r.trial_id.endswith("-s6"))
    assert epochs_of(study_dir / record.run_dir) == epochs_of(solo)
    assert record.test_acc == lab.read_run(solo).test_acc


def test_ray_resumes_an_interrupted_trial_from_the_drivers_copy(cluster, tmp_path, monkeypatch, capsys):
    """A trial the driver holds half-done (config, events, last.pt) continues on whichever node takes it."""
    monkeypatch.chdir(tmp_path)
    local = ["study", *FAST, "--activations", "gelu", "--seeds", "1", "--name", "h", "--workers", "1"]
    assert main([*local, "--epochs", "2", "--set", "train.patience=0"]) == 0
    first = study.read_manifest(tmp_path / "runs" / "h")
    run_dir = tmp_path / "runs" / "h" / first.trials[0].run_dir
    # make it an interrupted 4-epoch trial: the same folder, its config asking for more epochs
    import json

    config = json.loads((run_dir / "config.json").read_text())
    config["train"]["epochs"] = 4
    (run_dir / "config.json").write_text(json.dumps(config))
    from actlab.engine.executors import TrialTask
    from actlab.engine.executors.ray_cluster import RayExecutor

    class Collect:
        def __init__(self):
            self.outcomes = []

        def trial_started(self, task, worker):
            pass

        def trial_progress(self, progress):
            pass

        def trial_finished(self, outcome):
            self.outcomes.append(outcome)

    # the events say "finished" after 2 epochs; drop that line so the run counts as interrupted
    lines = [line for line in (run_dir / "events.jsonl").read_text().splitlines() if '"RunFinished"' not in line]
    (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n")
    listener = Collect()
    RayExecutor(study_dir=str(run_dir.parent)).run([TrialTask(first.trials[0].trial_id, config, str(run_dir))],
                                                   listener)
    (outcome,) = listener.outcomes
    assert outcome.status == "finished" and outcome.epochs == 4
    starts = [e.start_epoch for e in read_events(run_dir) if isinstance(e, RunStarted)]
    assert starts == [0, 2]  # resumed after epoch 2 from the shipped checkpoint, on a node with no copy of it
    assert [row["epoch"] for row in lab.read_run(run_dir).epochs] == [1, 2, 3, 4]
