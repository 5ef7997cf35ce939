"""Benchmark of `actlab runs` over many run folders, with and without summary.json.

Makes N synthetic run folders (default 2,000) whose events.jsonl have the size and shape of
real ones: one real short run is trained first with the default probes (FashionMNIST from
ACTLAB_DATA or ../shared/datasets when present, else digits), and its last epoch's lines
(LayerStats with histograms, StepStats, EpochDone, checkpoints, progress) are repeated for
5-50 epochs per run with fresh accuracies. Then it times, side by side and alternating,
the real command (`python -m actlab.tui.cli runs DIR`, a fresh process: imports included)
over the folders as written (each with its summary.json) and over a copy of the same
tree without summaries (every events.jsonl read instead). Medians of --reps runs of wall
time and of the command's CPU time (user + system: what a loaded machine inflates least);
the files are in the page cache (written just before). The last line is the headline.

    python bench/bench_runs.py [--runs 2000] [--reps 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
ACTIVATIONS = ("relu", "gelu", "tanh", "elu", "silu", "leaky_relu", "mish", "selu", "softplus", "tanhexp")


def real_template(work: Path) -> tuple[Path, str]:
    """Train one 2-epoch run with the default probes; its folder and the dataset used."""
    import torch

    from actlab.engine import lab
    from actlab.engine.config import LabConfig

    torch.set_num_threads(1)
    source = os.environ.get("ACTLAB_DATA") or (str(SHARED) if (SHARED / "FashionMNIST" / "raw").is_dir() else "")
    overrides = {"run.runs_dir": str(work / "template"), "run.device": "cpu", "train.epochs": 2}
    if source:
        overrides.update({"data.dataset": "fashion-mnist", "data.source": source,
                          "data.cache_dir": str(Path(tempfile.gettempdir()) / "actlab-bench-cache")})
    else:
        overrides["data.dataset"] = "digits"
    result = lab.open_run(LabConfig().replace(**overrides)).run()
    if result.status != "finished":
        raise SystemExit(f"template run ended {result.status}: {result.message}")
    return Path(result.run_dir), overrides["data.dataset"]


def epoch_lines(template: Path) -> tuple[dict, list[dict], int]:
    """The template's RunStarted, the lines of its last epoch (as dicts) and their bytes."""
    lines = [json.loads(line) for line in (template / "events.jsonl").read_text().splitlines() if line.strip()]
    started = next(d for d in lines if d["type"] == "RunStarted")
    last = max(d["epoch"] for d in lines if d["type"] == "EpochDone")
    per_epoch = [d for d in lines if d.get("epoch") == last and d["type"] not in ("RunFinished",)]
    size = sum(len(json.dumps(d, separators=(",", ":"))) + 1 for d in per_epoch)
    return started, per_epoch, size


def make_runs(root: Path, count: int, started: dict, per_epoch: list[dict], rng: random.Random) -> int:
    """`count` run folders (config.json, events.jsonl, summary.json); total events bytes.

    The template's per-epoch lines are serialised once with placeholders for the run id and
    the epoch; only EpochDone and the run's first and last lines are made per run. The
    summary comes from the same events, folded as a run's SummaryWriter folds them.
    """
    from actlab.engine.events import event_from_dict
    from actlab.engine.summary import RunSummary, write_summary

    def dumps(d: dict) -> str:
        return json.dumps(d, separators=(",", ":"))

    fixed = [d for d in per_epoch if d["type"] != "EpochDone"]
    fixed_text = "".join(dumps(dict(d, run_id="@RUN@", epoch=987654321)) + "\n" for d in fixed)
    layer_stats = [event_from_dict(d) for d in fixed if d["type"] == "LayerStats"]
    epoch_done = next(d for d in per_epoch if d["type"] == "EpochDone")
    total = 0
    for i in range(count):
        activation = ACTIVATIONS[i % len(ACTIVATIONS)]
        seed = i // len(ACTIVATIONS)
        run_id = f"20260101-{i:06d}-{activation}-s{seed}"
        epochs = rng.randint(5, 50)
        folder = root / run_id
        (folder / "checkpoints").mkdir(parents=True)
        config = json.loads(json.dumps(started["config"]))
        config["model"]["activation"], config["run"]["seed"] = activation, seed
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        first = dict(started, run_id=run_id, config=config, activation=activation, max_epochs=50,
                     time=1.77e9 + 3600 * i)
        summary = RunSummary()
        summary.add(event_from_dict(first))
        parts = [dumps(first) + "\n"]
        acc, best, best_epoch = rng.uniform(0.5, 0.7), 0.0, 0
        for epoch in range(1, epochs + 1):
            acc = min(0.95, acc + rng.uniform(-0.01, 0.03))
            if acc > best:
                best, best_epoch = acc, epoch
            done = dict(epoch_done, run_id=run_id, epoch=epoch, val_acc=acc, train_acc=acc + 0.02, best_val_acc=best,
                        best_epoch=best_epoch, improved=best_epoch == epoch, activation=activation)
            parts.append(fixed_text.replace("@RUN@", run_id).replace("987654321", str(epoch)))
            parts.append(dumps(done) + "\n")
            for stats in layer_stats:
                summary.add(dataclasses.replace(stats, run_id=run_id, epoch=epoch))
            summary.add(event_from_dict(done))
        status = rng.choice(("finished", "finished", "early-stopped", "interrupted"))
        last = {"type": "RunFinished", "run_id": run_id, "time": 1.77e9 + 3600 * i + 60, "status": status,
                "epochs_run": epochs, "best_epoch": best_epoch, "best_val_acc": best,
                "test_acc": None if status == "interrupted" else best - 0.005, "test_loss": None,
                "seconds": 2.0 * epochs, "message": ""}
        parts.append(dumps(last) + "\n")
        summary.add(event_from_dict(last))
        text = "".join(parts)
        (folder / "events.jsonl").write_text(text)
        total += len(text)
        write_summary(folder, summary.to_dict())
    return total


def time_command(folder: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of `actlab runs FOLDER` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "actlab.tui.cli", "runs", str(folder)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"actlab runs failed: {done.stderr.strip()}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", metavar="DIR", help="build the folders here and keep them")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="actlab-bench-runs-"))
    try:
        print("training the template run (2 epochs, default probes)...", flush=True)
        template, dataset = real_template(work)
        started, per_epoch, epoch_bytes = epoch_lines(template)
        print(f"template: {dataset}, events.jsonl {(template / 'events.jsonl').stat().st_size:,} bytes for 2 epochs, "
              f"{epoch_bytes:,} bytes per epoch", flush=True)
        with_summary, without = work / "with-summary", work / "without-summary"
        t0 = time.perf_counter()
        total = make_runs(with_summary, args.runs, started, per_epoch, random.Random(args.seed))
        shutil.copytree(with_summary, without)
        for path in without.glob("*/summary.json"):
            path.unlink()
        print(f"made {args.runs} run folders in {time.perf_counter() - t0:.1f} s: events.jsonl "
              f"{total / args.runs / 1e3:.0f} kB on average, {total / 1e6:.0f} MB in all", flush=True)
        time_command(with_summary), time_command(without)  # warm-up: imports and page cache
        names = ("summary.json", "events.jsonl only")
        wall: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.reps):  # alternate, so drifting load hits both alike
            for name, folder in zip(names, (with_summary, without)):
                w, c = time_command(folder)
                wall[name].append(w)
                cpu[name].append(c)
        for name in names:
            print(f"actlab runs over {args.runs} folders, {name:17s}: wall median {statistics.median(wall[name]):.2f} s "
                  f"(min {min(wall[name]):.2f}, max {max(wall[name]):.2f}), cpu median {statistics.median(cpu[name]):.2f} s, "
                  f"{args.reps} runs")
        fast, slow = statistics.median(wall[names[0]]), statistics.median(wall[names[1]])
        fast_cpu, slow_cpu = statistics.median(cpu[names[0]]), statistics.median(cpu[names[1]])
        print(f"headline: actlab runs over {args.runs} run folders takes {fast:.2f} s wall ({fast_cpu:.2f} s cpu) with "
              f"summary.json, {slow:.2f} s wall ({slow_cpu:.2f} s cpu) reading every events.jsonl "
              f"({slow_cpu / fast_cpu:.0f}x cpu); target < 2 s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
