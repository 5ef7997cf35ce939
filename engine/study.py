"""Studies: many runs planned together (activations x seeds x any config key), and their manifest.

A study is a `StudySpec`: a base config plus axes (activations, seeds, `--grid` keys). The
spec expands into `Trial`s, each an ordinary run folder under `runs/<study-id>/<trial-id>/`.
`study.json` in the study folder records the spec, each trial's config hash, status, run
folder and headline numbers; it is rewritten atomically after every change, so a killed
driver leaves a manifest that says exactly which trials are done. The study id is derived
from the spec, so re-running the same command finds the same folder and resumes it.

This module is torch-free; executors (engine/executors/) run the trials.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .config import SECTIONS, LabConfig, apply_overrides, apply_recipe, config_from_dict, locate_key
from .errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

STUDY_FILE = "study.json"
LOCK_FILE = ".study.lock"
FORMAT_VERSION = 1

#: a trial with one of these statuses is never run again (a divergence is a result too)
FINAL_STATUSES = ("finished", "early-stopped", "diverged")
#: ended in this run of the study; a failed trial (bad data folder, crash) is tried again when the
#: study is run again, since its cause may have been fixed
DONE_STATUSES = (*FINAL_STATUSES, "failed")
PENDING, RUNNING, INTERRUPTED = "pending", "running", "interrupted"

#: the lab's ten activations, in the app's key order (see engine/activations.py)
LAB_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leakyrelu", "prelu", "elu", "gelu", "swish", "mish", "tanhexp")


class StudyError(UserError):
    """A bad study flag, [study] key or study folder (one line naming it and what is allowed)."""


# --- the spec ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudySpec:
    """What to run: the base config and the axes it is crossed over.

    `activations` and `seeds` are axes of their own (empty: the base config's value);
    `axes` are `--grid` keys with their values; `init_only` trials stop at initialisation
    (epochs 0: the probes' init statistics, no training step).
    """

    base: Mapping[str, Any]  # the keys the user set ({"train": {"lr": 0.003}}; see `settings_of`)
    activations: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    init_only: bool = False
    preset: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"base": json.loads(json.dumps(self.base)), "activations": list(self.activations),
                "seeds": list(self.seeds), "axes": [[k, list(v)] for k, v in self.axes],
                "init_only": self.init_only, "preset": self.preset}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StudySpec":
        return cls(base=data["base"], activations=tuple(data.get("activations", ())),
                   seeds=tuple(int(s) for s in data.get("seeds", ())),
                   axes=tuple((k, tuple(v)) for k, v in data.get("axes", ())),
                   init_only=bool(data.get("init_only", False)), preset=str(data.get("preset", "")))

    def base_config(self) -> LabConfig:
        return config_from_dict(self.base, source="study spec")

    def digest(self) -> str:
        """A hash of what the study computes (the runs folder and labels left out)."""
        data = self.to_dict()
        data["base"] = _without_placement(data["base"])
        return _hash(data)


@dataclass(frozen=True)
class Trial:
    """One run of a study: its overrides over the base config, and where it lives."""

    index: int
    trial_id: str  # also the run folder's name inside the study folder
    overrides: Mapping[str, Any]
    config: LabConfig  # in full: the dataset's recipe filled in where the user set nothing
    config_hash: str
    group: str  # the summary's group: every axis but the seed, e.g. "gelu" or "gelu lr=0.003"
    settings: Mapping[str, Any] = field(default_factory=dict)  # what was set; a worker rebuilds the config from it


def settings_of(config: LabConfig) -> dict[str, Any]:
    """The keys of `config` the user set (file, flags, `--set`, preset, axes) as nested sections.

    A study stores these rather than the full config so that each trial gets its dataset's
    recipe (batch size, epochs, patience) for the keys left unset, exactly as `actlab run` does.
    A config built in code (no record of what was set) counts as everything set.
    """
    data = config.to_dict()
    explicit = config.explicit_keys()
    if explicit is None:
        return data
    out: dict[str, dict[str, Any]] = {}
    for dotted in sorted(explicit):
        section, _, key = dotted.partition(".")
        if section in data and key in data[section]:
            out.setdefault(section, {})[key] = data[section][key]
    return out


def config_hash(config: LabConfig) -> str:
    """What a run computes, hashed: the config minus where it is written and its label."""
    return _hash(_without_placement(config.to_dict()))


def _without_placement(data: Mapping[str, Any]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    for key in ("runs_dir", "name"):
        data.get("run", {}).pop(key, None)
    data.pop("ui", None)
    return data


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def expand(spec: StudySpec, study_dir: Path) -> list[Trial]:
    """Every trial of the spec, seeds outermost (a partial study has every group early)."""
    base = spec.base_config()
    activations = spec.activations or (base.model.activation,)
    seeds = spec.seeds or (base.run.seed,)
    combos = list(itertools.product(*[[(key, v) for v in values] for key, values in spec.axes]))
    trials: list[Trial] = []
    for seed in seeds:
        for activation in activations:
            for combo in combos:
                index = len(trials)
                overrides: dict[str, Any] = {"model.activation": activation, "run.seed": seed}
                overrides.update(dict(combo))
                act, trial_seed = overrides["model.activation"], overrides["run.seed"]
                labels = [_label(key, value) for key, value in combo if key not in ("model.activation", "run.seed")]
                trial_id = "-".join([f"t{index:03d}", _safe(str(act)), f"s{trial_seed}", *labels])
                set_config = apply_overrides(base, {**overrides, "run.runs_dir": str(study_dir),
                                                    "run.name": trial_id}, source="--grid")
                config = apply_recipe(set_config)
                group = " ".join([str(act), *(f"{key.split('.')[-1]}={_short_value(value)}"
                                              for key, value in combo if key not in ("model.activation", "run.seed"))])
                trials.append(Trial(index, trial_id, overrides, config, config_hash(config), group,
                                    settings_of(set_config)))
    return trials


def _short_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        if value and all(v == value[0] for v in value):
            return f"[{value[0]}]*{len(value)}"
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def _label(key: str, value: Any) -> str:
    name = key.split(".")[-1].replace("_", "")
    text = _short_value(value).replace("[", "").replace("]", "").replace(",", "-").replace("*", "x")
    label = _safe(f"{name}{text}")
    return label if len(label) <= 32 else f"{name}{_hash(value)[:8]}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)


# --- parsing flags and [study] tables ---------------------------------------------------------


def check_key(dotted: str, where: str) -> None:
    """`section.key` must name a config key; the error lists what is allowed."""
    section, _, key = dotted.partition(".")
    if section not in SECTIONS or not key:
        raise StudyError(f"{where}: {dotted!r} is not a section.key; sections: {', '.join(SECTIONS)}")
    names = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if key not in names:
        raise StudyError(f"{where}: unknown key {dotted}; valid keys in [{section}]: {', '.join(names)}")


_REPEAT = re.compile(r"^\s*(\[.*\])\s*\*\s*(\d+)\s*$")


def parse_value(text: str, where: str) -> Any:
    """One value as TOML (`0.01`, `true`, `"adam"`, `[512, 256]`); `[256]*10` repeats a list;
    a bare word is a string (`relu`)."""
    text = text.strip()
    repeat = _REPEAT.match(text)
    if repeat:
        inner = parse_value(repeat.group(1), where)
        if not isinstance(inner, list):
            raise StudyError(f"{where}: {text!r}: only a [list] can be repeated with *N")
        return inner * int(repeat.group(2))
    if not text:
        raise StudyError(f"{where}: empty value; give a TOML value such as 0.01, true, \"adam\" or [512, 256]")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.+-]*", text):
            return text
        raise StudyError(f"{where}: {text!r} is not a TOML value (e.g. 0.01, true, \"adam\", [512, 256], "
                         f"[256]*10)") from None


def split_values(text: str) -> list[str]:
    """`v1,v2,...`, or `v1;v2;...` when values are lists (commas inside [] never split)."""
    if ";" in text:
        return text.split(";")
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_grid_axis(text: str) -> tuple[str, tuple[Any, ...]]:
    """`section.key=v1,v2,...` -> (key, values); each value checked later against the config."""
    where = f"--grid {text}"
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not values.strip():
        raise StudyError(f"{where}: expected section.key=v1,v2,... (e.g. train.lr=0.01,0.003)")
    check_key(key, where)
    parsed = tuple(parse_value(v, where) for v in split_values(values))
    if len(set(map(_canonical_json, parsed))) != len(parsed):
        raise StudyError(f"{where}: a value is repeated; each value of an axis must be different")
    return key, parsed


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def parse_seeds(text: str | int | Sequence[int], where: str = "--seeds") -> tuple[int, ...]:
    """`5` -> seeds 0..4; `0,1,2` -> those seeds (integers >= 0, no repeats)."""
    if isinstance(text, bool):
        raise StudyError(f"{where}: expected a count (5) or a list of seeds (0,1,2)")
    if isinstance(text, int):
        items: list[Any] = [text]
        count = True
    elif isinstance(text, (list, tuple)):
        items, count = list(text), False
    else:
        items = [s.strip() for s in str(text).split(",")]
        count = len(items) == 1
    seeds: list[int] = []
    for item in items:
        try:
            value = int(item) if not isinstance(item, bool) else None
        except ValueError:
            value = None
        if value is None or value < 0 or (isinstance(item, float)):
            raise StudyError(f"{where}: {item!r}: seeds are integers >= 0 (a count such as 5, or a list 0,1,2)")
        seeds.append(value)
    if count:
        if seeds[0] < 1:
            raise StudyError(f"{where}: a seed count must be at least 1 (or list seeds: 0,1,2)")
        return tuple(range(seeds[0]))
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{where}: a seed is repeated")
    return tuple(seeds)


def parse_activations(text: str | Sequence[str], where: str = "--activations") -> tuple[str, ...]:
    """`relu,gelu`, `lab` (the lab's ten) or `all` (every registered one), names checked (imports torch)."""
    from .activations import activation_names, canonical_name

    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    if items == ["lab"]:
        return LAB_ACTIVATIONS
    if items == ["all"]:
        return tuple(activation_names())
    names = []
    for item in items:
        try:
            names.append(canonical_name(item))
        except ValueError as exc:
            raise StudyError(f"{where}: {exc} (or 'lab', 'all')") from None
    if len(set(names)) != len(names) or not names:
        raise StudyError(f"{where}: give each activation once (e.g. relu,gelu,mish), or 'lab' or 'all'")
    return tuple(names)


STUDY_KEYS = ("preset", "activations", "seeds", "grid", "name", "epochs")


def read_study_table(table: Mapping[str, Any], source: str, text: str | None) -> dict[str, Any]:
    """A `[study]` table's keys as command-line-like values: activations, seeds, grid, preset, name.

    grid is a table of `"section.key" = [values]` (or "v1,v2" strings as on the command line).
    """
    out: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{locate_key(source, text, 'study', key)}: study.{key}"
        if key not in STUDY_KEYS:
            raise StudyError(f"{where}: unknown key; valid keys in [study]: {', '.join(STUDY_KEYS)}")
        if key == "activations":
            if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
                raise StudyError(f"{where}: must be a list of names, or \"lab\" or \"all\"")
            out[key] = parse_activations(value, where)
        elif key == "seeds":
            if not (isinstance(value, (int, str)) or isinstance(value, list)):
                raise StudyError(f"{where}: must be a count (5) or a list of seeds ([0, 1, 2])")
            out[key] = parse_seeds(value, where)
        elif key == "grid":
            if not isinstance(value, Mapping):
                raise StudyError(f'{where}: must be a table such as {{"train.lr" = [0.01, 0.003]}}')
            axes = []
            for dotted, values in value.items():
                check_key(dotted, f"{where}.{dotted}")
                if isinstance(values, str):
                    values = [parse_value(v, f"{where}.{dotted}") for v in split_values(values)]
                if not isinstance(values, list) or not values:
                    raise StudyError(f"{where}.{dotted}: must be a non-empty list of values")
                axes.append((dotted, tuple(values)))
            out[key] = tuple(axes)
        elif key in ("preset", "name"):
            if not isinstance(value, str):
                raise StudyError(f"{where}: must be a string")
            out[key] = value
        elif key == "epochs":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise StudyError(f"{where}: must be an integer >= 0 (0: at initialisation only)")
            out[key] = value
    return out


def load_study_file(path: str | os.PathLike[str]) -> tuple[LabConfig, dict[str, Any]]:
    """A config file that may hold a `[study]` table: (the config without it, the table's values)."""
    from .config import parse_text, read_config_text

    path = Path(path)
    text = read_config_text(path)  # a folder, a FIFO, a huge or non-UTF-8 file: one line
    data = parse_text(text, source=str(path), json_format=path.suffix == ".json")
    if not isinstance(data, dict):
        return config_from_dict(data, source=str(path), text=text), {}
    table = data.pop("study", {})
    if not isinstance(table, Mapping):
        raise StudyError(f"{locate_key(str(path), text, 'study', None)}: study must be a table [study]")
    return config_from_dict(data, source=str(path), text=text), read_study_table(table, str(path), text)


# --- presets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """A published experiment as a study: its config, axes, source and what it should show."""

    name: str
    title: str
    source: str
    shows: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    activations: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    init_only: bool = False


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "seeds-table",
        "the lab's ten activations x 5 seeds, the reference recipe on FashionMNIST",
        "the activation tutorials (A: normalised 0.5/0.5, B: by the data's mean/std), single seed each: "
        "test accuracy 10.00 (sigmoid) to 88.79 (mish)",
        "mean and 95% CI of test accuracy per activation: whether the tutorials' single-seed differences "
        "of a few tenths survive several seeds, and how much sigmoid depends on the seed (14.5% with seed 42, "
        "83.6% with seed 1 here)",
        {"data.dataset": "fashion-mnist", "data.normalization": "dataset", "model.hidden_sizes": [512, 256, 256, 128],
         "train.optimizer": "sgd", "train.lr": 0.01, "train.momentum": 0.9, "train.batch_size": 256,
         "train.epochs": 50, "train.patience": 7},
        activations=LAB_ACTIVATIONS, seeds=tuple(range(5))),
    Preset(
        "deep-init",
        "the 10-hidden-layer net at initialisation across activations (no training)",
        "the activation tutorials' deep variant [256]*5 + [128]*5: ReLU dead neurons per layer at init "
        "[0, 0, 7, 27, 89, 60, 58, 61, 72, 56] (A) and [0, 0, 1, 14, 72, 57, 58, 61, 71, 56] (B), swish all 0; "
        "sigmoid's first-layer gradients ~1e-5 against ~0.1 at the output",
        "dead units per layer (exact, over the whole training split) and mean |gradient| per linear layer "
        "at initialisation: deep ReLU layers half dead, smooth activations none, sigmoid's gradients vanishing "
        "towards the input",
        {"data.dataset": "fashion-mnist", "model.hidden_sizes": [256] * 5 + [128] * 5, "probes.enabled": True,
         "probes.dead_exact_every": 1, "probes.gradients": True},
        activations=LAB_ACTIVATIONS, seeds=(42,), init_only=True),
    Preset(
        "tanhexp-lr",
        "TanhExp against Swish over learning rates",
        "TanhExp (Liu & Di 2020, arXiv 2003.09855) and the article in the seeds: TanhExp needs a smaller "
        "learning rate than Swish to be stable",
        "test accuracy per (activation, lr): if the claim holds, TanhExp's accuracy falls off (or it diverges) "
        "at rates where Swish still trains, and peaks at a smaller rate",
        {"data.dataset": "fashion-mnist", "train.epochs": 10, "train.patience": 0},
        activations=("tanhexp", "swish"), seeds=(0, 1, 2),
        axes=(("train.lr", (0.1, 0.05, 0.02, 0.01, 0.003)),)),
    Preset(
        "depth",
        "accuracy against depth for ReLU, Swish and Mish (fully connected, scaled to a laptop)",
        "Mish paper (arXiv 1908.08681): MNIST, layers of 500 units with batch norm and dropout 0.25, SGD, "
        "batch 128; up to ~15 layers the three match, deeper ReLU and Swish drop sharply while Mish holds. "
        "Scaled here: 128 units, dropout 0.25, no batch norm (actlab's MLP has none), 8 epochs, 3 seeds",
        "test accuracy per (activation, depth): equal at small depth; with depth the gap the paper reports "
        "(without batch norm, expect every activation to degrade earlier)",
        {"data.dataset": "mnist", "model.dropout": 0.25, "train.batch_size": 128, "train.lr": 0.01,
         "train.epochs": 8, "train.patience": 0},
        activations=("relu", "swish", "mish"), seeds=(0, 1, 2),
        axes=(("model.hidden_sizes", tuple([128] * d for d in (2, 6, 10, 15, 20, 25))),)),
)}


def preset(name: str, where: str = "--preset") -> Preset:
    if name not in PRESETS:
        raise StudyError(f"{where}: unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def check_axes_values(base: LabConfig, axes: Iterable[tuple[str, Sequence[Any]]],
                      labels: Mapping[str, str] | None = None) -> None:
    """Every axis value checked like a lab.toml value; the message names the axis where it was given
    (`labels`: key -> e.g. "study.toml: study.grid.train.lr ="; default "--grid KEY=")."""
    for key, values in axes:
        label = (labels or {}).get(key, f"--grid {key}=")
        for value in values:
            apply_overrides(base, {key: value}, source={key: label})


def study_id_for(spec: StudySpec, name: str = "") -> str:
    """`<name>` when given, else `<preset or 'study'>-<hash of the spec>` (the same command finds the same id)."""
    if name:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise StudyError(f"--name {name!r}: letters, digits, '.', '_' and '-' only")
        return name
    return f"{spec.preset or 'study'}-{spec.digest()[:8]}"


# --- the manifest -----------------------------------------------------------------------------


@dataclass
class TrialRecord:
    """One trial's line in study.json."""

    trial_id: str
    index: int
    group: str
    overrides: dict[str, Any]
    config_hash: str
    run_dir: str  # relative to the study folder
    status: str = PENDING
    best_val_acc: float | None = None
    test_acc: float | None = None
    epochs: int = 0
    seconds: float = 0.0
    message: str = ""
    attempts: int = 0  # times a worker started it (a resume after an interruption counts again)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES


@dataclass
class Manifest:
    """study.json: the spec and every trial's record, written atomically."""

    study_id: str
    spec: StudySpec
    trials: list[TrialRecord]
    created: float = field(default_factory=time.time)
    command: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "study_id": self.study_id, "created": self.created,
                "command": self.command, "spec": self.spec.to_dict(),
                "trials": [dataclasses.asdict(t) for t in self.trials]}

    def record(self, trial_id: str) -> TrialRecord:
        for t in self.trials:
            if t.trial_id == trial_id:
                return t
        raise KeyError(trial_id)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out


def new_manifest(study_id: str, spec: StudySpec, trials: Sequence[Trial], command: Sequence[str] = ()) -> Manifest:
    records = [TrialRecord(t.trial_id, t.index, t.group, dict(t.overrides), t.config_hash, t.trial_id)
               for t in trials]
    return Manifest(study_id, spec, records, command=list(command))


def write_manifest(study_dir: Path, manifest: Manifest) -> None:
    """study.json via temp file, fsync and rename: a kill leaves the old or the new one, never half."""
    path = Path(study_dir) / STUDY_FILE
    tmp = path.with_name(f".{STUDY_FILE}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest.to_dict(), f, indent=1, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_manifest(study_dir: str | os.PathLike[str]) -> Manifest:
    path = Path(study_dir) / STUDY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT_VERSION:
            raise StudyError(f"{path}: study format {data.get('format')!r}; this actlab reads {FORMAT_VERSION}")
        names = {f.name for f in dataclasses.fields(TrialRecord)}
        trials = [TrialRecord(**{k: v for k, v in t.items() if k in names}) for t in data["trials"]]
        return Manifest(data["study_id"], StudySpec.from_dict(data["spec"]), trials,
                        created=float(data.get("created", 0.0)), command=list(data.get("command", [])))
    except FileNotFoundError:
        raise StudyError(f"{study_dir}: not a study folder (no {STUDY_FILE})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"{path}: unreadable study manifest ({exc})") from None


def reconcile(manifest: Manifest, trials: Sequence[Trial]) -> None:
    """A manifest on disk must describe the same trials as the spec (same ids, same config hashes)."""
    have = {t.trial_id: t.config_hash for t in manifest.trials}
    want = {t.trial_id: t.config_hash for t in trials}
    if have != want:
        raise StudyError(f"study {manifest.study_id}: the folder holds a different study (its trials or configs "
                         f"differ); use another --name, or --resume runs/{manifest.study_id} to continue it as it was")


def to_resume(manifest: Manifest) -> list[TrialRecord]:
    """Trials still to run, in order: pending, interrupted, running when a driver died, or failed.

    Their records go back to pending (interrupted ones keep their numbers), so a display counts
    only final trials as done.
    """
    todo = [t for t in manifest.trials if t.status not in FINAL_STATUSES]
    for t in todo:
        if t.status in (RUNNING, "failed"):
            t.status = INTERRUPTED if t.status == RUNNING else PENDING
    return todo


# --- one driver per study ---------------------------------------------------------------------


class StudyLock:
    """An flock on `<study>/.study.lock`: exclusive while a driver checks the folder, then shared
    by the driver and its workers, so a second driver (or a new one started while the killed
    driver's workers are still writing their interrupt checkpoints) waits or stops: no trial
    ever runs twice at once. POSIX only; elsewhere a no-op."""

    def __init__(self, study_dir: Path) -> None:
        self.path = Path(study_dir) / LOCK_FILE
        self._file = None

    def acquire_driver(self, wait: float = 30.0, note=lambda text: None) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        self._file = open(self.path, "a+")
        deadline, told = time.monotonic() + wait, False
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.release()
                    raise StudyError(f"{self.path.parent}: another study driver (or its workers) is running this "
                                     f"study; wait for it to end or stop it first") from None
                if not told:
                    note("waiting for another driver of this study (or the workers of a killed one) to stop...")
                    told = True
                time.sleep(0.2)
        fcntl.flock(self._file, fcntl.LOCK_SH)  # workers join with shared locks

    def acquire_worker(self) -> None:
        """Held by a worker process for its whole life (released by the OS when it dies)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover
            return
        self._file = open(self.path, "a+")
        fcntl.flock(self._file, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- bookkeeping while a study runs -----------------------------------------------------------


class StudyBook:
    """The driver's listener: keeps study.json current and forwards to a display listener.

    Records change on every start and end of a trial and study.json is rewritten each time
    (atomically), so a driver killed at any moment leaves a manifest that says which trials
    are done; a trial marked running when its driver died is resumed next time.
    """

    def __init__(self, study_dir: Path, manifest: Manifest, display=None) -> None:
        self.study_dir = Path(study_dir)
        self.manifest = manifest
        self.display = display

    def save(self) -> None:
        write_manifest(self.study_dir, self.manifest)

    def trial_started(self, task, worker: str) -> None:
        record = self.manifest.record(task.trial_id)
        record.status, record.attempts = RUNNING, record.attempts + 1
        self.save()
        if self.display is not None:
            self.display.trial_started(task, worker)

    def trial_progress(self, progress) -> None:
        if self.display is not None:
            self.display.trial_progress(progress)

    def trial_finished(self, outcome) -> None:
        record = self.manifest.record(outcome.trial_id)
        if record.done and outcome.status == INTERRUPTED:
            return  # a late report of a trial already recorded
        record.status, record.message = outcome.status, outcome.message
        if outcome.status != INTERRUPTED or outcome.epochs:
            record.best_val_acc, record.test_acc = outcome.best_val_acc, outcome.test_acc
            record.epochs = outcome.epochs
            record.seconds = round(record.seconds + outcome.seconds, 3) if outcome.message != "already done" \
                else round(outcome.seconds, 3)
        self.save()
        if self.display is not None:
            self.display.trial_finished(outcome)
