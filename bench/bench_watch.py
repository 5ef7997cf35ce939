"""Benchmark of `actlab watch`: how soon a headless run's progress reaches the watcher's screen.

A headless run (`actlab run --headless`, a separate process) trains and writes its
events.jsonl; in this process the watch screen (`LabApp` on a `WatchFeed`, Textual's
headless driver, the app's own 10 Hz drain) follows the folder. A tail thread reads the
file every 2 ms and notes when each line reaches it. Reported, as p50 / p95 / max:

- epoch latency: from an EpochDone line reaching the file to the accuracy chart holding
  that epoch;
- batch latency: from a batch (the time in its BatchProgress line, taken in the writer when
  the batch ended) to the header's progress bar showing that step or a later one;
- false staleness warnings while the writer was alive (must be 0).

Target: both p95 under 1.5 s. Data: FashionMNIST from ACTLAB_DATA or ../shared/datasets when
present (a one-layer MLP, a few seconds per epoch on 2 cores), else digits with small batches.

    python bench/bench_watch.py [--epochs 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_tui import REPO, RESULTS, pct  # bench/ is on sys.path when this script runs


def lab_toml(folder: Path, epochs: int) -> str:
    """The writer's lab.toml; the dataset it trains."""
    source = os.environ.get("ACTLAB_DATA") or str(REPO.parent / "shared" / "datasets")
    fashion = (Path(source) / "FashionMNIST" / "raw").is_dir()
    data = {"dataset": "fashion-mnist", "source": source, "fallback": "none"} if fashion else {"dataset": "digits"}
    sections = {"run": {"runs_dir": str(folder / "runs"), "device": "cpu"}, "data": data,
                "model": {"hidden_sizes": [128] if fashion else [512, 512]},
                "train": {"epochs": epochs, "patience": 0, "batch_size": 256 if fashion else 8}}
    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    (folder / "lab.toml").write_text("\n".join(lines) + "\n")
    return data["dataset"]


class Tail(threading.Thread):
    """Notes when each EpochDone and BatchProgress line of events.jsonl reaches the file."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.epochs: dict[int, float] = {}  # epoch -> wall time its line reached the file
        self.batches: list[tuple[int, int, float, float]] = []  # epoch, step, batch time, file time
        self.done = threading.Event()

    def run(self) -> None:
        offset, partial = 0, b""
        while not self.done.is_set():
            try:
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            now = time.time()
            if chunk:
                offset += len(chunk)
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for line in lines:
                    event = json.loads(line)
                    if event["type"] == "EpochDone":
                        self.epochs.setdefault(event["epoch"], now)
                    elif event["type"] == "BatchProgress":
                        self.batches.append((event["epoch"], event["step"], event["time"], now))
                    elif event["type"] in ("RunFinished", "RunFailed"):
                        self.done.set()
            time.sleep(0.002)


async def watch(run_dir: Path, tail: Tail, timeout: float) -> dict:
    from actlab.tui.app import LabApp
    from actlab.tui.feed import WatchFeed

    app = LabApp(WatchFeed(run_dir, curves=False))
    shown_epochs: dict[int, float] = {}
    shown_steps: list[tuple[int, int, float]] = []  # (epoch, step) first shown, at
    false_alarms = 0
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.time()
            current = app.acc.data.current
            for epoch in current.epochs if current else ():
                shown_epochs.setdefault(epoch, now)
            header = app.header.data
            if header.step and (not shown_steps or shown_steps[-1][:2] != (header.epoch, header.step)):
                shown_steps.append((header.epoch, header.step, now))
            if header.message_is_error and header.state == "running":
                false_alarms += 1
            if tail.done.is_set() and header.state not in ("running", "paused", "watching"):
                break
            await pilot.pause(0.005)
        app.exit()
    epoch_lat = [shown_epochs[e] - t for e, t in tail.epochs.items() if e in shown_epochs]
    batch_lat = []
    for epoch, step, batch_time, _ in tail.batches:
        seen = [at for (e, s, at) in shown_steps if (e, s) >= (epoch, step)]
        if seen:
            batch_lat.append(min(seen) - batch_time)
    return {"epoch_latency_s": epoch_lat, "batch_latency_s": batch_lat, "false_stale_ticks": false_alarms,
            "epochs_seen": len(shown_epochs), "epochs_written": len(tail.epochs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dataset = lab_toml(folder, args.epochs)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        writer = subprocess.Popen([sys.executable, "-m", "actlab.tui.cli", "run", "--headless"], cwd=folder, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        runs = folder / "runs"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (runs.is_dir() and any(runs.iterdir())):
            time.sleep(0.05)
        run_dir = next(runs.iterdir())
        tail = Tail(run_dir / "events.jsonl")
        tail.start()
        result = asyncio.run(watch(run_dir, tail, args.timeout))
        tail.done.set()
        writer.wait(timeout=60)
    e, b = result["epoch_latency_s"], result["batch_latency_s"]
    summary = {
        "dataset": dataset, "epochs": args.epochs, "writer_exit": writer.returncode,
        "epoch_p50_s": pct(e, 0.5), "epoch_p95_s": pct(e, 0.95), "epoch_max_s": max(e, default=float("nan")),
        "batch_p50_s": pct(b, 0.5), "batch_p95_s": pct(b, 0.95), "batch_max_s": max(b, default=float("nan")),
        "epoch_samples": len(e), "batch_samples": len(b), "false_stale_ticks": result["false_stale_ticks"],
        "load_average": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"watch-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({**summary, **result}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    ok = summary["epoch_p95_s"] < 1.5 and summary["batch_p95_s"] < 1.5 and not summary["false_stale_ticks"]
    print(f"watch latency p95: epoch {summary['epoch_p95_s']:.2f} s, batch {summary['batch_p95_s']:.2f} s "
          f"({len(e)} epochs, {len(b)} batches; target < 1.5 s: {'met' if ok else 'MISSED'}); "
          f"load average {summary['load_average'][0]:.1f} on {os.cpu_count()} cores")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
