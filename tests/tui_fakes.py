"""Fakes for the TUI tests: an engine that records commands and emits scripted events,
a feed that replays a fixed session, and deterministic demo data (no torch anywhere)."""

from __future__ import annotations

import json
import math
import queue
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable

from actlab.engine import metrics
from actlab.engine.config import LabConfig
from actlab.engine.events import (ActivationSwapped, BatchProgress, CheckpointSaved, EpochDone, LayerStats,
                                  RunFailed, RunFinished, RunStarted, StateChanged, StepStats, event_to_json)
from actlab.tui.feed import Feed
from actlab.tui.feed_items import LAB_ORDER, Catalog, Curve

T0 = 1_700_000_000.0  # the scripted wall clock: every event time is T0 + seconds
HIDDEN = (512, 256, 256, 128)
SMOOTH = {"sigmoid", "tanh", "gelu", "swish", "mish", "tanhexp", "elu"}
SPARSE = {"relu"}

_FUNCS = {
    "sigmoid": lambda x: 1 / (1 + math.exp(-x)),
    "tanh": math.tanh,
    "relu": lambda x: max(x, 0.0),
    "leakyrelu": lambda x: x if x > 0 else 0.1 * x,
    "prelu": lambda x: x if x > 0 else 0.1 * x,
    "elu": lambda x: x if x > 0 else math.exp(x) - 1,
    "gelu": lambda x: 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "swish": lambda x: x / (1 + math.exp(-x)),
    "mish": lambda x: x * math.tanh(math.log1p(math.exp(x))),
    "tanhexp": lambda x: x * math.tanh(math.exp(x)),
}
FORMULAS = {"relu": "max(x, 0)", "tanh": "tanh(x)", "gelu": "0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))",
            "swish": "x · sigmoid(x)", "sigmoid": "1 / (1 + e^-x)"}


def curve(name: str, n: int = 201) -> Curve:
    """f and a central-difference f' in plain Python (the real app uses autograd)."""
    f = _FUNCS[name]
    xs = [-5 + 10 * i / (n - 1) for i in range(n)]
    h = 1e-4
    return Curve(name=name, xs=tuple(xs), ys=tuple(f(x) for x in xs),
                 dys=tuple((f(x + h) - f(x - h)) / (2 * h) for x in xs), formula=FORMULAS.get(name, name),
                 smooth=name in SMOOTH, sparse=name in SPARSE)


#: registered activations beyond the lab's ten (no key: the pickers reach them)
EXTRA = ("softsign", "hardswish", "selu")


def catalog() -> Catalog:
    return Catalog(names=(*LAB_ORDER, *EXTRA), curves={n: curve(n) for n in LAB_ORDER},
                   aliases={**{n: n for n in (*LAB_ORDER, *EXTRA)}, "silu": "swish"})


#: an empty runs folder of the test session, so a live lab under test never lists the past runs
#: of whatever ./runs the tests happen to be started in
EMPTY_RUNS = tempfile.mkdtemp(prefix="actlab-test-runs-")


def small_config(**dotted: Any) -> LabConfig:
    base = LabConfig().replace(**{"data.dataset": "fashion-mnist", "model.hidden_sizes": list(HIDDEN),
                                  "train.epochs": 50, "run.device": "cpu", "run.runs_dir": EMPTY_RUNS})
    return base.replace(**dotted) if dotted else base


# --- scripted per-layer numbers --------------------------------------------------------------

def layer_stats(run_id: str, epoch: int, activation: str, t: float) -> LayerStats:
    """Plausible probe output: ReLU kills a few neurons in the deep layers, tanh saturates."""
    layers: dict[str, dict[str, float]] = {}
    kinds: dict[str, str] = {}
    hists: dict[str, dict[str, list[float]]] = {}
    for i, size in enumerate(HIDDEN, 1):
        if activation == "relu":
            dead = [0, 0, 3, 10][i - 1] + (epoch > 2) * [0, 0, 1, 2][i - 1]
            sat = None
        else:
            dead = 0
            sat = 0.02 * i + 0.01 * epoch
        stats = {"size": float(size), "dead_exact": float(dead), "dead_exact_frac": dead / size,
                 "activation_rate": 0.5, "z_mean": 0.01 * i, "z_std": 1.0 / i}
        if sat is not None:
            stats["saturation"] = sat
        layers[f"act{i}"] = stats
        kinds[f"act{i}"] = metrics.ACTIVATION
        edges = [-1 + 0.25 * k for k in range(25)] if activation != "relu" else [0.25 * k for k in range(25)]
        counts = [round(1000 * math.exp(-((k - 4 - i) / (3 + i)) ** 2)) for k in range(24)]
        if activation == "relu":
            counts[0] = 20000
        hists[f"act/act{i}"] = {"edges": edges, "counts": counts}
    for j, name in enumerate(("fc1", "fc2", "fc3", "fc4", "out")):
        g = 10 ** (-3 + 0.4 * j)
        layers[name] = {"grad_mean_abs": g, "grad_l2": g * 30, "grad_max": g * 10, "update_ratio_log10": -3.0,
                        "dist_from_init": 0.1 * epoch}
        kinds[name] = metrics.LINEAR
        if epoch == 0:  # binned as log10 |g| over [-10, 0], like the engine's probes
            centre = 24 * (10 + math.log10(g)) / 10
            hists[f"grad_init/{name}"] = {"edges": [-10 + 10 * k / 24 for k in range(25)],
                                          "counts": [round(500 * math.exp(-((k - centre) / 2) ** 2)) for k in range(24)]}
    return LayerStats(run_id=run_id, time=t, epoch=epoch, layers=layers, histograms=hists, kinds=kinds)


def step_stats(run_id: str, epoch: int, first_step: int, n: int, t: float) -> StepStats:
    series = {}
    for j, name in enumerate(("fc1", "fc2", "fc3", "fc4", "out")):
        base = 10 ** (-3 + 0.4 * j)
        values = [base * (1 + 0.3 * math.sin((first_step + k) / 5 + j)) for k in range(n)]
        series[name] = {"grad_mean_abs": values, "grad_l2": [v * 30 for v in values],
                        "grad_max": [v * 10 for v in values]}
    return StepStats(run_id=run_id, time=t, epoch=epoch, first_step=first_step, series=series)


def run_started(run_id: str, activation: str, t: float, *, max_epochs: int = 50, steps: int = 195) -> RunStarted:
    return RunStarted(run_id=run_id, time=t, run_dir=f"runs/{run_id}", config={}, dataset="fashion-mnist",
                      dataset_note="", device="cpu (2 threads)", input_size=784, num_classes=10,
                      hidden_sizes=HIDDEN, activation=activation, activation_config={}, max_epochs=max_epochs,
                      steps_per_epoch=steps, train_size=50000, val_size=10000, test_size=10000,
                      param_count=567434)


def epoch_done(run_id: str, epoch: int, activation: str, t: float, *, quality: float = 1.0,
               best: float | None = None) -> EpochDone:
    val = quality * (0.80 + 0.08 * (1 - math.exp(-epoch / 3)))
    train = quality * (0.78 + 0.12 * (1 - math.exp(-epoch / 3)))
    return EpochDone(run_id=run_id, time=t, epoch=epoch, train_loss=0.6 * math.exp(-epoch / 4) + 0.25,
                     train_acc=train, val_loss=0.55 * math.exp(-epoch / 5) + 0.3, val_acc=val, seconds=4.0,
                     lr=0.01, activation=activation, best_val_acc=best if best is not None else val,
                     best_epoch=epoch, improved=True)


def demo_events() -> list[object]:
    """A session: run 1 tanh (stopped after 6 epochs), run 2 relu at epoch 5, mid-epoch 6."""
    events: list[object] = []
    t = T0
    a = "20260101-120000-tanh-s42"
    events.append(run_started(a, "tanh", t))
    events.append(layer_stats(a, 0, "tanh", t + 1))
    for e in range(1, 7):
        events.append(epoch_done(a, e, "tanh", t + 4 * e, quality=0.97))
    events.append(layer_stats(a, 6, "tanh", t + 25))
    events.append(CheckpointSaved(run_id=a, time=t + 26, epoch=6, step=1170, path=f"runs/{a}/checkpoints/last.pt",
                                  reason="manual"))
    events.append(RunFinished(run_id=a, time=t + 27, status="stopped", epochs_run=6, best_epoch=6,
                              best_val_acc=0.97 * (0.80 + 0.08 * (1 - math.exp(-2))), test_acc=0.8412,
                              test_loss=0.42, seconds=27.0))
    b = "20260101-120030-relu-s42"
    t = T0 + 30
    events.append(run_started(b, "relu", t))
    events.append(layer_stats(b, 0, "relu", t + 1))
    for e in range(1, 6):
        events.append(step_stats(b, e, (e - 1) * 195 + 1, 195, t + 4 * e - 1))
        events.append(epoch_done(b, e, "relu", t + 4 * e))
        events.append(layer_stats(b, e, "relu", t + 4 * e + 0.1))
    events.append(BatchProgress(run_id=b, time=t + 22, epoch=6, step=88, steps=195, global_step=5 * 195 + 88))
    return events


# --- a scripted feed (snapshots) ------------------------------------------------------------------

class ScriptedFeed(Feed):
    """Replays fixed items, then idles; live=True so the footer shows every key."""

    live = True

    def __init__(self, items: Iterable[object]) -> None:
        self.items = list(items)
        self.commands: list[tuple] = []
        self._done = threading.Event()
        self._stop = threading.Event()

    def run(self, sink, cancelled=lambda: False) -> None:
        for item in self.items:
            sink(item)
        self._stop.wait()
        self._done.set()

    def close(self) -> None:
        self._stop.set()

    def wait(self, timeout=None) -> bool:
        return self._done.wait(timeout)

    @property
    def busy(self) -> bool:
        return True

    def pause(self) -> None:
        self.commands.append(("pause",))

    def resume(self) -> None:
        self.commands.append(("resume",))


# --- a fake engine (pilot tests) ---------------------------------------------------------------------

class FakeControl:
    """Records every command, and hands them to the fake run like RunControl does."""

    def __init__(self) -> None:
        self.commands: list[tuple] = []
        self.configs: list[tuple[str, dict]] = []  # (name, activation config) of each swap
        self.queue: queue.SimpleQueue = queue.SimpleQueue()

    def _put(self, *command: Any) -> None:
        self.commands.append(command)
        self.queue.put(command)

    def pause(self) -> None:
        self._put("pause")

    def resume(self) -> None:
        self._put("resume")

    def stop(self, status: str = "stopped") -> None:
        self._put("stop", status)

    def save(self) -> None:
        self._put("save")

    def swap_activation(self, name: str, **config: Any) -> None:
        if name not in _FUNCS:
            raise ValueError(f"unknown activation {name!r}")
        self.configs.append((name, config))
        self._put("swap", name)


class FakeRun:
    """Emits RunStarted, the init stats and `engine.epochs` epochs, then obeys commands until
    stopped (or `engine.finish` is set: then it finishes on its own)."""

    def __init__(self, engine: "FakeEngine", config: LabConfig, consumers, control: FakeControl, data, *,
                 run_id: str = "", start_epoch: int = 0) -> None:
        self.engine, self.config, self.control, self.data = engine, config, control, data
        self.consumers = list(consumers)
        self.run_id = run_id or f"run{len(engine.runs) + 1}-{config.model.activation}"
        self.activation = config.model.activation
        self.start_epoch = start_epoch

    def emit(self, event) -> None:
        for consumer in self.consumers:
            consumer(event)

    def run(self) -> None:
        rid, act = self.run_id, self.activation
        self.engine.gate.wait(5)
        if self.engine.fail_with:
            self.emit(RunFailed(run_id=rid, error=self.engine.fail_with, error_type="RuntimeError"))
            return
        self.emit(run_started(rid, act, T0, max_epochs=self.config.train.epochs, steps=10))
        if not self.start_epoch:
            self.emit(layer_stats(rid, 0, act, T0))
        epoch = self.start_epoch
        for epoch in range(self.start_epoch + 1, self.start_epoch + self.engine.epochs + 1):
            self.emit(BatchProgress(run_id=rid, epoch=epoch, step=10, steps=10, global_step=10 * epoch))
            self.emit(epoch_done(rid, epoch, act, T0 + epoch))
        paused = False
        while True:
            try:
                command = self.control.queue.get(timeout=0.01)
            except queue.Empty:
                if self.engine.finish.is_set() and not paused:
                    self.emit(RunFinished(run_id=rid, status="finished", epochs_run=epoch, best_epoch=epoch,
                                          best_val_acc=0.85, test_acc=0.84, test_loss=0.4, seconds=1.0))
                    return
                continue
            kind = command[0]
            if kind == "pause" and not paused:
                paused = True
                self.emit(StateChanged(run_id=rid, state="paused"))
            elif kind == "resume" and paused:
                paused = False
                self.emit(StateChanged(run_id=rid, state="running"))
            elif kind == "save":
                self.emit(CheckpointSaved(run_id=rid, epoch=epoch, step=10 * epoch, path=f"runs/{rid}/last.pt",
                                          reason="manual"))
            elif kind == "swap":
                old, act = act, command[1]
                self.emit(ActivationSwapped(run_id=rid, epoch=epoch + 1, step=10 * epoch, old=old, new=act,
                                            new_config={}))
                epoch += 1
                self.emit(epoch_done(rid, epoch, act, T0 + epoch))
            elif kind == "stop":
                status = command[1]
                self.emit(CheckpointSaved(run_id=rid, epoch=epoch, step=10 * epoch, path=f"runs/{rid}/last.pt",
                                          reason="interrupt" if status == "interrupted" else "manual"))
                self.emit(RunFinished(run_id=rid, status=status, epochs_run=epoch, best_epoch=epoch,
                                      best_val_acc=0.85, test_acc=None if status == "interrupted" else 0.83,
                                      test_loss=None, seconds=1.0))
                return


class FakeEngine:
    """Implements `feed.Engine` without torch; remembers every run, control and data load."""

    def __init__(self, epochs: int = 2) -> None:
        self.epochs = epochs
        self.runs: list[FakeRun] = []
        self.controls: list[FakeControl] = []
        self.data_loads = 0
        self.fail_with = ""
        self.data_error: Exception | None = None
        self.finish = threading.Event()
        self.gate = threading.Event()  # cleared: new runs wait before announcing themselves
        self.gate.set()
        self.load_gate = threading.Event()  # cleared: the data load waits
        self.load_gate.set()
        self.loading = threading.Event()
        self.resumes: list[tuple[str, int | None]] = []

    def catalog(self, extra=()) -> Catalog:
        return catalog()

    def canonical(self, name: str) -> str:
        return {"silu": "swish"}.get(name, name)

    def load_data(self, config) -> str:
        self.loading.set()
        self.load_gate.wait(5)
        self.data_loads += 1
        if self.data_error is not None:
            error, self.data_error = self.data_error, None
            raise error
        return "DATA"

    def new_control(self) -> FakeControl:
        control = FakeControl()
        self.controls.append(control)
        return control

    def new_run(self, config, *, consumers, control, data) -> FakeRun:
        run = FakeRun(self, config, consumers, control, data)
        self.runs.append(run)
        return run

    def resume_run(self, run_dir, *, consumers, control, epochs) -> FakeRun:
        """Continue a folder written by `write_run_folder`: its id, from its last epoch."""
        from actlab.engine.runs import read_config, read_run

        self.resumes.append((str(run_dir), epochs))
        config = read_config(Path(run_dir))
        if epochs:
            config = config.replace(**{"train.epochs": epochs})
        table = read_run(run_dir)
        run = FakeRun(self, config, consumers, control, None, run_id=table.run_id,
                      start_epoch=max((row["epoch"] for row in table.epochs), default=0))
        self.runs.append(run)
        return run


# --- run folders on disk (past runs) ----------------------------------------------------------------

def write_run_folder(root: Path, run_id: str, activation: str, epochs: int, *, status: str = "finished",
                     quality: float = 1.0, t: float = T0) -> Path:
    """A run folder as the engine leaves it (config.json, events.jsonl), without training."""
    folder = Path(root) / run_id
    folder.mkdir(parents=True)
    config = small_config(**{"model.activation": activation, "train.epochs": epochs,
                             "run.runs_dir": str(root)})
    (folder / "config.json").write_text(json.dumps(config.to_dict()), encoding="utf-8")
    start = run_started(run_id, activation, t, max_epochs=epochs, steps=10)
    # the writer's own path, as another working directory saw it: readers must use the folder they read
    events: list[object] = [RunStarted(**{**start.__dict__, "run_dir": f"elsewhere/{run_id}"}),
                            layer_stats(run_id, 0, activation, t)]
    for e in range(1, epochs + 1):
        events.append(epoch_done(run_id, e, activation, t + e, quality=quality))
        events.append(layer_stats(run_id, e, activation, t + e))
    if status:
        events.append(RunFinished(run_id=run_id, time=t + epochs + 1, status=status, epochs_run=epochs,
                                  best_epoch=epochs, best_val_acc=quality * 0.85,
                                  test_acc=None if status in ("stopped", "interrupted") else quality * 0.84,
                                  test_loss=None, seconds=float(epochs)))
    (folder / "events.jsonl").write_text("".join(event_to_json(e) + "\n" for e in events), encoding="utf-8")
    (folder / "checkpoints").mkdir()
    return folder
