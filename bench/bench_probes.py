"""Benchmark of the per-layer probes: what they add to an epoch of real training.

From one process, after one warm-up run of each, repetitions of the same short training
(`TrainingRun`, the lab's default MLP and recipe, data preloaded once) are interleaved, the
order rotated each repetition so that drifting machine load hits every variant alike:

- none:     no probes (the loop's `NoProbes`), the reference;
- default:  the `[probes]` set as shipped (`ProbesConfig()`: live dead counts per epoch, the
            exact full pass only at initialisation and on the best weights after training);
- exact:    the same plus the exact dead count's full pass every epoch (`dead_exact_every = 1`);
- all:      every probe at full cadence (`sample_every = 1`, `gradients_every = 1`) with the
            full pass every epoch.

The time of an epoch is `EpochDone.seconds` (training, validation and the epoch-end probes;
checkpoint writing comes after it and is left out). The first epoch of every run is skipped
(allocator and cache warm-up). Overheads are medians of the ratios to `none` within the same
repetition; the median, min and max of the epoch times are printed too. The once-per-run
work outside the epochs (the init statistics and the trained table, each one forward pass
over the training split) is timed apart, as CPU time inside the probes. Data: FashionMNIST
from ACTLAB_DATA or ../shared/datasets when present, else the offline digits set.
Results go to bench/results/probes-<time>.json; the last line printed is the headline.

    python bench/bench_probes.py [--reps 5] [--epochs 3] [--device cpu] [--threads N] [--clock cpu|wall]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED = REPO.parent / "shared" / "datasets"


def load_data(device: str, dataset: str):
    from actlab.engine.benchmark import fashion_source, load_fashion
    from actlab.engine.data import load_dataset

    source = fashion_source(SHARED)
    if source and dataset in ("auto", "fashion-mnist"):
        return load_fashion(source, device=device)
    return load_dataset("digits", device=device, seed=42)


def variants():
    from actlab.engine.config import ProbesConfig

    return {
        "none": None,
        "default": ProbesConfig(),
        "exact": ProbesConfig(dead_exact_every=1),
        "all": ProbesConfig(dead_exact_every=1, sample_every=1, gradients_every=1),
    }


def timed_probe_set(config):
    """A ProbeSet that also adds up the thread CPU time spent inside its own code (hooks,
    per-step, per-epoch and final calls): a direct measure of its cost, robust to machine load."""
    from actlab.engine.probes import ProbeSet

    spent = {"s": 0.0, "init_stats": 0.0, "final_stats": 0.0, "depth": 0}

    def timed(fn, key="s"):
        def run(*args, **kwargs):
            if spent["depth"]:
                return fn(*args, **kwargs)
            spent["depth"] += 1
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.thread_time() - start
                spent["depth"] -= 1
        return run

    probes = ProbeSet(config, wrap_hook=timed)
    for name in ("after_backward", "after_step", "epoch_start", "epoch_stats", "step_stats"):
        setattr(probes, name, timed(getattr(probes, name)))
    for name in ("init_stats", "final_stats"):  # once per run, outside the epochs: timed apart
        setattr(probes, name, timed(getattr(probes, name), name))
    probes.spent = lambda key="s": spent[key]
    return probes


def run_once(config, data, probes_config, clock: str) -> tuple[list[float], list[float], dict[str, float]]:
    """(epoch times, probe CPU seconds per epoch, CPU seconds of init_stats and final_stats)
    of one short training run; the caller skips the first epoch.

    clock "wall": `EpochDone.seconds`. clock "cpu": process CPU time from the end of the
    previous epoch's last checkpoint to `EpochDone` (robust on a shared machine, meaningful
    with one torch thread: OpenMP threads spin while they wait).
    """
    from actlab.engine.events import CheckpointSaved, EpochDone
    from actlab.engine.training import TrainingRun

    epochs: list[float] = []
    spent: list[float] = []
    mark = [time.process_time()]
    probes = timed_probe_set(probes_config) if probes_config is not None else None
    seen = [0.0]

    def consume(event) -> None:
        if isinstance(event, EpochDone):
            epochs.append(event.seconds if clock == "wall" else time.process_time() - mark[0])
            total = probes.spent() if probes is not None else 0.0
            spent.append(total - seen[0])
            seen[0] = total
        elif isinstance(event, CheckpointSaved) and event.reason == "last":
            mark[0] = time.process_time()
        elif type(event).__name__ == "RunStarted" and probes is not None:
            seen[0] = probes.spent()

    result = TrainingRun(config, data=data, probes=probes, consumers=[consume]).run()
    if result.status != "finished":
        raise RuntimeError(f"benchmark run ended {result.status}: {result.message}")
    once = {key: probes.spent(key) for key in ("init_stats", "final_stats")} if probes is not None else {}
    return epochs, spent, once


def main(argv: list[str] | None = None) -> int:
    from actlab.engine import benchmark as bm

    parser = bm.bench_parser(__doc__.splitlines()[0],
                             clock_help="wall: EpochDone.seconds; cpu: process CPU time (use with --threads 1)")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions after the warm-up (5)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is skipped (3)")
    parser.add_argument("--dataset", default="auto", choices=("auto", "fashion-mnist", "digits"),
                        help="auto: FashionMNIST when available, else digits")
    args, device = bm.parse_bench_args(parser, argv)

    import torch

    from actlab.engine.config import LabConfig

    data = load_data(str(device), args.dataset)
    tmp = tempfile.TemporaryDirectory(prefix="actlab-bench-probes-")
    config = LabConfig().replace(**{"run.runs_dir": tmp.name, "run.device": device.type, "data.dataset": data.name,
                                    "train.epochs": args.epochs, "train.patience": 0})
    todo = variants()
    names = list(todo)
    print(f"probes benchmark: {data.name} {tuple(data.sizes)}, "
          f"MLP {config.model.hidden_sizes} {config.model.activation}, "
          f"{device}, {torch.get_num_threads()} threads, {args.reps} reps x {args.epochs - 1} timed epochs, "
          f"{args.clock} clock",
          flush=True)
    for name in names:  # warm-up, discarded
        warm, _, _ = run_once(config, data, todo[name], args.clock)
        print(f"  warm-up {name}: " + " ".join(f"{t:.3f}s" for t in warm), flush=True)
    times: dict[str, list[float]] = {n: [] for n in names}
    spent: dict[str, list[float]] = {n: [] for n in names}
    once: dict[str, dict[str, list[float]]] = {n: {"init_stats": [], "final_stats": []} for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names if n != "none"}
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        rep_times = {}
        for name in order:
            epoch_times, probe_times, run_once_s = run_once(config, data, todo[name], args.clock)
            rep_times[name] = epoch_times[1:]
            spent[name].extend(probe_times[1:])
            for key, value in run_once_s.items():
                once[name][key].append(value)
        for name in names:
            times[name].extend(rep_times[name])
            if name != "none":
                ratios[name].append(statistics.median(rep_times[name]) / statistics.median(rep_times["none"]))
        print(f"  rep {rep + 1}/{args.reps}: " + ", ".join(f"{n} {statistics.median(rep_times[n]):.3f}s"
                                                          for n in names), flush=True)

    summary = {}
    base = statistics.median(times["none"])
    print(f"\n{'variant':8s} {'median s':>9s} {'min':>7s} {'max':>7s} {'overhead':>9s} {'ratio spread':>16s} "
          f"{'in probes':>10s} {'share':>7s}")
    for name in names:
        t = times[name]
        row = {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "epochs": t}
        line = f"{name:8s} {row['median_s']:9.3f} {row['min_s']:7.3f} {row['max_s']:7.3f}"
        if name in ratios:
            r = ratios[name]
            probe_s = statistics.median(spent[name])
            row.update(overhead_pct=100 * (statistics.median(r) - 1), ratio_min=min(r), ratio_max=max(r), ratios=r,
                       probe_cpu_s=probe_s, probe_share_pct=100 * probe_s / base, probe_cpu_epochs=spent[name],
                       **{f"{key}_cpu_s": statistics.median(v) for key, v in once[name].items()})
            line += (f" {row['overhead_pct']:+8.2f}% [{100 * (min(r) - 1):+6.1f}%, {100 * (max(r) - 1):+6.1f}%]"
                     f" {probe_s:9.3f}s {row['probe_share_pct']:+6.2f}%")
        summary[name] = row
        print(line)
    print("overhead: median of the per-repetition ratios to `none`; in probes: CPU time spent inside the probes'\n"
          "own code per epoch (hooks included), its share relative to the epoch without probes")
    exact_s = summary["exact"]["median_s"] - summary["default"]["median_s"]
    print(f"\nthe exact dead count's full pass over {data.sizes[0]} training rows: about {exact_s:.3f} s per epoch "
          f"({100 * exact_s / base:+.1f}% of an epoch without probes) when asked for every epoch")
    d = summary["default"]
    print(f"once per run, outside the epochs (default set, CPU in probes): init statistics "
          f"{d['init_stats_cpu_s']:.3f} s, trained table {d['final_stats_cpu_s']:.3f} s "
          f"({(d['init_stats_cpu_s'] + d['final_stats_cpu_s']) / base:.2f} epochs without probes)")

    payload = {
        "dataset": data.name, "sizes": list(data.sizes), "device": str(device), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": sys.version.split()[0], "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "load_avg": list(os.getloadavg()), "reps": args.reps, "epochs": args.epochs,
        "clock": args.clock,
        "hidden_sizes": list(config.model.hidden_sizes), "activation": config.model.activation,
        "variants": summary, "exact_pass_s": exact_s,
    }
    return bm.finish(RESULTS, "probes", payload, root=REPO,
                     headline=f"shipped default probe set: {d['probe_share_pct']:.2f}% of an epoch spent in the "
                              f"probes, {d['overhead_pct']:+.2f}% epoch time vs no probes ({args.reps} interleaved "
                              f"reps, {args.clock} clock; target <= 3%)")

if __name__ == "__main__":
    sys.exit(main())
