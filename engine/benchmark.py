"""Measuring code shared by `actlab bench` and the scripts under `bench/`.

Timings on a shared machine drift by 10 % or more between processes, so nothing here compares
numbers taken in different processes or at different times: every comparison is a set of
*variants* timed side by side, interleaved round by round after a warm-up (`interleave`),
summarised by median and quartiles (`summarize`), and compared by the median of the per-round
ratios (`paired_ratio`), which cancels slow drifts of the machine's load.

Two clocks: "wall" (`time.perf_counter`, the device synchronised before and after each
sample on cuda/mps) and "cpu" (`time.process_time`, CPU seconds of this process). The CPU
clock barely moves when other processes compete for the cores, which makes it the steadier
figure on a busy machine, but it only means "time" with one thread on the cpu device.

What is measured:

- `time_activations`: forward + backward of each registered activation on a few input
  shapes, in three forms: actlab's module, PyTorch's built-in where one exists, and the
  textbook formula as tutorials write it (`activations.reference_formula`); plus whether
  each form stays finite (outputs and gradients) on [-1e4, 1e4].
- `time_activation_epochs`: the engine's own epoch function (`TrainingRun.train_epoch`,
  with its batching, optimizer, events and probe hooks) for each activation on data of
  FashionMNIST's shape, as a ratio to ReLU's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F

from .activations import activation_names, create_activation, reference_formula

#: the input shapes of the activation table: one default batch of the first hidden layer,
#: and a large batch where the elementwise kernels, not the call overhead, dominate
ACTIVATION_SHAPES: tuple[tuple[int, int], ...] = ((256, 512), (4096, 512))
#: the range on which every form is checked for non-finite outputs and gradients
FINITE_RANGE = 1e4
#: FashionMNIST's shapes: flattened 28x28 inputs, 10 classes
FASHION_INPUT_SHAPE, FASHION_CLASSES = (1, 28, 28), 10
CLOCKS = ("wall", "cpu")


# --- timing --------------------------------------------------------------------------------

def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op on cpu)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def clock_function(clock: str) -> Callable[[], float]:
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    return time.perf_counter if clock == "wall" else time.process_time


def interleave(variants: Mapping[str, Callable[[], Any]], *, rounds: int, warmup: int = 1,
               device: torch.device | str = "cpu", clock: str = "wall",
               progress: Callable[[str], None] | None = None,
               after: Mapping[str, Callable[[], Any]] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each variant: `rounds` samples each, taken round by round.

    Every round times each variant once; the order rotates from round to round so that no
    variant always follows the same neighbour. The first `warmup` rounds are not kept.
    `after[name]`, when given, runs right after each sample of `name`, outside its timing
    (work that belongs with the variant but is measured apart, e.g. epoch-end statistics).
    `progress` gets one line per round with the elapsed seconds and an estimate of the rest.
    """
    now = clock_function(clock)
    names = list(variants)
    after = after or {}
    samples: dict[str, list[float]] = {name: [] for name in names}
    began = time.perf_counter()
    total = warmup + rounds
    for r in range(total):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = now()
            variants[name]()
            synchronize(device)
            elapsed = now() - start
            if r >= warmup:
                samples[name].append(elapsed)
            if name in after:
                after[name]()
        if progress is not None:
            spent = time.perf_counter() - began
            eta = spent / (r + 1) * (total - r - 1)
            label = f"round {r + 1 - warmup}/{rounds}" if r >= warmup else f"warm-up {r + 1}/{warmup}"
            progress(f"{label} ({spent:.0f} s, about {eta:.0f} s left)")
    return samples


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (0 <= q <= 1) of the values, in any order; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """median, quartiles, min, max and spread = (q3 - q1) / median of a list of timings."""
    if not samples:
        raise ValueError("no samples to summarise")
    ordered = sorted(samples)
    median = statistics.median(ordered)
    q1, q3 = quantile(ordered, 0.25), quantile(ordered, 0.75)
    return {"median": median, "q1": q1, "q3": q3, "min": ordered[0], "max": ordered[-1],
            "spread": (q3 - q1) / median if median > 0 else 0.0, "n": len(ordered)}


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float]:
    """Per-round ratios numerator/denominator: their median, quartiles and extremes, and
    the ratio of the two medians (the same figure taken the other way)."""
    ratios = sorted(a / b for a, b in zip(numerator, denominator))
    return {"median": statistics.median(ratios), "q1": quantile(ratios, 0.25), "q3": quantile(ratios, 0.75),
            "min": ratios[0], "max": ratios[-1],
            "of_medians": statistics.median(numerator) / statistics.median(denominator)}


def paired_ratios(samples: Mapping[str, Sequence[float]],
                  pairs: Sequence[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """`paired_ratio` of each (a, b) pair as "a/b", for the pairs whose two variants were both timed."""
    return {f"{a}/{b}": paired_ratio(samples[a], samples[b]) for a, b in pairs if a in samples and b in samples}


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What the figures were measured on, including how busy the machine was."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": device.type,
    }
    with contextlib.suppress(OSError, AttributeError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    return info


# --- activations: the three forms ----------------------------------------------------------

def _builtin(name: str, cfg: Mapping[str, Any], device: torch.device) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """PyTorch's own function for activation `name` with hyper-parameters `cfg`, or None."""
    table: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": F.relu,
        "leakyrelu": lambda x: F.leaky_relu(x, cfg.get("alpha", 0.01)),
        "elu": lambda x: F.elu(x, cfg.get("alpha", 1.0)),
        "gelu": lambda x: F.gelu(x, approximate=cfg.get("approximate", "none")),
        "swish": F.silu,
        "mish": F.mish,
        "selu": F.selu,
        "celu": lambda x: F.celu(x, cfg.get("alpha", 1.0)),
        "softplus": lambda x: F.softplus(x, cfg.get("beta", 1.0), cfg.get("threshold", 20.0)),
        "softsign": F.softsign,
        "logsigmoid": F.logsigmoid,
        "relu6": F.relu6,
        "hardtanh": lambda x: F.hardtanh(x, cfg.get("min_val", -1.0), cfg.get("max_val", 1.0)),
        "hardswish": F.hardswish,
    }
    if name == "prelu":  # its learned slope, like the module's, gets a gradient too
        weight = torch.nn.Parameter(torch.full((1,), float(cfg.get("init", 0.25)), device=device))
        return lambda x: F.prelu(x, weight)
    return table.get(name)


def activation_forms(name: str, device: torch.device | str = "cpu") -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """{"actlab": module, "builtin": torch's function (when there is one), "naive": formula}."""
    module = create_activation(name).to(device)
    forms: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"actlab": module}
    builtin = _builtin(module.name, module.config, torch.device(device))
    if builtin is not None:
        forms["builtin"] = builtin
    forms["naive"] = lambda x, n=module.name, c=dict(module.config): reference_formula(n, x, **c)
    return forms


def is_finite_on_range(fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device | str = "cpu",
                       bound: float = FINITE_RANGE, points: int = 20001) -> bool:
    """Whether outputs and input gradients are finite on a grid over [-bound, bound]."""
    x = torch.linspace(-bound, bound, points, device=device, requires_grad=True)
    y = fn(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return bool(torch.isfinite(y).all() and torch.isfinite(grad).all())


def _fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor, reps: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(reps):
            x.grad = None
            fn(x).backward(g)
    return run


def _calibrate(run_once: Callable[[], None], device: torch.device, target: float) -> int:
    """Repetitions that make one sample last about `target` seconds (at least one)."""
    run_once()  # first call: allocations, lazy initialisation
    synchronize(device)
    start = time.perf_counter()
    run_once()
    synchronize(device)
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(10000, round(target / once)))


@dataclass
class ActivationTable:
    """Forward+backward microseconds per call of each (activation, shape, form)."""

    device: str
    shapes: list[tuple[int, int]]
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per activation and shape
    finite: dict[str, dict[str, bool]] = field(default_factory=dict)  # activation -> form -> finite
    clock: str = "wall"
    rounds: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "shapes": [list(s) for s in self.shapes], "clock": self.clock,
                "rounds": self.rounds, "rows": self.rows, "finite": self.finite}


def time_activations(names: Sequence[str] | None = None, *, device: torch.device | str = "cpu",
                     shapes: Sequence[tuple[int, int]] = ACTIVATION_SHAPES, rounds: int = 7, warmup: int = 1,
                     sample_seconds: float = 0.01, clock: str = "wall", seed: int = 0,
                     progress: Callable[[str], None] | None = None) -> ActivationTable:
    """Forward+backward time of each activation's forms on each shape, interleaved.

    Inputs are standard normal times 3 (pre-activations of a trained network are of that
    order); the upstream gradient is standard normal. One row per (activation, shape) holds,
    for each form, the median microseconds per call and its spread, and the ratios of
    actlab's time to the built-in's and to the naive formula's.
    """
    device = torch.device(device)
    names = list(names) if names is not None else activation_names()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    variants: dict[str, Callable[[], None]] = {}
    reps: dict[str, int] = {}
    keys: list[tuple[str, tuple[int, int], str]] = []
    finite: dict[str, dict[str, bool]] = {}
    for name in names:
        forms = activation_forms(name, device)
        finite[name] = {form: is_finite_on_range(fn, device) for form, fn in forms.items()}
        for shape in shapes:
            x = (torch.randn(shape, generator=gen) * 3).to(device).requires_grad_()
            g = torch.randn(shape, generator=gen).to(device)
            for form, fn in forms.items():
                key = f"{name}|{shape[0]}x{shape[1]}|{form}"
                n = _calibrate(_fwd_bwd(fn, x, g, 1), device, sample_seconds)
                variants[key], reps[key] = _fwd_bwd(fn, x, g, n), n
                keys.append((name, tuple(shape), form))
    samples = interleave(variants, rounds=rounds, warmup=warmup, device=device, clock=clock, progress=progress)
    table = ActivationTable(device=str(device), shapes=[tuple(s) for s in shapes], finite=finite, clock=clock,
                            rounds=rounds)
    by_row: dict[tuple[str, tuple[int, int]], dict[str, Any]] = {}
    for name, shape, form in keys:
        key = f"{name}|{shape[0]}x{shape[1]}|{form}"
        per_call = [s / reps[key] * 1e6 for s in samples[key]]
        row = by_row.setdefault((name, shape), {"activation": name, "shape": list(shape), "us": {}, "spread": {},
                                               "samples_us": {}, "reps": {}})
        summary = summarize(per_call)
        row["us"][form] = summary["median"]
        row["spread"][form] = summary["spread"]
        row["samples_us"][form] = per_call
        row["reps"][form] = reps[key]
    for row in by_row.values():
        mine = row["samples_us"]["actlab"]
        paired = {form: paired_ratio(mine, row["samples_us"][form]) for form in row["samples_us"] if form != "actlab"}
        row["ratio"] = {form: r["median"] for form, r in paired.items()}
        row["ratio_quartiles"] = {form: [r["q1"], r["q3"]] for form, r in paired.items()}
        table.rows.append(row)
    return table


# --- engine epochs -------------------------------------------------------------------------

def fashion_shaped_data(rows: int, *, device: torch.device | str = "cpu", seed: int = 0,
                        source: Any = None) -> Any:
    """`DataSplits` of FashionMNIST's shapes with `rows` training rows.

    `source`: a loaded `DataSplits` (FashionMNIST) whose first `rows` training rows are
    used; None: standard normal images and uniform labels (what the timing needs: the same
    shapes; the values only change which ReLUs fire).
    """
    from .data import DataSplits

    device = torch.device(device)
    if source is not None:
        take = min(rows, source.train_x.shape[0])
        return DataSplits(name=source.name, train_x=source.train_x[:take].to(device),
                          train_y=source.train_y[:take].to(device), val_x=source.val_x[:256].to(device),
                          val_y=source.val_y[:256].to(device), test_x=source.test_x[:256].to(device),
                          test_y=source.test_y[:256].to(device), input_shape=source.input_shape,
                          num_classes=source.num_classes, mean=source.mean, std=source.std,
                          note=f"first {take} training rows of {source.name}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    size = math.prod(FASHION_INPUT_SHAPE)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(n, size, generator=gen).to(device),
                torch.randint(0, FASHION_CLASSES, (n,), generator=gen).to(device))

    (tx, ty), (vx, vy), (sx, sy) = split(rows), split(256), split(256)
    # named fashion-mnist so that the run's config stays valid; the note says what it is
    return DataSplits(name="fashion-mnist", train_x=tx, train_y=ty, val_x=vx, val_y=vy, test_x=sx, test_y=sy,
                      input_shape=FASHION_INPUT_SHAPE, num_classes=FASHION_CLASSES, mean=0.0, std=1.0,
                      note="random data of FashionMNIST's shape")


class EpochTimer:
    """A `TrainingRun` set up on given data, whose epoch function can be called repeatedly.

    Each call runs `TrainingRun.train_epoch` from the first batch: the engine's real loop
    (batching, optimizer, commands, events, probe hooks), nothing copied. Validation and the
    per-epoch probe statistics are not part of it; `epoch_stats()` times the latter.
    Use as a context manager: the run folder (a temporary one) is removed on exit.
    """

    def __init__(self, config: Any, data: Any, probes: Any = None) -> None:
        from .training import TrainingRun

        self._tmp = tempfile.mkdtemp(prefix="actlab-bench-")
        self.run = TrainingRun(config.replace(**{"run.runs_dir": self._tmp}), data=data, probes=probes)
        self.run.prepare()
        self.run.probes.attach(self.run.model)
        self.epoch = 0

    def __call__(self) -> None:
        self.epoch += 1
        self.run.progress.batch = 0
        self.run.train_epoch(self.epoch)

    def epoch_stats(self) -> None:
        """The probes' end-of-epoch work (full passes over the training split)."""
        self.run.epoch_stats(self.epoch)

    @property
    def steps(self) -> int:
        data = self.run.data
        return data.train_x.shape[0] // min(self.run.config.train.batch_size, data.train_x.shape[0])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run.probes.detach()
        with contextlib.suppress(Exception):
            self.run.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "EpochTimer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def engine_config(device: torch.device | str = "cpu", activation: str = "relu", probes: bool = False,
                  **overrides: Any) -> Any:
    """The default recipe (MLP 784-512-256-256-128-10, SGD 0.01 / 0.9, batch 256)."""
    from .config import LabConfig

    return LabConfig().replace(**{"run.device": torch.device(device).type, "model.activation": activation,
                                  "probes.enabled": probes, **overrides})


def default_probes(config: Any) -> Any:
    """The probe set of `config.probes` (the front door's)."""
    from .lab import build_probes

    return build_probes(config)


@contextlib.contextmanager
def epoch_timers(names: Sequence[str], data: Any, *, device: torch.device | str = "cpu",
                 probes: bool = False, **overrides: Any) -> Iterator[dict[str, EpochTimer]]:
    timers: dict[str, EpochTimer] = {}
    try:
        for name in names:
            config = engine_config(device, name, probes, **overrides)
            timers[name] = EpochTimer(config, data, default_probes(config) if probes else None)
        yield timers
    finally:
        for timer in timers.values():
            timer.close()


def time_activation_epochs(names: Sequence[str] | None = None, *, device: torch.device | str = "cpu",
                           batches: int = 60, rounds: int = 5, warmup: int = 1, data: Any = None,
                           probes: bool = False, clock: str = "wall",
                           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The engine's epoch (`batches` batches of 256) per activation, relative to ReLU's.

    Returns {"batches", "data", "activations": {name: {"seconds": summary, "ms_per_batch",
    "ratio_to_relu": paired ratio}}}; ReLU is always measured, as the reference.
    """
    device = torch.device(device)
    names = list(names) if names is not None else activation_names()
    if "relu" not in names:
        names = ["relu", *names]
    data = data if data is not None else fashion_shaped_data(batches * 256, device=device)
    with epoch_timers(names, data, device=device, probes=probes) as timers:
        steps = next(iter(timers.values())).steps
        samples = interleave(timers, rounds=rounds, warmup=warmup, device=device, clock=clock, progress=progress)
    out: dict[str, Any] = {}
    for name in names:
        summary = summarize(samples[name])
        out[name] = {"seconds": summary, "ms_per_batch": summary["median"] / steps * 1e3,
                     "ratio_to_relu": paired_ratio(samples[name], samples["relu"]),
                     "samples": samples[name]}
    return {"batches": steps, "data": data.note or data.name, "probes": probes, "clock": clock,
            "rounds": rounds, "activations": out}


# --- reference loops: the bare in-memory loop and the GEMM bound --------------------------

#: the default recipe's layer widths (MLP 784-512-256-256-128-10)
DEFAULT_SIZES = (784, 512, 256, 256, 128, 10)


def bare_network(sizes: Sequence[int] = DEFAULT_SIZES) -> torch.nn.Module:
    """Linear + ReLU per hidden layer, as a tutorial writes it (no actlab code)."""
    layers: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class BareLoop:
    """The bare in-memory loop: the least code that trains and validates the default recipe.

    Whole splits as tensors, a permutation per epoch, batches gathered by `index_select` into
    two reused buffers, forward / cross-entropy / backward / SGD step (momentum 0.9, the fused
    kernel where there is one), then one validation pass; losses and accuracies read back once
    per epoch. No events, no checkpoints, no probes. With `graphs` (CUDA only) the step is
    replayed from a CUDA graph (engine/step_graph.py). `train_seconds` and `validate_seconds`
    hold each call's two parts (on the given clock).
    """

    def __init__(self, data: Any, *, batch_size: int = 256, lr: float = 0.01, seed: int = 0,
                 sizes: Sequence[int] = DEFAULT_SIZES, clock: str = "wall", graphs: bool = False) -> None:
        from .step_graph import CapturedStep

        torch.manual_seed(seed)
        self.data = data
        self.device = data.train_x.device
        self.model = bare_network(sizes).to(self.device)
        try:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, fused=True)
        except (RuntimeError, TypeError, ValueError):
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.batch_size = bs = min(batch_size, data.train_x.shape[0])
        self.shuffle = torch.Generator().manual_seed(seed)
        self.now = clock_function(clock)
        self.x = data.train_x.new_empty((bs, data.train_x.shape[1]))
        self.y = data.train_y.new_empty((bs,))
        self.loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self.correct = torch.zeros((), device=self.device, dtype=torch.int64)
        self.step = CapturedStep(self._step, self.device) if graphs else self._step
        self.train_seconds: list[float] = []
        self.validate_seconds: list[float] = []
        self.last: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)

    def _step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(self.x)
        loss = F.cross_entropy(logits, self.y)
        loss.backward()
        self.optimizer.step()
        self.loss_sum.add_(loss.detach(), alpha=self.batch_size)
        self.correct.add_((logits.detach().argmax(1) == self.y).sum())

    def __call__(self) -> None:
        d, model, bs = self.data, self.model, self.batch_size
        start = self.now()
        n = d.train_x.shape[0]
        perm = torch.randperm(n, generator=self.shuffle).to(self.device)
        self.loss_sum.zero_()
        self.correct.zero_()
        model.train()
        for b in range(n // bs):
            idx = perm[b * bs:(b + 1) * bs]
            torch.index_select(d.train_x, 0, idx, out=self.x)
            torch.index_select(d.train_y, 0, idx, out=self.y)
            self.step()
        synchronize(self.device)
        middle = self.now()
        model.eval()
        val = torch.zeros(2, device=self.device, dtype=torch.float64)
        with torch.inference_mode():
            for s in range(0, d.val_x.shape[0], 4096):
                logits = model(d.val_x[s:s + 4096])
                val[0] += F.cross_entropy(logits, d.val_y[s:s + 4096], reduction="sum").double()
                val[1] += (logits.argmax(1) == d.val_y[s:s + 4096]).sum()
        self.last = tuple(torch.cat([self.loss_sum.reshape(1), self.correct.double().reshape(1), val]).tolist())
        end = self.now()
        self.train_seconds.append(middle - start)
        self.validate_seconds.append(end - middle)


def gemm_epoch(steps: int, device: torch.device | str = "cpu", batch_size: int = 256,
               sizes: Sequence[int] = DEFAULT_SIZES) -> Callable[[], None]:
    """The lower bound of an epoch: the matrix multiplies of `steps` training steps, nothing else.

    Forward x @ W^T for each Linear layer; backward dW = g^T @ x for all and dX = g @ W for all
    but the first (torch.mm into preallocated outputs, the layouts autograd uses): 14 GEMMs per
    step for the default MLP.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device)

    n = len(sizes) - 1
    weights = [rand(sizes[i + 1], sizes[i]) for i in range(n)]  # (out, in), as nn.Linear
    inputs = [rand(batch_size, sizes[i]) for i in range(n)]  # each layer's input
    grads = [rand(batch_size, sizes[i + 1]) for i in range(n)]  # gradient at each layer's output
    outs = [torch.empty(batch_size, sizes[i + 1], device=device) for i in range(n)]
    dws = [torch.empty(sizes[i + 1], sizes[i], device=device) for i in range(n)]
    dxs = [torch.empty(batch_size, sizes[i], device=device) for i in range(n)]

    def epoch() -> None:
        for _ in range(steps):
            for i in range(n):  # forward: x @ W^T
                torch.mm(inputs[i], weights[i].t(), out=outs[i])
            for i in reversed(range(n)):  # backward: dW = g^T @ x, dX = g @ W
                torch.mm(grads[i].t(), inputs[i], out=dws[i])
                if i > 0:
                    torch.mm(grads[i], weights[i], out=dxs[i])

    return epoch


def spread_warning(label: str, ratio: Mapping[str, float], tolerance: float = 0.05) -> str:
    """A warning line when a paired ratio's samples scatter too much to read it ('' if not).

    Inconclusive: the quartiles of the per-round ratios lie more than `tolerance` (relative
    to the median) apart; the line also says when they straddle 1.0 (then not even which of
    the two is faster is known).
    """
    q1, q3, median = ratio["q1"], ratio["q3"], ratio["median"]
    width = (q3 - q1) / median if median > 0 else math.inf
    if width <= tolerance:
        return ""
    straddles = ", straddling 1.0" if q1 < 1.0 < q3 else ""
    return (f"WARNING: {label} = {median:.3f} is inconclusive: its quartiles [{q1:.3f} .. {q3:.3f}] lie "
            f"{width:.0%} apart{straddles}; rerun with more rounds, --threads 1 --clock cpu, or on a quieter machine")


def real_epoch_data(batches: int, device: torch.device | str = "cpu") -> Any:
    """`batches` x 256 training rows of FashionMNIST when `ACTLAB_DATA` or the data cache has it
    (never downloading), else random data of its shape; the `note` says which."""
    from .data import load_dataset
    from .errors import DataError

    try:
        loaded = load_dataset("fashion-mnist", device="cpu", download=False, fallback="none")
    except DataError as exc:
        data = fashion_shaped_data(batches * 256, device=device)
        reason = str(exc).split(":", 1)[-1].strip()
        return dataclasses.replace(data, note=f"random data of FashionMNIST's shape (FashionMNIST: {reason[:120]})")
    return fashion_shaped_data(batches * 256, device=device, source=loaded)


def bench_warnings(result: Mapping[str, Any], tolerance: float = 0.05, table_tolerance: float = 0.10) -> list[str]:
    """WARNING lines for the ratios of `run_activation_bench`'s result that are inconclusive:
    each epoch ratio to ReLU, and one line listing the table's too-scattered actlab/builtin cells."""
    lines = []
    epochs = result.get("epochs")
    if epochs:
        for name, entry in epochs["activations"].items():
            if name != "relu":
                line = spread_warning(f"epoch {name}/relu", entry["ratio_to_relu"], tolerance)
                if line:
                    lines.append(line)
    table = result["table"]
    rows = table.rows if hasattr(table, "rows") else table["rows"]
    scattered = []
    for row in rows:
        for form, (q1, q3) in row.get("ratio_quartiles", {}).items():
            median = row["ratio"][form]
            if median > 0 and (q3 - q1) / median > table_tolerance:
                scattered.append(f"{row['activation']} {row['shape'][0]}x{row['shape'][1]} vs {form}")
    if scattered:
        shown = ", ".join(scattered[:8]) + (f" and {len(scattered) - 8} more" if len(scattered) > 8 else "")
        lines.append(f"WARNING: {len(scattered)} table ratios are inconclusive (quartiles over "
                     f"{table_tolerance:.0%} apart): {shown}; rerun with more --rounds or --threads 1 --clock cpu")
    return lines


# --- the report of `actlab bench` ----------------------------------------------------------

def format_activation_report(table: ActivationTable, epochs: dict[str, Any] | None) -> str:
    """The activation table as fixed-width text, one line per activation."""
    lines = []
    shapes = table.shapes
    head = f"{'activation':<11}"
    for s in shapes:
        label = f"{s[0]}x{s[1]}"
        head += f" | {label + ' actlab':>17} {'builtin':>8} {'naive':>8}"
    if epochs:
        head += f" | {'epoch/relu':>10}"
    head += " | finite"
    lines.append(f"forward+backward, microseconds per call (median of {table.rounds} rounds, {table.clock} clock, "
                 f"device {table.device})")
    lines.append(head)
    lines.append("-" * len(head))
    rows = {(r["activation"], tuple(r["shape"])): r for r in table.rows}
    for name in dict.fromkeys(r["activation"] for r in table.rows):
        line = f"{name:<11}"
        for s in shapes:
            r = rows[(name, tuple(s))]
            us = r["us"]
            builtin = f"{us['builtin']:8.1f}" if "builtin" in us else f"{'-':>8}"
            line += f" | {us['actlab']:17.1f} {builtin} {us['naive']:8.1f}"
        if epochs:
            e = epochs["activations"].get(name)
            line += f" | {e['ratio_to_relu']['median']:9.3f}x" if e else f" | {'-':>10}"
        fin = table.finite.get(name, {})
        line += " | " + " ".join(f"{form}:{'yes' if ok else 'NO'}" for form, ok in fin.items())
        lines.append(line)
    if epochs:
        lines.append(f"epoch/relu: the engine's epoch of {epochs['batches']} batches of 256 "
                     f"({epochs['data']}, probes {'on' if epochs['probes'] else 'off'}), "
                     f"median of per-round ratios over {epochs['rounds']} rounds")
    return "\n".join(lines)


def worst_epoch_ratio(epochs: dict[str, Any]) -> tuple[str, float]:
    """The activation whose epoch is slowest relative to ReLU, and that ratio."""
    name, entry = max(((n, e) for n, e in epochs["activations"].items() if n != "relu"),
                      key=lambda item: item[1]["ratio_to_relu"]["median"], default=("relu", None))
    return name, entry["ratio_to_relu"]["median"] if entry else 1.0


def parse_names(text: str | None) -> list[str] | None:
    """'tanhexp,swish' -> canonical names (an unknown one raises the registry's UserError)."""
    if not text:
        return None
    from .activations import canonical_name

    return list(dict.fromkeys(canonical_name(part) for part in text.split(",") if part.strip()))


def run_activation_bench(names: Sequence[str] | None = None, *, device: torch.device | str = "cpu",
                         rounds: int = 7, sample_seconds: float = 0.01, epochs: bool = True,
                         batches: int = 60, epoch_rounds: int = 5, data: Any = None, probes: bool = False,
                         clock: str = "wall", progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The activation table and (with `epochs`) the epoch ratios to ReLU, as one JSON-able dict.

    {"machine", "table": ActivationTable.to_dict(), "epochs": time_activation_epochs(...) or None,
    "worst": [name, ratio] or None}.
    """
    device = torch.device(device)
    say = progress or (lambda message: None)
    say(f"activation table: {len(names) if names else len(activation_names())} activations on {device}")
    table = time_activations(names, device=device, rounds=rounds, sample_seconds=sample_seconds, clock=clock,
                             progress=lambda m: say(f"  forward+backward {m}"))
    epoch_result = None
    if epochs:
        say(f"engine epochs of {batches} batches per activation")
        epoch_result = time_activation_epochs(names, device=device, batches=batches, rounds=epoch_rounds,
                                              data=data, probes=probes, clock=clock,
                                              progress=lambda m: say(f"  epochs {m}"))
    return {"machine": machine_info(device), "table": table, "epochs": epoch_result,
            "worst": list(worst_epoch_ratio(epoch_result)) if epoch_result else None}


def bench_json(result: dict[str, Any]) -> dict[str, Any]:
    """`run_activation_bench`'s result with the table as a plain dict (for json.dumps)."""
    out = dict(result)
    out["table"] = result["table"].to_dict()
    return out


# --- the scripts under bench/: their common arguments, data and results -------------------

#: the --clock help of the scripts that time with `clock_function`
CLOCK_HELP = ("wall: elapsed time; cpu: this process's CPU time (steadier on a busy machine, "
              "meaningful with --threads 1 on cpu)")


def bench_parser(description: str, *, clock_help: str = CLOCK_HELP) -> argparse.ArgumentParser:
    """An argument parser with --device, --threads and --clock, spelled the same in every bench script."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", default="wall", choices=CLOCKS, help=clock_help)
    return parser


def parse_bench_args(parser: argparse.ArgumentParser,
                     argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, torch.device]:
    """Parse `bench_parser`'s arguments, line-buffer stdout (progress shows as it happens), apply
    --threads (0 keeps torch's choice) and resolve --device, before anything is timed."""
    from .device import resolve_device

    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, resolve_device(args.device)


def fashion_source(shared: Path) -> str:
    """Where the bench scripts read FashionMNIST: ACTLAB_DATA, else `shared` when it holds
    FashionMNIST/raw, else "" (the caller falls back to data of its shape)."""
    return os.environ.get("ACTLAB_DATA") or (str(shared) if (Path(shared) / "FashionMNIST" / "raw").is_dir() else "")


def bench_cache() -> Path:
    """The decoded-dataset cache the bench scripts share, so only the first run decodes."""
    return Path(tempfile.gettempdir()) / "actlab-bench-cache"


def load_fashion(source: str, device: torch.device | str = "cpu", seed: int = 42) -> Any:
    """FashionMNIST `DataSplits` from `source` through `bench_cache()`, never downloading."""
    from .data import load_dataset

    return load_dataset("fashion-mnist", device=device, seed=seed, source=source, cache_dir=bench_cache(),
                        fallback="none")


def save_results(folder: Path, benchmark: str, payload: Mapping[str, Any], *, indent: int = 2) -> Path:
    """Write `payload` as folder/<benchmark>-<local time>.json (folder created) and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{benchmark}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(payload, indent=indent))
    return out


def target_check(value: float, target: float, *, at_most: bool = True, shown: str | None = None) -> str:
    """The headline's "(target <= 1.15x: met)" clause; `shown` is how the target is written."""
    met = value <= target if at_most else value >= target
    return f"(target {'<=' if at_most else '>='} {target if shown is None else shown}: {'met' if met else 'NOT met'})"


def finish(folder: Path, benchmark: str, payload: Mapping[str, Any], headline: str, *, root: Path) -> int:
    """Save the results, print their path (relative to `root`) and, last, the headline; exit code 0."""
    out = save_results(folder, benchmark, payload)
    print(f"results: {out.relative_to(root)}")
    print(f"headline: {headline}")
    return 0


class OutcomeCollector:
    """A `StudyListener` that only keeps the outcomes, for timing an executor with nothing drawn."""

    def __init__(self) -> None:
        self.outcomes: list[Any] = []

    def trial_started(self, task: Any, worker: str) -> None:
        """Nothing to show."""

    def trial_progress(self, progress: Any) -> None:
        """Nothing to show."""

    def trial_finished(self, outcome: Any) -> None:
        """Kept in `outcomes`, in the order the trials ended."""
        self.outcomes.append(outcome)
