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
import difflib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG_FILE = "lab.toml"


def option(default: Any, doc: str, *, choices: tuple | None = None, min: float | None = None,
           max: float | None = None, min_open: bool = False, max_open: bool = False,
           nonempty: bool = False) -> Any:
    """A config field with its rule; `min_open`/`max_open` make a bound exclusive."""
    meta = dict(doc=doc, choices=choices, min=min, max=max, min_open=min_open,
                max_open=max_open, nonempty=nonempty)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    seed: int = option(42, "seed for weights, data split, shuffling and dropout", min=0)
    device: str = option("auto", "where to train", choices=("auto", "cuda", "mps", "cpu"))
    runs_dir: str = option("runs", "folder that receives one sub-folder per run")
    name: str = option("", "optional label added to the run id")


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
    hidden_sizes: tuple = option((512, 256, 256, 128), "hidden layer widths", min=1, nonempty=True)
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
    epochs: int = option(50, "maximum number of epochs", min=1)
    patience: int = option(7, "early stopping: epochs without a better validation accuracy; "
                               "0 turns it off", min=0)


@dataclass(frozen=True)
class ProbesConfig:
    """Which per-layer probes run and how often (owned by `probes`; see engine/probes/)."""

    enabled: bool = option(True, "run the probes at all")
    dead_exact_every: int = option(1, "exact dead-neuron count, a no-grad pass over the whole training split, "
                                      "every N epochs and at initialisation; 0 turns it off", min=0)
    rates: bool = option(True, "live output rates: activation rate, per-batch death rate, never-active neurons")
    grad_rates: bool = option(True, "the same rates from parameter gradients (all-zero weight row and bias)")
    saturation: bool = option(True, "share of units with |f'(z)| below the threshold, mean and std of z")
    saturation_threshold: float = option(1e-3, "|f'(z)| below this counts as saturated", min=0.0, min_open=True)
    sample_rows: int = option(64, "rows of a sampled batch used for activation rate, saturation and z statistics",
                              min=1)
    sample_every: int = option(64, "sample the first and every N-th training batch of an epoch (1 = every batch)",
                               min=1)
    gradients: bool = option(True, "mean |g|, L2 norm and max of each weight gradient, per step and per epoch")
    gradients_every: int = option(32, "measure the gradients on the first and every N-th step of an epoch "
                                      "(1 = every step)", min=1)
    series_limit: int = option(4096, "per-step values kept between two reads of the series at most", min=1)
    weights: bool = option(True, "update-to-weight ratio per epoch and distance from the initial weights")
    histograms: bool = option(True, "histograms: activation outputs at epoch end, weight gradients at init")
    hist_bins: int = option(64, "bins of every histogram", min=1, max=1000)
    hist_rows: int = option(512, "rows of the epoch-end validation pass (training rows at init) the activation "
                                  "histograms are taken over", min=1)
    act_hist_min: float = option(-4.0, "lowest edge of the activation histograms (values below: first bin)")
    act_hist_max: float = option(12.0, "highest edge of the activation histograms (values above: last bin)")
    grad_hist_min: float = option(-10.0, "lowest edge of the gradient histograms, in log10 |g|")
    grad_hist_max: float = option(0.0, "highest edge of the gradient histograms, in log10 |g|")
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


SECTIONS: dict[str, type] = {f.name: f.type if isinstance(f.type, type) else globals()[f.type]
                             for f in dataclasses.fields(LabConfig)}


# --- checking ---------------------------------------------------------------------------

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               tuple: "a list of integers", dict: "a table"}


def _describe(f: dataclasses.Field) -> str:
    rule = f.metadata
    if rule.get("choices"):
        return "one of " + ", ".join(repr(c) for c in rule["choices"])
    kind = _TYPE_NAMES.get(_base_type(f), "a value")
    bounds = []
    if rule.get("min") is not None:
        bounds.append(("> " if rule["min_open"] else ">= ") + _fmt(rule["min"]))
    if rule.get("max") is not None:
        bounds.append(("< " if rule["max_open"] else "<= ") + _fmt(rule["max"]))
    if _base_type(f) is tuple:
        return "a non-empty list of integers" + (" each " + " and ".join(bounds) if bounds else "")
    return kind + (" " + " and ".join(bounds) if bounds else "")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _base_type(f: dataclasses.Field) -> type:
    t = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str, "bool": bool,
                                                  "tuple": tuple, "dict": dict}[str(f.type)]
    return t


def _check_value(f: dataclasses.Field, value: Any) -> Any:
    """The value converted to the field's type, or a ValueError saying what is allowed."""
    t = _base_type(f)
    rule = f.metadata
    bad = ValueError(f"must be {_describe(f)}")
    if t is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        _check_range(value, rule, bad)
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise bad
        _check_range(value, rule, bad)
        return value
    if t is str:
        if not isinstance(value, str):
            raise bad
        if rule.get("choices") and value not in rule["choices"]:
            close = difflib.get_close_matches(value, rule["choices"], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"must be {_describe(f)}{hint}")
        return value
    if t is tuple:
        if not isinstance(value, (list, tuple)) or (rule.get("nonempty") and not value):
            raise bad
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise bad
            _check_range(item, rule, bad)
        return tuple(value)
    if t is dict:
        if not isinstance(value, Mapping):
            raise bad
        return dict(value)
    raise bad  # pragma: no cover


def _check_range(value: float, rule: Mapping[str, Any], bad: ValueError) -> None:
    lo, hi = rule.get("min"), rule.get("max")
    if lo is not None and (value < lo or (rule.get("min_open") and value == lo)):
        raise bad
    if hi is not None and (value > hi or (rule.get("max_open") and value == hi)):
        raise bad


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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


def config_from_dict(data: Mapping[str, Any], *, source: str = "config", text: str | None = None) -> LabConfig:
    """Check a parsed TOML/JSON mapping and build the config; one ConfigError per problem."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a table of sections ({', '.join(SECTIONS)})")
    sections: dict[str, Any] = {}
    for section_name, values in data.items():
        cls = SECTIONS.get(section_name)
        if cls is None:
            raise ConfigError(
                f"{locate_key(source, text, section_name, None)}: unknown section [{section_name}]; "
                f"{_suggest(section_name, list(SECTIONS))}valid sections: {', '.join(SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {section_name} must be a table [{section_name}]")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            f = fields.get(key)
            if f is None:
                raise ConfigError(
                    f"{locate_key(source, text, section_name, key)}: unknown key {section_name}.{key}; "
                    f"{_suggest(key, list(fields))}valid keys in [{section_name}]: {', '.join(fields)}")
            try:
                kwargs[key] = _check_value(f, value)
            except ValueError as exc:
                raise ConfigError(
                    f"{locate_key(source, text, section_name, key)}: {section_name}.{key} = {_short(value)}: {exc}"
                ) from None
        sections[section_name] = cls(**kwargs)
    return LabConfig(**sections)


def load_config(path: str | os.PathLike[str] | None = None) -> LabConfig:
    """Read and check a config file; None reads ./lab.toml when present, else the defaults."""
    if path is None:
        if not Path(DEFAULT_CONFIG_FILE).exists():
            return config_from_dict({})
        path = DEFAULT_CONFIG_FILE
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a folder, expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start}); expected a TOML file") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{source}: invalid JSON: {exc}") from None
    return config_from_dict(data, source=source, text=text)


def apply_overrides(config: LabConfig, overrides: Mapping[str, Any], *, source: str = "override") -> LabConfig:
    """Replace `section.key` values (command-line flags), checked like the file's values.

    `source` may be a mapping from dotted key to the flag that set it, for messages.
    """
    sections = {name: getattr(config, name) for name in SECTIONS}
    for dotted, value in overrides.items():
        if value is None:
            continue
        name, _, key = dotted.partition(".")
        cls = SECTIONS[name]
        f = {f.name: f for f in dataclasses.fields(cls)}[key]
        label = source.get(dotted, dotted) if isinstance(source, Mapping) else f"{source} {dotted}"
        try:
            checked = _check_value(f, value)
        except ValueError as exc:
            raise ConfigError(f"{label} {_short(value)}: {exc}") from None
        sections[name] = dataclasses.replace(sections[name], **{key: checked})
    return LabConfig(**sections)


def check_names(config: LabConfig, *, source: str = "config") -> None:
    """Check the activation name and its hyper-parameters against the registry (imports torch)."""
    from .activations import create_activation  # torch import deferred on purpose

    try:
        create_activation(config.model.activation, **config.model.activation_config)
    except ValueError as exc:
        raise ConfigError(f"{source}: model.activation: {exc}") from None


def describe_options() -> list[tuple[str, str, Any, str]]:
    """(dotted key, allowed, default, doc) for every option, for docs and `--help`."""
    rows = []
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{name}.{f.name}", _describe(f), default, f.metadata.get("doc", "")))
    return rows
