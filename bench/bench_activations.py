"""Activation cost: forward+backward per activation, and the training epoch relative to ReLU.

Two measurements, each interleaved round by round after a warm-up (see
`actlab.engine.benchmark`, the code `actlab bench` runs too):

1. forward+backward of every registered activation on inputs of (256, 512) (a default batch
   at the first hidden layer) and (4096, 512), in three forms: actlab's module, PyTorch's
   built-in where there is one, and the naive textbook formula (`reference_formula`). Also
   whether each form's outputs and gradients stay finite on [-1e4, 1e4].
2. the engine's epoch function (`TrainingRun.train_epoch`: MLP 784-512-256-256-128-10, SGD
   0.01 / 0.9, batch 256, probes off) over the first --batches x 256 FashionMNIST training
   images, per activation, as the median of per-round ratios to ReLU's epoch.

Target: every activation's epoch within 1.10x of ReLU's, TanhExp and Mish included, with
actlab's TanhExp and Mish finite on [-1e4, 1e4]. Results: bench/results/activations-<time>.json;
the last line printed is the headline.

    python bench/bench_activations.py [--rounds 7] [--epoch-rounds 5] [--batches 60]
                                      [--device cpu] [--threads N] [--clock wall|cpu] [--probes]

Data: FashionMNIST from ACTLAB_DATA or ../shared/datasets, else random data of its shape.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED = REPO.parent / "shared" / "datasets"
TARGET = 1.10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_data(device: torch.device, batches: int):
    from actlab.engine import benchmark as bm

    source = bm.fashion_source(SHARED)
    if source:
        return bm.fashion_shaped_data(batches * 256, device=device, source=bm.load_fashion(source, device="cpu"))
    return bm.fashion_shaped_data(batches * 256, device=device)


def main(argv: list[str] | None = None) -> int:
    from actlab.engine import benchmark as bm

    parser = bm.bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds of the forward+backward table (default 7)")
    parser.add_argument("--epoch-rounds", type=int, default=5, help="timed rounds of the epochs (default 5)")
    parser.add_argument("--batches", type=int, default=60, help="batches of 256 per timed epoch (default 60)")
    parser.add_argument("--activations", metavar="NAMES", help="comma-separated names (default: all registered)")
    parser.add_argument("--probes", action="store_true", help="time the epochs with the default probes attached")
    args, device = bm.parse_bench_args(parser, argv)
    started = time.time()
    names = bm.parse_names(args.activations)
    data = load_data(device, args.batches)
    log(f"bench_activations: device {device}, {torch.get_num_threads()} threads; epochs on {data.note}")
    result = bm.run_activation_bench(names, device=device, rounds=args.rounds, epochs=True, batches=args.batches,
                                     epoch_rounds=args.epoch_rounds, data=data, probes=args.probes,
                                     clock=args.clock, progress=log)
    print(bm.format_activation_report(result["table"], result["epochs"]))

    epochs = result["epochs"]["activations"]
    finite = result["table"].finite
    payload = bm.bench_json(result)
    payload.update({"benchmark": "activations", "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "seconds": time.time() - started, "threads": torch.get_num_threads(), "target": TARGET,
                    "timed": "table: one forward+backward call; epochs: TrainingRun.train_epoch over "
                             f"{args.batches} batches (no validation)"})
    over = sorted((n for n, e in epochs.items() if e["ratio_to_relu"]["median"] > TARGET),
                  key=lambda n: -epochs[n]["ratio_to_relu"]["median"])
    worst, ratio = result["worst"]
    hard = ", ".join(f"{n} {epochs[n]['ratio_to_relu']['median']:.3f}x" for n in ("tanhexp", "mish", "swish")
                     if n in epochs)
    unstable = [n for n in ("tanhexp", "mish") if n in finite and not finite[n].get("actlab", True)]
    verdict = "met" if not over else "NOT met by " + ", ".join(over)
    stable = "yes" if not unstable else "NO (" + ", ".join(unstable) + ")"
    return bm.finish(RESULTS, "activations", payload, root=REPO,
                     headline=f"slowest epoch vs relu: {worst} {ratio:.3f}x (target <= {TARGET:.2f}x: {verdict}); "
                              f"{hard}; actlab tanhexp/mish finite on [-1e4, 1e4]: {stable}")


if __name__ == "__main__":
    sys.exit(main())
