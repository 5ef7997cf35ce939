"""Training throughput: one epoch of the default recipe, four ways, side by side.

The default recipe: FashionMNIST (50,000 training images), batch 256 (195 batches, the last
partial one dropped), ReLU, MLP 784-512-256-256-128-10, SGD lr 0.01 momentum 0.9.

1. tutorial: the reference tutorials' loop. A torchvision `FashionMNIST` with per-sample
   `ToTensor` + `Normalize` transforms, `random_split` 50,000 / 10,000,
   `DataLoader(batch_size=256, shuffle=True, drop_last=True)`, each batch moved to the
   device, then zero_grad / forward / cross-entropy / backward / step (default SGD).
2. engine: actlab's own epoch function, `TrainingRun.train_epoch`, on the same data
   preloaded as tensors, probes off. It is the loop `actlab run` runs: batching, optimizer,
   loss/accuracy sums, command checks, events, probe hooks. Not timed: validation, the
   checkpoint writes.
3. engine+probes: the same with the default probe set (`[probes]` defaults) attached; its
   per-step hooks and per-step statistics are inside the timed epoch. The probes' epoch-end
   statistics (full passes over the training split) are timed separately and reported as
   `probes_epoch_stats`, with the ratio that includes them.
4. gemm: the lower bound, the matrix multiplies of the 195 steps alone (torch.mm into
   preallocated outputs, same shapes and memory layouts as autograd uses): forward x @ W^T
   for the 5 Linear layers; backward dW = g^T @ x for all 5 and dX = g @ W for all but the
   first: 14 GEMMs per step.

Each round times one epoch of every variant, in rotating order, after a warm-up round; the
figures are the medians over rounds and the ratios are medians of the per-round ratios
(the quartiles go to the JSON). Results: bench/results/train-<time>.json. The last line
printed is the headline: (1)/(3) (target >= 3.0) and (3)/(4) (target <= 1.15).

    python bench/bench_train.py [--rounds 5] [--device cpu] [--threads N] [--clock wall|cpu]

Data: FashionMNIST from ACTLAB_DATA or ../shared/datasets, copied to a cache in the temp
folder; without it, random images of the same shape (uint8 pixels through the same
transforms, so the tutorial's per-sample cost is the same) and a note in the output.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED = REPO.parent / "shared" / "datasets"

SIZES = (784, 512, 256, 256, 128, 10)
BATCH, TRAIN, VAL, SEED = 256, 50000, 10000, 42
MEAN, STD = 0.2860, 0.3530  # FashionMNIST's own (reference section 2)
TARGET_VS_TUTORIAL, TARGET_VS_GEMM = 3.0, 1.15


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- data ----------------------------------------------------------------------------------

class _SyntheticFashion(torch.utils.data.Dataset):
    """Random uint8 28x28 images served like torchvision's MNIST classes (a PIL image per
    item, through the same transform), for machines without the dataset."""

    def __init__(self, n: int, transform) -> None:
        gen = torch.Generator().manual_seed(SEED)
        self.data = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=gen)
        self.targets = torch.randint(0, 10, (n,), generator=gen)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        img = Image.fromarray(self.data[index].numpy(), mode="L")
        return self.transform(img), int(self.targets[index])


def load_data(device: torch.device):
    """(engine DataSplits, tutorial training Dataset, note)."""
    from torchvision import datasets, transforms

    from actlab.engine import benchmark as bm

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    source = bm.fashion_source(SHARED)
    if source:
        splits = bm.load_fashion(source, device=device, seed=SEED)
        full = datasets.FashionMNIST(root=str(bm.bench_cache()), train=True, download=False, transform=transform)
        note = f"FashionMNIST from {source}"
    else:
        splits = bm.fashion_shaped_data(TRAIN, device=device)
        full = _SyntheticFashion(TRAIN + VAL, transform)
        note = "FashionMNIST not found (set ACTLAB_DATA): random data of its shape"
    train, _ = torch.utils.data.random_split(full, [TRAIN, VAL], generator=torch.Generator().manual_seed(SEED))
    return splits, train, note


# --- (1) the tutorial loop -----------------------------------------------------------------

def tutorial_network() -> nn.Module:
    """The reference's BaseNetwork: flatten, then Linear + ReLU per hidden layer."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(len(SIZES) - 1):
        layers.append(nn.Linear(SIZES[i], SIZES[i + 1]))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def tutorial_epoch(train_set, device: torch.device):
    torch.manual_seed(SEED)
    model = tutorial_network().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH, shuffle=True, drop_last=True)

    def epoch() -> None:
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()

    return epoch


# --- main ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    from actlab.engine import benchmark as bm

    parser = bm.bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds, not kept (default 1)")
    parser.add_argument("--no-tutorial", action="store_true", help="skip (1), the slowest variant")
    args, device = bm.parse_bench_args(parser, argv)
    started = time.time()
    log(f"bench_train: device {device}, {torch.get_num_threads()} threads, loading data ...")
    splits, train_set, note = load_data(device)
    steps = splits.train_x.shape[0] // BATCH
    log(f"  {note}; {steps} batches of {BATCH} per epoch")

    variants = {}
    if not args.no_tutorial:
        variants["tutorial"] = tutorial_epoch(train_set, device)
    engine = bm.EpochTimer(bm.engine_config(device, "relu", probes=False), splits)
    variants["engine"] = engine
    probes_config = bm.engine_config(device, "relu", probes=True)
    probes = bm.default_probes(probes_config)
    probe_stats: list[float] = []
    engine_probes = None
    if probes is not None:
        engine_probes = bm.EpochTimer(probes_config, splits, probes)
        now = bm.clock_function(args.clock)

        def epoch_end_stats() -> None:  # run by interleave after each (3) sample, outside it
            bm.synchronize(device)
            start = now()
            engine_probes.epoch_stats()
            bm.synchronize(device)
            probe_stats.append(now() - start)

        variants["engine+probes"] = engine_probes
    else:
        log("  actlab.engine.probes is not importable: (3) engine+probes unavailable")
    variants["gemm"] = bm.gemm_epoch(steps, device, BATCH, SIZES)
    assert engine.steps == steps

    try:
        samples = bm.interleave(variants, rounds=args.rounds, warmup=args.warmup, device=device, clock=args.clock,
                                progress=lambda m: log(f"  {m}"),
                                after={"engine+probes": epoch_end_stats} if engine_probes is not None else None)
    finally:
        engine.close()
        if engine_probes is not None:
            engine_probes.close()
    summaries = {k: bm.summarize(v) for k, v in samples.items()}
    if probe_stats:
        summaries["probes_epoch_stats"] = bm.summarize(probe_stats[args.warmup:] or probe_stats)
    ratios = bm.paired_ratios(samples, [("tutorial", "engine+probes"), ("tutorial", "engine"),
                                        ("engine+probes", "gemm"), ("engine", "gemm"), ("engine+probes", "engine")])
    if probe_stats and "engine+probes" in samples:
        kept = probe_stats[args.warmup:] or probe_stats
        with_stats = [a + b for a, b in zip(samples["engine+probes"], kept)]
        ratios["engine+probes+epoch_stats/gemm"] = bm.paired_ratio(with_stats, samples["gemm"])

    print(f"one epoch = {steps} batches of {BATCH}; {args.clock} clock; median over {args.rounds} rounds "
          f"[q1 .. q3]; device {device}, {torch.get_num_threads()} threads; {note}")
    labels = {"tutorial": "(1) tutorial loop", "engine": "(2) engine, no probes",
              "engine+probes": "(3) engine, default probes", "gemm": "(4) GEMM bound",
              "probes_epoch_stats": "    probes' epoch-end stats (apart)"}
    for key, s in summaries.items():
        print(f"  {labels.get(key, key):<36} {s['median']:8.3f} s  [{s['q1']:.3f} .. {s['q3']:.3f}]  "
              f"{s['median'] / steps * 1e3:7.2f} ms/batch")
    for key, r in ratios.items():
        print(f"  {key:<36} {r['median']:8.3f}   [{r['q1']:.3f} .. {r['q3']:.3f}]")

    payload = {
        "benchmark": "train", "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": time.time() - started,
        "machine": bm.machine_info(device), "data": note, "steps": steps, "batch": BATCH, "clock": args.clock,
        "rounds": args.rounds, "warmup": args.warmup,
        "timed": {"tutorial": "one epoch of the DataLoader loop", "engine": "TrainingRun.train_epoch, probes off",
                  "engine+probes": "TrainingRun.train_epoch with the default probes (per-step work)",
                  "probes_epoch_stats": "ProbeSet.epoch_stats after that epoch (timed apart)",
                  "gemm": "the 14 torch.mm per step of the 195 steps"},
        "samples": samples, "probes_epoch_stats": probe_stats, "summaries": summaries, "ratios": ratios,
        "targets": {"tutorial/engine+probes": f">= {TARGET_VS_TUTORIAL}", "engine+probes/gemm": f"<= {TARGET_VS_GEMM}"},
    }
    parts = []
    key3 = "engine+probes" if "engine+probes" in samples else "engine"
    label3 = "(3)" if key3 == "engine+probes" else "(2) [(3) unavailable]"
    if f"tutorial/{key3}" in ratios:
        r = ratios[f"tutorial/{key3}"]["median"]
        parts.append(f"(1)/{label3} = {r:.2f}x faster than the tutorial loop "
                     + bm.target_check(r, TARGET_VS_TUTORIAL, at_most=False, shown=f"{TARGET_VS_TUTORIAL:.1f}x"))
    r = ratios[f"{key3}/gemm"]["median"]
    parts.append(f"{label3}/(4) = {r:.3f}x the GEMM bound "
                 + bm.target_check(r, TARGET_VS_GEMM, shown=f"{TARGET_VS_GEMM:.2f}x"))
    return bm.finish(RESULTS, "train", payload, "; ".join(parts), root=REPO)

if __name__ == "__main__":
    sys.exit(main())
