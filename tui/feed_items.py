"""What a feed hands the app besides the engine's own events.

The engine's events (`actlab.engine.events`) describe a run. These few frozen dataclasses
describe the session around the runs: which activations the lab offers (with their curves,
computed once in the worker thread), what the feed is doing while no run is active, and
errors that are not a run's own. Like the events they hold plain Python values only, so the
UI never touches a tensor. A feed puts them in the same buffer as the events; the app drains
that buffer on a timer (see `LabApp._drain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # engine.runs pulls in the config machinery: not needed for the first frame
    from actlab.engine.runs import RunTable

#: the lab's activation order before the engine has loaded (keys 1..9, 0); the engine's
#: `activation_names()` replaces it in `Catalog` (keys pick the first ten, pickers reach all)
LAB_ORDER: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leakyrelu", "prelu", "elu", "gelu", "swish", "mish",
                              "tanhexp")


@dataclass(frozen=True)
class Curve:
    """An activation's f(x) and f'(x) sampled on a grid (f' by autograd, in the worker)."""

    name: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    dys: tuple[float, ...]
    formula: str = ""
    smooth: bool | None = None  # None: unknown
    sparse: bool | None = None


@dataclass(frozen=True)
class Catalog:
    """The activations the lab offers, in key order, with their curves.

    Sent once the engine is importable (PyTorch loaded in the worker thread).
    """

    names: tuple[str, ...]  # every activation, the lab's ten first: keys 1..9, 0 pick names[0..9]
    curves: dict[str, Curve] = field(default_factory=dict)  # by canonical name
    aliases: dict[str, str] = field(default_factory=dict)  # any spelling -> canonical name


@dataclass(frozen=True)
class FeedStatus:
    """What the feed is doing while no run reports: loading, idle, watching."""

    state: str  # "loading", "idle", "watching", "waiting"
    detail: str = ""


@dataclass(frozen=True)
class FeedError:
    """An error outside a run (the engine would not load, the data could not be read)."""

    error: str


@dataclass(frozen=True)
class PastRun:
    """A run folder read back from disk (`lab.read_run`): shown in the leaderboard, not trained here."""

    table: RunTable
    folder: str = ""  # where it was read from (the log's own run_dir may be relative to another cwd)


@dataclass(frozen=True)
class WriterStatus:
    """Watching a log: whether the process that writes it still holds the run folder.

    `known` is False when the engine cannot tell (no lock to read); the app then judges
    staleness by silence alone.
    """

    known: bool
    alive: bool = False
    holder: str = ""  # "pid 123 on host" while alive
