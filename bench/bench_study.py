"""Study throughput: trials per hour with 2 single-threaded workers against 1 worker with 2 threads.

Both arms run the same trials through the same local executor (spawned worker processes,
each trial an ordinary run folder through the engine's front door):

    A  --workers 2 --threads 1   two trials at a time, one torch thread each
    B  --workers 1 --threads 2   one trial at a time with two torch threads

The trials: the default MLP (784-512-256-256-128-10, SGD, batch 256) on FashionMNIST, one
per activation of `--activations`, `--epochs` epochs each, one seed (so a worker loads the
data once), probes off. Arms alternate A, B, A, B, ... in one process so the machine's load
is shared; each arm's time is the executor's wall time, worker start-up included (that is
what a user waits for). Printed: trials/hour per arm and round, the median ratio A/B
(target >= 1.6 on two cores), the load average before and after, and the JSON in
bench/results/study-<time>.json.

    python bench/bench_study.py [--rounds 2] [--epochs 1] [--activations relu,gelu,tanh,elu]

Data: FashionMNIST from ACTLAB_DATA or ../shared/datasets (digits with --dataset digits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED = REPO.parent / "shared" / "datasets"
TARGET = 1.6


def run_arm(tasks_for, workers: int, threads: int, folder: Path) -> tuple[float, list]:
    from actlab.engine.benchmark import OutcomeCollector
    from actlab.engine.executors.local import LocalExecutor

    tasks = tasks_for(folder, threads)
    listener = OutcomeCollector()
    started = time.perf_counter()
    LocalExecutor(workers=workers, threads=threads, device="cpu").run(tasks, listener)
    return time.perf_counter() - started, listener.outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--activations", default="relu,gelu,tanh,elu")
    parser.add_argument("--dataset", default="fashion-mnist")
    args = parser.parse_args()
    if args.dataset in ("fashion-mnist", "mnist") and not os.environ.get("ACTLAB_DATA") and SHARED.is_dir():
        os.environ["ACTLAB_DATA"] = str(SHARED)

    from actlab.engine.benchmark import save_results
    from actlab.engine.config import config_from_dict
    from actlab.engine.executors import TrialTask

    names = args.activations.split(",")

    def tasks_for(folder: Path, threads: int) -> list:
        tasks = []
        for name in names:
            config = config_from_dict({"data": {"dataset": args.dataset}, "model": {"activation": name},
                                       "train": {"epochs": args.epochs}, "probes": {"enabled": False},
                                       "run": {"device": "cpu", "seed": 0, "runs_dir": str(folder)}})
            tasks.append(TrialTask(f"{name}", config.to_dict(), str(folder / name), threads=threads))
        return tasks

    rows = []
    load_before = os.getloadavg()
    print(f"{len(names)} trials of {args.epochs} epoch(s) on {args.dataset}, {os.cpu_count()} cores, "
          f"load average {load_before[0]:.2f} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="actlab-bench-study-") as tmp:
        for round_ in range(args.rounds):
            for arm, workers, threads in (("A 2 workers x 1 thread", 2, 1), ("B 1 worker x 2 threads", 1, 2)):
                seconds, outcomes = run_arm(tasks_for, workers, threads, Path(tmp) / f"r{round_}-{workers}")
                bad = [o for o in outcomes if o.status not in ("finished", "early-stopped")]
                if bad:
                    print(f"trial failed: {bad[0].trial_id}: {bad[0].status} {bad[0].message}", file=sys.stderr)
                    return 1
                per_hour = len(outcomes) / seconds * 3600
                rows.append({"round": round_, "arm": arm, "workers": workers, "threads": threads,
                             "seconds": seconds, "trials": len(outcomes), "trials_per_hour": per_hour,
                             "load_1min": os.getloadavg()[0]})
                print(f"round {round_}  {arm:<24} {seconds:7.1f}s  {per_hour:7.1f} trials/h  "
                      f"(load {rows[-1]['load_1min']:.2f})", flush=True)
    ratios = [a["trials_per_hour"] / b["trials_per_hour"] for a, b in zip(rows[0::2], rows[1::2])]
    ratio = statistics.median(ratios)
    load_after = os.getloadavg()
    out = save_results(RESULTS, "study", {"rows": rows, "ratios": ratios, "median_ratio": ratio, "target": TARGET,
                                          "load_before": load_before, "load_after": load_after,
                                          "cores": os.cpu_count(), "epochs": args.epochs, "activations": names,
                                          "dataset": args.dataset}, indent=1)
    print(f"trials per hour, 2 workers x 1 thread / 1 worker x 2 threads: {ratio:.2f}x "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= {TARGET}; load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f}); {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
