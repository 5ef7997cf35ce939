"""Finding and tabulating run folders: what `actlab runs`, `compare` and `export` read.

A run folder is any folder holding a `config.json`, `events.jsonl`, `summary.json` or
`checkpoints/`; any other folder with sub-folders (a study, a day's folder) is searched
through. Each run is read from its summary.json, or, when that is missing or unreadable,
by folding its events.jsonl with the same code that writes summaries. A folder that cannot
be read (torn, foreign, half-written, not permitted) becomes a record with status
`unreadable: <reason>`; nothing here raises for a bad folder, and nothing here writes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import UserError
from .events import EVENTS_FILE, parse_event_line
from .runs import CHECKPOINT_DIR, CONFIG_FILE, lock_holder
from .study import STUDY_FILE
from .summary import SUMMARY_FILE, SUMMARY_FORMAT, config_defaults, summarize_events

UNREADABLE = "unreadable"
#: the status of a run whose log has no final event and whose folder no live process holds:
#: killed (kill -9, power loss) or crashed; `actlab run --resume` continues it
KILLED = "killed"
RUN_MARKERS = (CONFIG_FILE, EVENTS_FILE, SUMMARY_FILE, CHECKPOINT_DIR)

#: events a summary never needs: skipped by their line's prefix, without parsing the JSON
_SKIPPED_PREFIXES = tuple(f'{{"type":"{name}"'.encode() for name in
                          ("StepStats", "BatchProgress", "CheckpointSaved", "StateChanged"))

#: the keys every record has, in the order `runs` prints and exports them
COLUMNS = ("run_id", "date", "study", "activation", "dataset", "differences", "seed", "status", "epochs",
           "best_val_acc", "test_acc", "peak_dead", "seconds_per_epoch")
#: further keys for --where, --sort, --by and --metric
EXTRA_KEYS = ("path", "max_epochs", "best_epoch", "final_val_acc", "final_dead", "config_hash", "message",
              "activations", "started", "source")
NUMERIC_KEYS = ("seed", "epochs", "max_epochs", "best_val_acc", "best_epoch", "final_val_acc", "test_acc",
                "peak_dead", "final_dead", "seconds_per_epoch", "started")


@dataclass(frozen=True)
class RunRecord:
    """One run folder as listed: its summary (empty when unreadable) and where it came from.

    `source` is "summary" (summary.json), "events" (folded from events.jsonl) or "" (unreadable).
    """

    path: Path
    status: str
    summary: Mapping[str, Any] = field(default_factory=dict)
    study: str | None = None
    source: str = ""

    @property
    def readable(self) -> bool:
        return not self.status.startswith(UNREADABLE)

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.path.name)

    @property
    def date(self) -> str:
        started = self.summary.get("started")
        if not isinstance(started, (int, float)):
            return ""
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(started))

    def value(self, key: str) -> Any:
        """A column (`test_acc`), a summary field, or a dotted config key (`train.lr`, its
        default when the run did not change it). KeyError for a key no record can have."""
        if key == "path":
            return str(self.path)
        if key in ("run_id", "date", "study", "status", "source"):
            return getattr(self, key)
        if key in self.summary:
            return self.summary[key]
        if "." in key:
            changes = self.summary.get("config_changes") or self.summary.get("differences") or {}
            if key in changes:
                return changes[key]
            defaults = config_defaults()
            if key in defaults:
                return defaults[key] if self.readable else None
        if key in COLUMNS or key in EXTRA_KEYS:
            return None
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """Every listed key, JSON-able (differences stay a dict)."""
        return {key: self.value(key) for key in (*COLUMNS, *EXTRA_KEYS) if key != "activations"} | {
            "activations": list(self.summary.get("activations") or []),
            "val_acc_curve": list(self.summary.get("val_acc_curve") or []),
        }


def valid_keys() -> list[str]:
    """The keys --where, --sort and --by accept (besides dotted config keys such as train.lr)."""
    return [*COLUMNS, *EXTRA_KEYS]


def check_key(key: str, option: str) -> None:
    """UserError naming the valid keys when `key` is neither a listed key nor a config key."""
    if key in COLUMNS or key in EXTRA_KEYS or key in config_defaults():
        return
    raise UserError(f"{option} {key!r}: unknown key; use one of {', '.join(valid_keys())} "
                    f"or a config key such as train.lr")


# -- finding run folders ----------------------------------------------------------------------

def is_run_folder(path: Path) -> bool:
    return any((path / marker).exists() for marker in RUN_MARKERS)


def find_runs(roots: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, str | None, str | None]]:
    """(folder, study, unreadable reason or None) for every run-like folder under `roots`.

    A root that is a run folder is itself listed. A sub-folder that holds sub-folders but no
    run files is searched through and names the study of the runs below it (nested studies:
    `outer/inner`; a root holding a study.json names its own runs' study); an empty or
    foreign leaf folder is listed as unreadable. Hidden folders (`.something`) are skipped.
    """
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise UserError(f"{root}: no such folder")
        if not root.is_dir():
            raise UserError(f"{root}: not a folder (give a run folder or a folder of runs)")
        if is_run_folder(root):
            yield root, None, None
            continue
        yield from _walk(root, [root.resolve().name] if (root / STUDY_FILE).is_file() else [])


def _walk(folder: Path, study: list[str]) -> Iterator[tuple[Path, str | None, str | None]]:
    try:
        children = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError as exc:
        yield folder, "/".join(study) or None, f"cannot list the folder ({exc.strerror or exc})"
        return
    for child in children:
        try:
            run = is_run_folder(child)
            entries = [p for p in child.iterdir() if not p.name.startswith(".")] if not run else []
        except OSError as exc:
            yield child, "/".join(study) or None, f"cannot list the folder ({exc.strerror or exc})"
            continue
        if run:
            yield child, "/".join(study) or None, None
        elif any(p.is_dir() for p in entries):
            yield from _walk(child, [*study, child.name])
        elif not entries:
            yield child, "/".join(study) or None, "empty folder"
        else:
            yield child, "/".join(study) or None, f"not a run folder (no {EVENTS_FILE}, {CONFIG_FILE} or {SUMMARY_FILE})"


_LAYER_STATS_PREFIX = b'{"type":"LayerStats"'


def _without_histograms(line: bytes) -> bytes:
    """A LayerStats line with its histograms cut out (half its bytes; a summary never needs them).

    EventLog writes the fields in declaration order, histograms right before kinds; a line
    that does not look like that is returned whole (then it is simply parsed in full).
    """
    start = line.find(b',"histograms":{')
    end = line.rfind(b'},"kinds":{')
    if start < 0 or end < start:
        return line
    return line[:start] + line[end + 1:]


# -- reading one run --------------------------------------------------------------------------

def summary_from_events(path: Path) -> dict[str, Any]:
    """The summary folded from an events file, skipping per-step lines unparsed (fast).

    Raises OSError when the file cannot be read and ValueError when no line is an actlab
    event or no RunStarted survives (a foreign, binary or torn log).
    """
    events = []
    lines = 0
    with open(path, "rb") as f:
        for raw in f:
            lines += 1
            if raw.startswith(_SKIPPED_PREFIXES):
                continue
            if raw.startswith(_LAYER_STATS_PREFIX):
                raw = _without_histograms(raw)
            event = parse_event_line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
    if not events:
        raise ValueError(f"{EVENTS_FILE} holds no actlab events" if lines else f"{EVENTS_FILE} is empty")
    summary = summarize_events(events)
    if not summary.get("dataset"):
        raise ValueError(f"{EVENTS_FILE} has no RunStarted event (torn or foreign log)")
    return summary


def _read_summary_file(path: Path) -> dict[str, Any] | None:
    """summary.json when it is one this reader understands, else None (then events decide)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != SUMMARY_FORMAT or not data.get("run_id"):
        return None
    return data


def read_record(path: str | os.PathLike[str], study: str | None = None) -> RunRecord:
    """One run folder as a record; never raises for a bad folder (its status says why)."""
    path = Path(path)
    summary_file = path / SUMMARY_FILE
    if summary_file.exists():
        data = _read_summary_file(summary_file)
        if data is not None:
            return _record(path, data, study, "summary")
    events_file = path / EVENTS_FILE
    if not events_file.exists():
        reason = f"no {EVENTS_FILE} (the run never started?)" if (path / CONFIG_FILE).exists() \
            else f"no {EVENTS_FILE}"
        if summary_file.exists():
            reason = f"{SUMMARY_FILE} unreadable and no {EVENTS_FILE}"
        return RunRecord(path, f"{UNREADABLE}: {reason}", study=study)
    try:
        data = summary_from_events(events_file)
    except OSError as exc:
        return RunRecord(path, f"{UNREADABLE}: cannot read {EVENTS_FILE} ({exc.strerror or exc})", study=study)
    except ValueError as exc:
        return RunRecord(path, f"{UNREADABLE}: {exc}", study=study)
    return _record(path, data, study, "events")


def _record(path: Path, data: dict[str, Any], study: str | None, source: str) -> RunRecord:
    status = str(data.get("status") or "running")
    if status == "running" and lock_holder(path) is None:
        status = KILLED  # no final event and nobody trains it: the process is gone
    return RunRecord(path, status, data, data.get("study") or study, source)


def list_runs(roots: Iterable[str | os.PathLike[str]]) -> list[RunRecord]:
    """Every run folder under `roots`, read (unreadable ones included, with their reason)."""
    records = []
    for path, study, problem in find_runs(roots):
        records.append(RunRecord(path, f"{UNREADABLE}: {problem}", study=study) if problem
                       else read_record(path, study))
    return records


# -- filtering and sorting --------------------------------------------------------------------

_WHERE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    """One `--where` test: `key=value`, `key!=value`, or a numeric `key>value` (also >=, <, <=)."""

    key: str
    op: str
    value: str

    def __call__(self, record: RunRecord) -> bool:
        actual = record.value(self.key)
        if self.op in ("=", "!="):
            equal = _matches(actual, self.value, self.key)
            return equal if self.op == "=" else not equal
        number = _as_number(actual)
        if number is None:
            return False
        limit = float(self.value)
        return {"<": number < limit, "<=": number <= limit, ">": number > limit, ">=": number >= limit}[self.op]


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _matches(actual: Any, wanted: str, key: str) -> bool:
    if key == "status" and isinstance(actual, str) and ":" in actual:
        return wanted == actual or wanted == actual.split(":", 1)[0]  # `status=unreadable`
    if wanted.lower() in ("none", "null", ""):
        return actual in (None, "")
    number = _as_number(wanted)
    if number is not None and _as_number(actual) is not None:
        return math.isclose(_as_number(actual), number, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(actual, (list, tuple)):
        return wanted == ",".join(map(str, actual))
    if isinstance(actual, bool):
        return wanted.lower() == str(actual).lower()
    return str(actual) == wanted


def parse_where(text: str) -> Condition:
    """`activation=relu` -> Condition; UserError naming the form or the key when malformed."""
    match = _WHERE.match(text)
    if not match:
        raise UserError(f"--where {text!r}: expected KEY=VALUE (also KEY!=VALUE, KEY>N, KEY>=N, KEY<N, KEY<=N)")
    key, op, value = match.groups()
    check_key(key, "--where")
    if op not in ("=", "!=") and _as_number(value) is None:
        raise UserError(f"--where {text!r}: {op} needs a number, got {value!r}")
    return Condition(key, op, value)


def filter_runs(records: Iterable[RunRecord], conditions: Sequence[Condition]) -> list[RunRecord]:
    return [r for r in records if all(c(r) for c in conditions)]


def descending_by_default(key: str) -> bool:
    """Accuracies sort best first; everything else ascending."""
    return key.endswith("_acc")


def sort_runs(records: Iterable[RunRecord], key: str) -> list[RunRecord]:
    """Sorted by `key` (a leading '-' flips the default order); missing values always last."""
    flip = key.startswith("-")
    name = key[1:] if flip else key
    check_key(name, "--sort")
    descending = descending_by_default(name) != flip
    present, missing = [], []
    for record in records:
        (missing if record.value(name) in (None, "") else present).append(record)

    def order(record: RunRecord) -> tuple:
        value = record.value(name)
        number = _as_number(value)
        return (0, number, "") if number is not None else (1, 0.0, str(value))

    return sorted(present, key=order, reverse=descending) + missing


def select_runs(roots: Iterable[str | os.PathLike[str]], where: Sequence[str] = (),
                sort: str | None = None) -> list[RunRecord]:
    """list_runs, then every `--where` condition, then `--sort` (folder order otherwise)."""
    conditions = [parse_where(text) for text in where]
    if sort:
        check_key(sort.lstrip("-"), "--sort")
    records = filter_runs(list_runs(roots), conditions)
    return sort_runs(records, sort) if sort else records


# -- output -----------------------------------------------------------------------------------

def format_differences(differences: Mapping[str, Any] | None) -> str:
    """`train.lr=0.1 train.epochs=5` (short, for a table cell)."""
    if not differences:
        return ""
    return " ".join(f"{key}={_short(value)}" for key, value in differences.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(_short, value))
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def _percent(value: Any) -> str:
    return "" if value is None else f"{100 * float(value):.2f}"


_TABLE: tuple[tuple[str, str, Callable[[RunRecord], str]], ...] = (
    ("run", "run_id", lambda r: r.run_id),
    ("date", "date", lambda r: r.date),
    ("study", "study", lambda r: r.study or ""),
    ("activation", "activation", lambda r: _short(r.value("activation") or "")),
    ("dataset", "dataset", lambda r: str(r.value("dataset") or "")),
    ("config", "differences", lambda r: format_differences(r.value("differences"))),
    ("seed", "seed", lambda r: "" if r.value("seed") is None else str(r.value("seed"))),
    ("status", "status", lambda r: r.status),
    ("epochs", "epochs", lambda r: "" if not r.readable else str(r.value("epochs") or 0)),
    ("best val %", "best_val_acc", lambda r: _percent(r.value("best_val_acc"))),
    ("test %", "test_acc", lambda r: _percent(r.value("test_acc"))),
    ("peak dead %", "peak_dead", lambda r: _percent(r.value("peak_dead"))),
    ("s/epoch", "seconds_per_epoch",
     lambda r: "" if r.value("seconds_per_epoch") is None else f"{r.value('seconds_per_epoch'):.2f}"),
)
_RIGHT = {"seed", "epochs", "best_val_acc", "test_acc", "peak_dead", "seconds_per_epoch"}


def format_runs(records: Sequence[RunRecord]) -> str:
    """The aligned text table `actlab runs` prints (empty columns dropped)."""
    cells = [[show(r) for _, _, show in _TABLE] for r in records]
    keep = [i for i, (title, key, _) in enumerate(_TABLE)
            if key in ("run_id", "status") or any(row[i] for row in cells)]
    header = [_TABLE[i][0] for i in keep]
    rows = [[row[i] for i in keep] for row in cells]
    widths = [max([len(header[j]), *(len(row[j]) for row in rows)]) for j in range(len(keep))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if _TABLE[keep[j]][1] in _RIGHT else v.ljust(w)
                         for j, (v, w) in enumerate(zip(values, widths))).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)]) + "\n"


def runs_to_json(records: Sequence[RunRecord]) -> str:
    return json.dumps([r.to_dict() for r in records], indent=2, default=str) + "\n"


def runs_to_csv(records: Sequence[RunRecord]) -> str:
    """One line per run: the listed keys, differences as `key=value` pairs, full precision."""
    names = [*COLUMNS, *EXTRA_KEYS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = {}
        for key in names:
            value = record.value(key)
            if key == "differences":
                value = format_differences(value)
            elif isinstance(value, (list, tuple)):
                value = ",".join(map(str, value))
            row[key] = "" if value is None else repr(value) if isinstance(value, float) else value
        writer.writerow(row)
    return buffer.getvalue()
