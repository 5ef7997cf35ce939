"""The lab's configuration: `lab.toml` parsed into frozen dataclasses, strictly checked.

Each section is a frozen dataclass whose fields carry their own rule (type, allowed
choices, range) and a one-line doc. One generic checker walks them, so every error has the
same shape, `lab.toml:12: train.lr = -0.1: must be > 0`, naming the file, the line (where
it can be found), the key and what is allowed. Unknown keys are errors with the closest
valid key suggested. This module is torch-free; activation names are checked by the
registry when the run starts (see `check_names`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import math
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, printable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG_FILE = "lab.toml"


def option(default: Any, doc: str, *, choices: tuple | None = None, min: float | None = None,
           max: float | None = None, min_open: bool = False, max_open: bool = False,
           nonempty: bool = False, max_len: int | None = None) -> Any:
    """A config field with its rule; `min_open`/`max_open` make a bound exclusive.

    Numbers without a `max` get the generic limits below (`INT_LIMIT`, `FLOAT_LIMIT`), so no
    value reaches PyTorch that it cannot hold; `max_len` bounds a string's or list's length.
    """
    meta = dict(doc=doc, choices=choices, min=min, max=max, min_open=min_open,
                max_open=max_open, nonempty=nonempty, max_len=max_len)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    seed: int = option(42, "seed for weights, data split, shuffling and dropout", min=0, max=2**63 - 1)
    device: str = option("auto", "where to train", choices=("auto", "cuda", "mps", "cpu"))
    runs_dir: str = option("runs", "folder that receives one sub-folder per run")
    name: str = option("", "optional label added to the run id", max_len=64)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = option("fashion-mnist", "dataset to train on",
                          choices=("fashion-mnist", "mnist", "digits", "blobs"))
    source: str = option("", "folder of pre-downloaded .gz files (read only); "
                             "empty: $ACTLAB_DATA or download")
    cache_dir: str = option("", "where datasets are cached; empty: the user cache directory")
    normalization: str = option("dataset", "'dataset': the data's own mean/std; 'half': (0.5, 0.5)",
                                choices=("dataset", "half"))
    val_size: int = option(10000, "images held out of the 60k training set for validation", min=1)
    fallback: str = option("digits", "dataset used when the chosen one is unavailable offline",
                           choices=("digits", "none"))


@dataclass(frozen=True)
class ModelConfig:
    hidden_sizes: tuple = option((512, 256, 256, 128), "hidden layer widths", min=1, nonempty=True,
                                 max_len=1000)
    activation: str = option("relu", "activation function (see `actlab run --help`)")
    activation_config: dict = option({}, "activation hyper-parameters, e.g. {alpha = 0.1}")
    dropout: float = option(0.0, "dropout after each hidden activation", min=0.0, max=1.0,
                            max_open=True)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = option("sgd", "optimizer", choices=("sgd", "adam"))
    lr: float = option(0.01, "learning rate", min=0.0, min_open=True)
    momentum: float = option(0.9, "SGD momentum", min=0.0, max=1.0, max_open=True)
    weight_decay: float = option(0.0, "L2 weight decay", min=0.0)
    batch_size: int = option(256, "batch size (the last partial batch is dropped)", min=1)
    epochs: int = option(50, "maximum number of epochs", min=1, max=10**6)
    patience: int = option(7, "early stopping: epochs without a better validation accuracy; "
                               "0 turns it off", min=0)
    cuda_graphs: str = option("auto", "capture the training step as a CUDA graph: 'auto' (on CUDA, when the "
                                      "probes allow it), 'on' (needs CUDA), 'off'", choices=("auto", "on", "off"))


@dataclass(frozen=True)
class ProbesConfig:
    """Which per-layer probes run and how often (owned by `probes`; see engine/probes/)."""

    enabled: bool = option(True, "run the probes at all")
    dead_exact_every: int = option(0, "also every N epochs the exact dead-neuron count, a no-grad pass over the "
                                      "whole training split (it always runs at initialisation and on the best "
                                      "weights after training; per epoch the live count is shown); 0 = never "
                                      "between those two", min=0)
    rates: bool = option(True, "live output rates: activation rate, per-batch death rate, never-active neurons")
    grad_rates: bool = option(True, "the same rates from parameter gradients (all-zero weight row and bias)")
    saturation: bool = option(True, "share of units with |f'(z)| below the threshold, mean and std of z")
    saturation_threshold: float = option(1e-3, "|f'(z)| below this counts as saturated", min=0.0, min_open=True)
    sample_rows: int = option(64, "rows of a sampled batch used for activation rate, saturation and z statistics",
                              min=1)
    sample_every: int = option(64, "sample one random training batch in each stretch of about N batches of an "
                                   "epoch, at least 4 per epoch (1 = every batch)", min=1)
    gradients: bool = option(True, "mean |g|, L2 norm and max of each weight gradient, per step and per epoch")
    gradients_every: int = option(32, "measure the gradients on the first and every N-th step of an epoch "
                                      "(1 = every step)", min=1)
    series_limit: int = option(4096, "per-step values kept between two reads of the series at most", min=1)
    weights: bool = option(True, "update-to-weight ratio per epoch and distance from the initial weights")
    histograms: bool = option(True, "histograms: activation outputs at epoch end, weight gradients at init")
    hist_bins: int = option(64, "bins of every histogram", min=1, max=1000)
    hist_rows: int = option(512, "rows of the epoch-end validation pass (training rows at init) the activation "
                                  "histograms are taken over", min=1)
    act_hist_fit: bool = option(True, "fit each activation histogram's range to the activation: its own bounds "
                                      "where it has them (sigmoid 0..1, tanh -1..1, ELU's -alpha), the values of "
                                      "the first pass where it has none; false: act_hist_min..act_hist_max")
    act_hist_min: float = option(-4.0, "lowest edge of the activation histograms (values below: first bin; "
                                       "with act_hist_fit, only for an unbounded side before any pass)")
    act_hist_max: float = option(12.0, "highest edge of the activation histograms (values above: last bin; "
                                       "with act_hist_fit, only for an unbounded side before any pass)")
    grad_hist_min: float = option(-10.0, "lowest edge of the gradient histograms, in log10 |g|", min=-45.0,
                                  max=39.0)
    grad_hist_max: float = option(0.0, "highest edge of the gradient histograms, in log10 |g|", min=-45.0,
                                  max=39.0)
    init_batch: int = option(256, "training rows of the one batch used for gradient statistics at init", min=1)
    nonfinite: bool = option(True, "find the first layer whose outputs or gradients turn NaN or inf")


@dataclass(frozen=True)
class UIConfig:
    """Settings of the live app (owned by `actlab.tui`)."""

    refresh_hz: float = option(10.0, "screen repaints per second at most", min=0.5, max=60.0)


@dataclass(frozen=True)
class LabConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    ui: UIConfig = field(default_factory=UIConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **dotted: Any) -> "LabConfig":
        """A copy with `section.key` values replaced, each checked like the file's."""
        return apply_overrides(self, dotted)

    def explicit_keys(self) -> frozenset[str] | None:
        """The `section.key`s the user set (file, flags, `--set`); None when not known (a
        config built in code), which counts as "everything set": no dataset recipe applies."""
        return self.__dict__.get("_explicit")


def _with_explicit(config: LabConfig, keys: frozenset[str] | None) -> LabConfig:
    object.__setattr__(config, "_explicit", keys)  # not a field: equality and to_dict ignore it
    return config


SECTIONS: dict[str, type] = {f.name: f.type if isinstance(f.type, type) else globals()[f.type]
                             for f in dataclasses.fields(LabConfig)}


# --- dataset recipes ----------------------------------------------------------------------

#: What suits each dataset when the user did not say otherwise (batch size, epochs,
#: patience). FashionMNIST's and MNIST's are the reference recipe (the dataclass defaults);
#: digits has 1,079 training images, so batches of 256 would be 4 steps an epoch and most
#: activations would stop far from converged (ReLU at 20% after 6 epochs): batches of 32 are
#: 33 steps, and in 20 epochs every activation but sigmoid reaches ~95% (sigmoid stays near
#: chance, as on FashionMNIST with seed 42); swish and gelu start slowly, hence patience 8.
#: blobs has 80 training points: batches of 16.
DATASET_RECIPES: dict[str, dict[str, int]] = {
    "fashion-mnist": {"train.batch_size": 256, "train.epochs": 50, "train.patience": 7},
    "mnist": {"train.batch_size": 256, "train.epochs": 50, "train.patience": 7},
    "digits": {"train.batch_size": 32, "train.epochs": 20, "train.patience": 8},
    "blobs": {"train.batch_size": 16, "train.epochs": 30, "train.patience": 10},
}


def apply_recipe(config: LabConfig, dataset: str | None = None) -> LabConfig:
    """`config` with its dataset's recipe for every recipe key the user did not set.

    `dataset` is the dataset really used (after an offline fallback); keys set in the file,
    by a flag or by `--set` win, and a config built in code (`explicit_keys()` is None) is
    returned as it is.
    """
    explicit = config.explicit_keys()
    recipe = DATASET_RECIPES.get(dataset or config.data.dataset, {})
    if explicit is None:
        return config
    changes = {key: value for key, value in recipe.items() if key not in explicit}
    if not changes:
        return config
    updated = apply_overrides(config, changes, source="recipe")
    return _with_explicit(updated, explicit)  # the recipe is a default, not the user's choice


# --- checking ---------------------------------------------------------------------------

#: integers without their own maximum stop here (PyTorch's sizes and counters are int64,
#: many kernels index with int32)
INT_LIMIT = 2**31 - 1
#: floats without their own range stay where float32 (what the model computes in) holds them
FLOAT_LIMIT = 1e30
#: non-zero floats smaller than this are subnormal or zero in float32
FLOAT_TINY = 1e-30
#: a config file larger than this is not a config file (lab.toml is ~5 KB)
MAX_CONFIG_BYTES = 1 << 20
#: tables and arrays nested deeper than this are refused (no value of lab.toml nests > 2)
MAX_DEPTH = 16

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               tuple: "a list of integers", dict: "a table"}


def _bounds(f: dataclasses.Field) -> tuple[float | None, float | None]:
    """(min, max) of a numeric field, with the generic limits where the field sets none."""
    rule, t = f.metadata, _base_type(f)
    lo, hi = rule.get("min"), rule.get("max")
    if t in (int, tuple):
        return (-INT_LIMIT if lo is None else lo), (INT_LIMIT if hi is None else hi)
    if t is float:
        return (-FLOAT_LIMIT if lo is None else lo), (FLOAT_LIMIT if hi is None else hi)
    return lo, hi


def _describe(f: dataclasses.Field) -> str:
    rule = f.metadata
    if rule.get("choices"):
        return "one of " + ", ".join(repr(c) for c in rule["choices"])
    t = _base_type(f)
    kind = _TYPE_NAMES.get(t, "a value")
    bounds = []
    if t in (int, float, tuple):
        lo, hi = _bounds(f)
        bounds.append(("> " if rule["min_open"] else ">= ") + _fmt(lo))
        bounds.append(("< " if rule["max_open"] else "<= ") + _fmt(hi))
    if t is tuple:
        most = f" (at most {rule['max_len']} layers)" if rule.get("max_len") else ""
        return "a non-empty list of integers each " + " and ".join(bounds) + most
    if t is str and rule.get("max_len"):
        return f"a string of at most {rule['max_len']} characters"
    if t is dict:
        return "a table of numbers, strings or booleans"
    return kind + (" " + " and ".join(bounds) if bounds else "")


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e16:
        return str(int(x))
    return f"{x:g}"


def _base_type(f: dataclasses.Field) -> type:
    t = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str, "bool": bool,
                                                  "tuple": tuple, "dict": dict}[str(f.type)]
    return t


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(f: dataclasses.Field, value: Any) -> Any:
    """The value converted to the field's type, or a ValueError saying what is allowed.

    Anything a TOML or JSON parser can produce is handled: dates and times, nested arrays
    and tables, integers of any size, inf and nan, subnormal floats.
    """
    t = _base_type(f)
    rule = f.metadata
    bad = ValueError(f"must be {_describe(f)}")
    if t is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if t is int:
        if not _is_int(value):
            raise bad
        _check_range(value, f, bad)
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if _is_int(value) and abs(value) > FLOAT_LIMIT:
            raise bad
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise bad
        if value != 0.0 and abs(value) < FLOAT_TINY:
            raise ValueError(f"must be {_describe(f)}, and 0 or at least {FLOAT_TINY:g} in size "
                             "(smaller values are zero or subnormal in float32)")
        value = value + 0.0  # -0.0 becomes 0.0
        _check_range(value, f, bad)
        return value
    if t is str:
        if not isinstance(value, str):
            raise bad
        if rule.get("max_len") and len(value) > rule["max_len"]:
            raise ValueError(f"must be {_describe(f)} (this one has {len(value)})")
        if rule.get("choices") and value not in rule["choices"]:
            close = difflib.get_close_matches(value, rule["choices"], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"must be {_describe(f)}{hint}")
        return value
    if t is tuple:
        if not isinstance(value, (list, tuple)) or (rule.get("nonempty") and not value):
            raise bad
        if rule.get("max_len") and len(value) > rule["max_len"]:
            raise ValueError(f"must be {_describe(f)}; this one has {len(value)}")
        for item in value:
            if not _is_int(item):
                raise bad
            _check_range(item, f, bad)
        return tuple(value)
    if t is dict:
        if not isinstance(value, Mapping):
            raise bad
        for key, item in value.items():
            if not isinstance(key, str):
                raise bad
            if isinstance(item, (bool, str)):
                continue
            if not isinstance(item, (int, float)) or not math.isfinite(item) or abs(item) > FLOAT_LIMIT:
                raise ValueError(f"must be {_describe(f)}; {printable(key)} is not one (numbers: finite, "
                                 f"at most {FLOAT_LIMIT:g} in size)")
        return dict(value)
    raise bad  # pragma: no cover


def _check_range(value: float, f: dataclasses.Field, bad: ValueError) -> None:
    rule = f.metadata
    lo, hi = _bounds(f)
    if lo is not None and (value < lo or (rule.get("min_open") and value == lo)):
        raise bad
    if hi is not None and (value > hi or (rule.get("max_open") and value == hi)):
        raise bad


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _render(value: Any, depth: int = 0) -> str:
    """A value as TOML-like text for a message: any type, any depth, escaped, not too long."""
    if depth > 3:
        return "..."
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40])
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_int(value):
        return str(value) if abs(value) < 10**20 else f"{value:.3e}"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        items = list(value.items())[:4]
        inner = ", ".join(f"{printable(k)} = {_render(v, depth + 1)}" for k, v in items)
        return "{" + inner + (", ..." if len(value) > 4 else "") + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_render(v, depth + 1) for v in list(value)[:6])
        return "[" + inner + (", ..." if len(value) > 6 else "") + "]"
    if isinstance(value, (dt.date, dt.time)):  # TOML dates, times and datetimes
        return value.isoformat()
    return f"<{type(value).__name__}>"


def _short(value: Any) -> str:
    text = printable(_render(value))
    return text if len(text) <= 48 else text[:45] + "..."


def _depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of arrays and tables, counted without recursion (stops past `limit`)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(item, Mapping):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _find_line(text: str | None, section: str, key: str | None) -> int | None:
    """Line (1-based) of `key` in `[section]` (or of the section header when key is None)."""
    if not text:
        return None
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([A-Za-z0-9_.\-\"]+)\s*\]", stripped)
        if header:
            current = header.group(1).strip('"')
            if key is None and current == section:
                return number
            continue
        if key is not None and current == section and re.match(rf"^\"?{re.escape(key)}\"?\s*=", stripped):
            return number
        if key is not None and current is None and re.match(rf"^{re.escape(section)}\.{re.escape(key)}\s*=", stripped):
            return number
    return None


def locate_key(source: str, text: str | None, section: str, key: str | None) -> str:
    line = _find_line(text, section, key)
    return f"{source}:{line}" if line else source


def _field(section_name: str, key: str, where: str) -> dataclasses.Field:
    """The field of `section.key`, or one line naming the unknown section or key."""
    cls = SECTIONS.get(section_name)
    if cls is None:
        raise ConfigError(
            f"{where}: unknown section [{printable(section_name)}]; "
            f"{_suggest(section_name, list(SECTIONS))}valid sections: {', '.join(SECTIONS)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    f = fields.get(key)
    if f is None:
        raise ConfigError(
            f"{where}: unknown key {printable(section_name)}.{printable(key)}; "
            f"{_suggest(key, list(fields))}valid keys in [{section_name}]: {', '.join(fields)}")
    return f


def config_from_dict(data: Mapping[str, Any], *, source: str = "config", text: str | None = None) -> LabConfig:
    """Check a parsed TOML/JSON mapping and build the config; one ConfigError per problem."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a table of sections ({', '.join(SECTIONS)})")
    sections: dict[str, Any] = {}
    explicit: set[str] = set()
    for section_name, values in data.items():
        if not isinstance(section_name, str) or section_name not in SECTIONS:
            where = locate_key(source, text, str(section_name), None)
            _field(str(section_name), "", where)  # raises: unknown section
        cls = SECTIONS[section_name]
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {section_name} must be a table [{section_name}]")
        kwargs = {}
        for key, value in values.items():
            where = locate_key(source, text, section_name, str(key))
            f = _field(section_name, str(key), where)
            kwargs[key] = _checked(f, f"{section_name}.{key}", value, where)
            explicit.add(f"{section_name}.{key}")
        sections[section_name] = cls(**kwargs)
    return _with_explicit(LabConfig(**sections), frozenset(explicit))


def _checked(f: dataclasses.Field, dotted: str, value: Any, where: str) -> Any:
    """`_check_value` with the one-line message `WHERE: section.key = VALUE: must be ...`."""
    try:
        if _depth(value) > MAX_DEPTH:
            raise ValueError(f"must be {_describe(f)} (this value nests more than {MAX_DEPTH} levels deep)")
        return _check_value(f, value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {dotted} = {_short(value)}: {exc}") from None


def read_config_text(path: str | os.PathLike[str], *, what: str = "config file",
                     limit: int = MAX_CONFIG_BYTES) -> str:
    """A small text file's contents, refusing what is not one (a folder, a FIFO, a device, a
    huge file, bytes that are not UTF-8) with one line. A leading UTF-8 byte-order mark, which
    some editors write, is dropped."""
    path = Path(path)
    source = printable(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{source}: is a folder, expected a TOML file")
        if not stat.S_ISREG(info.st_mode):
            kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else
                    "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                    "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
            raise ConfigError(f"{source}: is {kind}, expected a regular {what}")
        if info.st_size > limit:
            raise ConfigError(f"{source}: {info.st_size:,} bytes is too large for a {what} (at most {limit:,})")
        with path.open("rb") as f:
            raw = f.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(f"{source}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a folder, expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {what} ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise ConfigError(f"{source}: too large for a {what} (more than {limit:,} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start}); expected a TOML file") from None
    return text[1:] if text.startswith("\ufeff") else text


def parse_text(text: str, *, source: str, json_format: bool = False) -> Any:
    """TOML (or JSON) text parsed; syntax errors and absurd nesting are one line."""
    try:
        return json.loads(text) if json_format else tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{source}: arrays or tables nested too deeply (at most {MAX_DEPTH} levels)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{source}: invalid JSON: {exc}") from None


def load_config(path: str | os.PathLike[str] | None = None) -> LabConfig:
    """Read and check a config file; None reads ./lab.toml when present, else the defaults."""
    if path is None:
        if not Path(DEFAULT_CONFIG_FILE).exists():
            return config_from_dict({})
        path = DEFAULT_CONFIG_FILE
    path = Path(path)
    source = printable(path)
    text = read_config_text(path)
    data = parse_text(text, source=source, json_format=path.suffix == ".json")
    return config_from_dict(data, source=source, text=text)


SET_FORM = "section.key=value, e.g. train.lr=0.003 or model.hidden_sizes=[256,128]"


def parse_set_override(text: str) -> tuple[str, object]:
    """`--set section.key=value` as ("section.key", value).

    The value is read as a TOML value (`0.003`, `true`, `[256, 128]`, `"relu"`), else taken
    as a bare string (`relu`); the key must exist. The value itself is checked by
    `apply_overrides`, exactly like the same value in lab.toml.
    """
    label = f"--set {printable(text)!s}"
    dotted, eq, raw = str(text).partition("=")
    dotted, raw = dotted.strip(), raw.strip()
    section, dot, key = dotted.partition(".")
    if not eq or not dot or not section or not key or "." in key:
        raise ConfigError(f"{label}: expected {SET_FORM}")
    _field(section, key, label)
    if not raw:
        raise ConfigError(f"{label}: no value after '='; expected {SET_FORM}")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{label[:60]}...: value too long")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except RecursionError:
        raise ConfigError(f"{label}: value nested too deeply (at most {MAX_DEPTH} levels)") from None
    except tomllib.TOMLDecodeError:
        value = raw
    return dotted, value


def apply_overrides(config: LabConfig, overrides: Mapping[str, Any], *, source: Any = "override") -> LabConfig:
    """Replace `section.key` values (command-line flags, `--set`), checked like the file's values.

    `source` may be a mapping from dotted key to the flag that set it, for messages. The keys
    set become explicit (a dataset recipe does not replace them).
    """
    sections = {name: getattr(config, name) for name in SECTIONS}
    explicit = config.explicit_keys()
    added = set()
    for dotted, value in overrides.items():
        if value is None:
            continue
        name, _, key = str(dotted).partition(".")
        label = source.get(dotted, dotted) if isinstance(source, Mapping) else f"{source} {dotted}"
        f = _field(name, key, printable(label))
        try:
            if _depth(value) > MAX_DEPTH:
                raise ValueError(f"must be {_describe(f)} (this value nests more than {MAX_DEPTH} levels deep)")
            checked = _check_value(f, value)
        except ValueError as exc:
            raise ConfigError(f"{label} {_short(value)}: {exc}") from None
        sections[name] = dataclasses.replace(sections[name], **{key: checked})
        added.add(f"{name}.{key}")
    return _with_explicit(LabConfig(**sections), None if explicit is None else explicit | added)


def check_names(config: LabConfig, *, source: str = "config") -> None:
    """Check the activation name and its hyper-parameters against the registry (imports torch)."""
    from .activations import create_activation  # torch import deferred on purpose

    try:
        create_activation(config.model.activation, **config.model.activation_config)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: model.activation: {exc}") from None


def describe_options() -> list[tuple[str, str, Any, str]]:
    """(dotted key, allowed, default, doc) for every option, for docs and `--help`."""
    rows = []
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{name}.{f.name}", _describe(f), default, f.metadata.get("doc", "")))
    return rows


# --- will it fit? -------------------------------------------------------------------------

#: flattened inputs and classes of each dataset (the model's first and last widths)
DATASET_SHAPES: dict[str, tuple[int, int]] = {"fashion-mnist": (784, 10), "mnist": (784, 10),
                                              "digits": (64, 10), "blobs": (2, 2)}


@dataclass(frozen=True)
class MemoryEstimate:
    """What a run of the config needs on its device, before anything is allocated."""

    parameters: int
    copies: int  # weights, gradients and the optimizer's state, in parameter-sized copies
    activation_bytes: int  # one training batch's saved activations (forward and backward)
    bytes_per_value: int = 4  # float32

    @property
    def total(self) -> int:
        return self.parameters * self.bytes_per_value * self.copies + self.activation_bytes

    def describe(self) -> str:
        states = self.copies - 2
        return (f"{self.parameters:,} parameters x {self.bytes_per_value} bytes x {self.copies} "
                f"(weights, gradients, {states} optimizer state{'s' if states != 1 else ''}) + "
                f"{_gib(self.activation_bytes)} of batch activations = {_gib(self.total)}")


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


def estimate_memory(config: LabConfig, input_size: int | None = None, num_classes: int | None = None) -> MemoryEstimate:
    """Parameters x bytes for weights, gradients and optimizer state, plus one batch's activations."""
    default_in, default_out = DATASET_SHAPES.get(config.data.dataset, (784, 10))
    widths = [input_size or default_in, *config.model.hidden_sizes, num_classes or default_out]
    parameters = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    copies = 2 + (2 if config.train.optimizer == "adam" else 1 if config.train.momentum else 0)
    # per hidden layer: the Linear output, the activation output and its saved backward tensor;
    # the dropout mask when on; gradients of the same size flow back through them
    per_row = sum(config.model.hidden_sizes) * (4 + (1 if config.model.dropout else 0)) + widths[0] + widths[-1] * 3
    return MemoryEstimate(parameters, copies, per_row * config.train.batch_size * 4)


def available_memory(device: Any) -> int | None:
    """Bytes free on `device` (psutil for the CPU, the CUDA driver for a GPU); None if unknown."""
    kind = getattr(device, "type", str(device))
    try:
        if kind == "cpu":
            import psutil

            return int(psutil.virtual_memory().available)
        if kind == "cuda":
            import torch

            return int(torch.cuda.mem_get_info(device)[0])
    except Exception:  # no driver answer: do not guess
        return None
    return None


#: the share of the device's free memory a run's estimate may take (the data, the probes'
#: buffers and the allocator need the rest)
MEMORY_SHARE = 0.8


def check_memory(config: LabConfig, device: Any, input_size: int | None = None,
                 num_classes: int | None = None, *, available: int | None = None) -> MemoryEstimate:
    """Refuse, with the estimate, a model that cannot fit the device's free memory."""
    estimate = estimate_memory(config, input_size, num_classes)
    free = available if available is not None else available_memory(device)
    if free is not None and estimate.total > MEMORY_SHARE * free:
        kind = getattr(device, "type", str(device))
        raise ConfigError(
            f"model.hidden_sizes = {_short(list(config.model.hidden_sizes))}: does not fit in memory: "
            f"{estimate.describe()}, but the {kind} has {_gib(free)} free (a run may take "
            f"{MEMORY_SHARE:.0%} of it); use smaller hidden_sizes or train.batch_size")
    return estimate
