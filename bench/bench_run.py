"""The real `actlab run` epoch, phase by phase, against the bare in-memory loop (same process).

Variants, timed one epoch each per round, in rotating order, after a warm-up round:

- run: `TrainingRun.run_epoch`, the epoch `actlab run` runs, with the shipped defaults
  (`LabConfig()`: MLP 784-512-256-256-128-10, SGD 0.01 / 0.9, batch 256, the default probes,
  the event log, one checkpoint write per epoch). Its phases come from the run's own
  `phase_seconds`: training steps, validation, probes' epoch-end statistics, events,
  checkpoints.
- run, no probes: the same with `probes.enabled = false`.
- bare: `benchmark.BareLoop`: the same MLP and optimizer trained from the same in-memory
  tensors by the least code that does it, plus one validation pass (training and validation
  timed apart).
- gemm: the 14 matrix multiplies per step alone (`benchmark.gemm_epoch`), the lower bound.

Ratios are medians of per-round ratios, with quartiles; a ratio whose quartiles are wide or
straddle 1.0 is flagged as inconclusive. Results: bench/results/run-<time>.json.

    python bench/bench_run.py [--rounds 5] [--threads 1] [--clock cpu] [--device cpu]
    python bench/bench_run.py --startup   # CPU seconds from launch to the first training step

Data: FashionMNIST from ACTLAB_DATA or ../shared/datasets; without it, random data of its
shape (said in the output).
"""

from __future__ import annotations

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
TARGET_RUN_VS_BARE, TARGET_ENGINE_VS_GEMM, TARGET_STARTUP_S = 1.10, 1.35, 2.5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def data_source() -> str:
    from actlab.engine.benchmark import fashion_source

    return fashion_source(SHARED)


def load_data(device):
    from actlab.engine import benchmark as bm

    source = data_source()
    if source:
        return bm.load_fashion(source, device=device), f"FashionMNIST from {source}"
    return (bm.fashion_shaped_data(50000, device=device),
            "FashionMNIST not found (set ACTLAB_DATA): random data of its shape")


class RunEpochs:
    """A prepared `TrainingRun` whose `run_epoch` is called once per sample; phase deltas kept."""

    def __init__(self, config, data, clock) -> None:
        from actlab.engine.lab import open_run

        self.run = open_run(config, data=data)
        self.run.prepare()
        self.run.probes.attach(self.run.model)
        self.run.phase_clock = clock
        self.phases: list[dict[str, float]] = []

    def __call__(self) -> None:
        before = dict(self.run.phase_seconds)
        ended = self.run.run_epoch()
        if ended is not None:
            raise RuntimeError(f"the benchmark run ended: {ended}")
        self.phases.append({k: self.run.phase_seconds[k] - before[k] for k in before})

    def close(self) -> None:
        self.run.probes.detach()
        self.run.close()


def measure_startup(args) -> int:
    """CPU seconds of a fresh `actlab run --headless` process until its first step is done."""
    from actlab.engine.benchmark import target_check

    source = data_source()
    if not source:
        log("bench_run --startup: FashionMNIST not found (set ACTLAB_DATA)")
        return 2
    cache = Path(tempfile.mkdtemp(prefix="actlab-startup-cache-"))
    runs_dir = tempfile.mkdtemp(prefix="actlab-startup-runs-")
    probe = (
        "import os, sys, time\n"
        "from actlab.engine import events\n"
        "emit = events.EventBus.emit\n"
        "def first_step(self, event):\n"
        "    if type(event).__name__ == 'BatchProgress':\n"
        "        print(f'{time.process_time():.3f}', flush=True); os._exit(0)\n"
        "    emit(self, event)\n"
        "events.EventBus.emit = first_step\n"
        "from actlab.tui.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, ACTLAB_DATA=source, ACTLAB_CACHE=str(cache), OMP_NUM_THREADS=str(args.threads or 1),
               MKL_NUM_THREADS=str(args.threads or 1))
    command = [sys.executable, "-c", probe, "run", "--headless", "--dataset", "fashion-mnist", "--epochs", "1",
               "--device", args.device, "--set", f"run.runs_dir={json.dumps(runs_dir)}"]
    results = {"first (decodes the dataset)": [], "cached": []}
    for i in range(1 + args.startup_runs):
        out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=runs_dir, timeout=300)
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            log(f"startup run failed ({out.returncode}): {out.stderr.strip()[-500:]}")
            return 1
        key = "first (decodes the dataset)" if i == 0 else "cached"
        results[key].append(float(lines[-1]))
        log(f"  run {i + 1}/{1 + args.startup_runs}: {lines[-1]} s CPU ({key})")
    cached = sorted(results["cached"])
    median = cached[len(cached) // 2] if cached else results["first (decodes the dataset)"][0]
    print(f"CPU seconds from launch to the end of the first training step, `actlab run --headless`, FashionMNIST, "
          f"{args.threads or 1} thread(s):")
    print(f"  first run (decodes the raw files, fills the cache): {results['first (decodes the dataset)'][0]:.2f} s")
    if cached:
        print(f"  cached runs: median {median:.2f} s  (all: {', '.join(f'{x:.2f}' for x in cached)})")
    print(f"headline: first step after {median:.2f} s CPU on cached FashionMNIST "
          + target_check(median, TARGET_STARTUP_S, shown=f"{TARGET_STARTUP_S} s"))
    return 0


def main(argv: list[str] | None = None) -> int:
    from actlab.engine import benchmark as bm

    parser = bm.bench_parser(__doc__.split("\n\n")[0],
                             clock_help="wall: elapsed time; cpu: this process's CPU time (with --threads 1 on cpu)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds, not kept (default 1)")
    parser.add_argument("--no-probes-variant", action="store_true", help="skip 'run, no probes'")
    parser.add_argument("--startup", action="store_true", help="measure the start instead (fresh processes)")
    parser.add_argument("--startup-runs", type=int, default=3, help="cached start-ups to time (default 3)")
    args, device = bm.parse_bench_args(parser, argv)
    if args.startup:
        return measure_startup(args)

    import torch

    from actlab.engine.config import LabConfig

    clock = bm.clock_function(args.clock)
    started = time.time()
    log(f"bench_run: device {device}, {torch.get_num_threads()} threads, loading data ...")
    tmp = Path(tempfile.mkdtemp(prefix="actlab-bench-run-"))
    data, note = load_data(device)
    base = {"run.device": device.type, "run.runs_dir": str(tmp / "runs"), "train.epochs": 100000,
            "train.patience": 0}
    runs = {"run": RunEpochs(LabConfig().replace(**base), data, clock)}
    if not args.no_probes_variant:
        runs["run, no probes"] = RunEpochs(LabConfig().replace(**base, **{"probes.enabled": False}), data, clock)
    bare = bm.BareLoop(data, clock=args.clock)
    steps = data.train_x.shape[0] // 256
    variants = {**runs, "bare": bare, "gemm": bm.gemm_epoch(steps, device)}
    if device.type == "cuda":  # the GPU's reference: the bare loop with its step replayed from a CUDA graph
        variants["bare, CUDA graph"] = bm.BareLoop(data, clock=args.clock, graphs=True)
    log(f"  {note}; {steps} batches of 256 per epoch; {len(variants)} variants x {args.warmup + args.rounds} rounds")
    try:
        samples = bm.interleave(variants, rounds=args.rounds, warmup=args.warmup, device=device, clock=args.clock,
                                progress=lambda m: log(f"  {m}"))
    finally:
        for r in runs.values():
            r.close()
    keep = slice(args.warmup, None)
    phases = {name: {k: [p[k] for p in r.phases[keep]] for k in r.phases[0]} for name, r in runs.items()}
    samples["bare: train"] = bare.train_seconds[keep]
    samples["bare: validate"] = bare.validate_seconds[keep]
    for name in runs:
        for phase, values in phases[name].items():
            samples[f"{name}: {phase}"] = values
    summaries = {k: bm.summarize(v) for k, v in samples.items() if v and max(v) > 0}
    ratios = bm.paired_ratios(samples, [
        ("run", "bare"), ("run: train", "bare: train"), ("run, no probes", "bare"), ("run, no probes: train", "gemm"),
        ("bare: train", "gemm"), ("run", "gemm"), ("run", "bare, CUDA graph"), ("run, no probes", "bare, CUDA graph")])

    print(f"one epoch = {steps} batches of 256 + validation of {data.val_x.shape[0]}; {args.clock} clock; median of "
          f"{args.rounds} rounds [q1 .. q3]; device {device}, {torch.get_num_threads()} threads; {note}")
    for key, s in summaries.items():
        indent = "    " if ": " in key else "  "
        print(f"{indent}{key:<34} {s['median']:8.3f} s  [{s['q1']:.3f} .. {s['q3']:.3f}]")
    print("ratios (median of per-round ratios [q1 .. q3]):")
    warnings = []
    for key, r in ratios.items():
        print(f"  {key:<34} {r['median']:8.3f}   [{r['q1']:.3f} .. {r['q3']:.3f}]")
        warning = bm.spread_warning(key, r)
        if warning:
            warnings.append(warning)
    for warning in warnings:
        print(warning)

    payload = {
        "benchmark": "run", "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": time.time() - started,
        "machine": bm.machine_info(device), "data": note, "steps": steps, "clock": args.clock, "rounds": args.rounds,
        "warmup": args.warmup, "samples": samples, "summaries": summaries, "ratios": ratios,
        "targets": {"run/bare": f"<= {TARGET_RUN_VS_BARE}", "run, no probes: train/gemm": f"<= {TARGET_ENGINE_VS_GEMM}"},
    }
    claims = (("run/bare", "default run epoch = {:.3f}x the bare loop", TARGET_RUN_VS_BARE),
              ("run, no probes: train/gemm", "engine without probes = {:.3f}x the GEMM bound",
               TARGET_ENGINE_VS_GEMM),
              ("run/bare, CUDA graph", "default run epoch = {:.3f}x the bare CUDA-graph loop", 1.2))
    parts = [f"{claim.format(ratios[key]['median'])} {bm.target_check(ratios[key]['median'], target)}"
             for key, claim, target in claims if key in ratios]
    return bm.finish(RESULTS, "run", payload, "; ".join(parts), root=REPO)

if __name__ == "__main__":
    sys.exit(main())
