"""Memory: peak resident memory of a default FashionMNIST run (and peak device memory on a GPU).

Each measurement runs in a fresh subprocess (so that nothing the parent imported or freed
counts): `TrainingRun` with the default lab.toml recipe (MLP 784-512-256-256-128-10, SGD,
batch 256, the default probes) for --epochs epochs on FashionMNIST, validation, checkpoints
and the test of the best checkpoint included. The child reports its resident set size (RSS)
at each phase, sampled every 5 ms by a thread (psutil), and the kernel's peak
(`resource.getrusage(...).ru_maxrss`); on cuda also `torch.cuda.max_memory_allocated` and
`max_memory_reserved`. A second child does the same with the probes off, for comparison.

Phases: `imports` (Python, torch, actlab), `data` (the dataset loaded as tensors on the
device), `training` (the run, start to end). Results: bench/results/memory-<time>.json; the
last line printed is the headline.

    python bench/bench_memory.py [--epochs 3] [--device auto] [--no-compare]

Data: FashionMNIST from ACTLAB_DATA or ../shared/datasets, else the run's own fallback
(the digits set) and a note saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED = REPO.parent / "shared" / "datasets"
MiB = 1024 * 1024


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the child: one run, measured from the inside ------------------------------------------

def child(epochs: int, device_name: str, probes: bool) -> dict:
    import resource
    import threading

    import psutil

    process = psutil.Process()
    peak = {"phase": process.memory_info().rss, "all": 0}  # the phase in progress's, and overall
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            rss = process.memory_info().rss
            if rss > peak["phase"]:
                peak["phase"] = rss

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    phases: dict[str, dict[str, float]] = {}

    def mark(phase: str) -> None:
        """End a phase: its last and peak RSS; the next phase's peak starts from here."""
        rss = process.memory_info().rss
        phase_peak = max(peak["phase"], rss)
        peak["all"] = max(peak["all"], phase_peak)
        phases[phase] = {"rss_mib": rss / MiB, "peak_rss_mib": phase_peak / MiB}
        peak["phase"] = rss

    import torch

    from actlab.engine.config import LabConfig
    from actlab.engine.data import load_dataset
    from actlab.engine.device import resolve_device
    from actlab.engine.probes import build_probes
    from actlab.engine.training import TrainingRun

    mark("imports")
    device = resolve_device(device_name)
    source = os.environ.get("ACTLAB_DATA") or (str(SHARED) if (SHARED / "FashionMNIST" / "raw").is_dir() else "")
    cache = Path(tempfile.gettempdir()) / "actlab-bench-cache"
    data = load_dataset("fashion-mnist", device=device, seed=42, source=source or None, cache_dir=cache)
    mark("data")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="actlab-bench-memory-") as runs_dir:
        config = LabConfig().replace(**{"run.runs_dir": runs_dir, "run.device": device.type,
                                        "train.epochs": epochs, "train.patience": 0, "probes.enabled": probes})
        result = TrainingRun(config, data=data, probes=build_probes(config.probes)).run()
    mark("training")
    stop.set()
    sampler.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss_mib = maxrss / MiB if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB on Linux
    out = {"device": str(device), "data": data.name + (f" ({data.note})" if data.note else ""),
           "status": result.status, "epochs": result.epochs_run, "test_acc": result.test_acc,
           "phases": phases, "peak_rss_mib": max(maxrss_mib, peak["all"] / MiB), "ru_maxrss_mib": maxrss_mib,
           "probes": probes, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MiB
        out["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved(device) / MiB
        out["cuda_data_mib"] = sum(t.numel() * t.element_size() for t in (
            data.train_x, data.train_y, data.val_x, data.val_y, data.test_x, data.test_y)) / MiB
    return out


def measure(epochs: int, device: str, probes: bool) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--epochs", str(epochs), "--device", device]
    if not probes:
        command.append("--no-probes")
    started = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=str(REPO))
    if proc.returncode != 0:
        raise SystemExit(f"bench_memory: the measuring child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["seconds"] = time.time() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the run (default 3)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default auto)")
    parser.add_argument("--no-compare", action="store_true", help="skip the second run with the probes off")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-probes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.epochs, args.device, not args.no_probes)))
        return 0
    sys.stdout.reconfigure(line_buffering=True)

    from actlab.engine.benchmark import machine_info
    from actlab.engine.device import resolve_device

    device = resolve_device(args.device)
    log(f"bench_memory: {args.epochs} epochs of the default recipe on {device.type}, probes on ...")
    runs = {"probes": measure(args.epochs, device.type, probes=True)}
    if not args.no_compare:
        log("  ... and again with the probes off")
        runs["no_probes"] = measure(args.epochs, device.type, probes=False)

    for label, r in runs.items():
        p = r["phases"]
        print(f"{label:<9} peak RSS {r['peak_rss_mib']:7.1f} MiB | after imports {p['imports']['rss_mib']:6.1f}, "
              f"after data {p['data']['rss_mib']:6.1f} (peak while loading {p['data']['peak_rss_mib']:6.1f}), "
              f"peak while training {p['training']['peak_rss_mib']:6.1f}, end {p['training']['rss_mib']:6.1f} MiB | "
              f"{r['epochs']} epochs, {r['seconds']:.0f} s, {r['data']}")
        if "cuda_max_allocated_mib" in r:
            print(f"{'':<9} cuda: max allocated {r['cuda_max_allocated_mib']:.1f} MiB, max reserved "
                  f"{r['cuda_max_reserved_mib']:.1f} MiB (the dataset itself: {r['cuda_data_mib']:.1f} MiB)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"benchmark": "memory", "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               "machine": machine_info(device), "epochs": args.epochs, "runs": runs}, indent=2))
    print(f"results: {out.relative_to(REPO)}")

    r = runs["probes"]
    p = r["phases"]
    line = (f"headline: peak RSS of a default FashionMNIST run ({r['epochs']} epochs, probes on, {r['device']}): "
            f"{r['peak_rss_mib']:.0f} MiB (imports {p['imports']['rss_mib']:.0f}; loading the data peaks at "
            f"{p['data']['peak_rss_mib']:.0f}, {p['data']['rss_mib']:.0f} once loaded; training peaks at "
            f"{p['training']['peak_rss_mib']:.0f}, +{p['training']['peak_rss_mib'] - p['data']['rss_mib']:.0f})")
    if "no_probes" in runs:
        q = runs["no_probes"]["phases"]["training"]
        line += f"; probes off: training peaks at {q['peak_rss_mib']:.0f} MiB"
    if "cuda_max_allocated_mib" in r:
        line += f"; cuda max allocated {r['cuda_max_allocated_mib']:.0f} MiB"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
