"""`actlab bench`: every activation timed on this machine, in about a minute.

Two parts, each interleaved round by round (engine/benchmark.py): the forward+backward table
(actlab's module against PyTorch's built-in and the textbook formula) and short training
epochs of the engine per activation, as ratios to ReLU's. Progress lines on stderr carry the
elapsed time and an estimate of what is left; ratios whose samples scatter too much to be
read are flagged with a WARNING line. The epochs train on FashionMNIST when `ACTLAB_DATA` or
the data cache has it (never downloading), else on random data of its shape (said so).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NAME = "bench"
#: the defaults keep the whole bench near a minute on one CPU core (timed on a 2-core VM)
DEFAULT_ROUNDS, DEFAULT_BATCHES, DEFAULT_EPOCH_ROUNDS = 5, 20, 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(NAME, help="time every activation on this machine: forward+backward against "
                                         "PyTorch's built-in and the naive formula, and a training epoch vs ReLU")
    p.add_argument("--device", metavar="DEV", default="auto", help="cpu, cuda, mps or auto (default auto)")
    p.add_argument("--activations", metavar="NAMES", help="comma-separated names (default: every registered one)")
    p.add_argument("--rounds", metavar="N", type=int, default=DEFAULT_ROUNDS,
                   help=f"timed rounds of the table (default {DEFAULT_ROUNDS})")
    p.add_argument("--batches", metavar="N", type=int, default=DEFAULT_BATCHES,
                   help=f"batches of 256 per timed training epoch (default {DEFAULT_BATCHES})")
    p.add_argument("--epoch-rounds", metavar="N", type=int, default=DEFAULT_EPOCH_ROUNDS,
                   help=f"timed rounds of the epochs (default {DEFAULT_EPOCH_ROUNDS})")
    p.add_argument("--threads", metavar="N", type=int, default=0,
                   help="torch CPU threads (default: torch's choice; 1 with --clock cpu gives steady figures)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time; cpu: this process's CPU seconds (steadier on a busy machine, "
                        "meaningful with --threads 1 on cpu)")
    p.add_argument("--no-epochs", action="store_true", help="only the forward+backward table")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")


def run(args: argparse.Namespace) -> int:
    from actlab.engine.errors import UserError

    for flag, value in (("--rounds", args.rounds), ("--batches", args.batches), ("--epoch-rounds", args.epoch_rounds)):
        if value < 1:
            raise UserError(f"{flag} {value}: must be at least 1")
    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: must be at least 1 (or 0 for torch's choice)")

    import json

    import torch

    from actlab.engine import benchmark
    from actlab.engine.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    names = benchmark.parse_names(args.activations)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {message}", file=sys.stderr, flush=True)

    data = None
    if not args.no_epochs:
        data = benchmark.real_epoch_data(args.batches, device)
        say(f"epoch data: {data.note or data.name}")
    result = benchmark.run_activation_bench(names, device=device, rounds=args.rounds, epochs=not args.no_epochs,
                                            batches=args.batches, epoch_rounds=args.epoch_rounds, data=data,
                                            clock=args.clock, progress=say)
    print(f"{torch.get_num_threads()} thread(s), {args.clock} clock, device {device}; machine load "
          f"{result['machine'].get('load_average', 'unknown')}")
    print(benchmark.format_activation_report(result["table"], result["epochs"]))
    if args.json:
        Path(args.json).write_text(json.dumps(benchmark.bench_json(result), indent=2) + "\n", encoding="utf-8")
    if result["worst"]:
        name, ratio = result["worst"]
        print(f"slowest epoch relative to relu: {name} {ratio:.3f}x")
    for warning in benchmark.bench_warnings(result):
        print(warning)
    say("done")
    return 0
