"""Checkpoints: a plain dict written atomically and read back without running any pickle code.

A file on disk is always either the previous checkpoint or the new one: we write a temp
file beside it, flush and fsync it, then rename it over the old one (rename is atomic on
POSIX) and fsync the folder. Loading uses `torch.load(weights_only=True)`, which refuses
pickled code, and every way a file can be wrong (missing, empty, truncated, foreign, newer
format, shapes that do not fit) becomes one `CheckpointError` line.
"""

from __future__ import annotations

import errno
import math
import os
import pickle
import re
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from .config import INT_LIMIT
from .errors import CheckpointError, UserError, printable
from .model import MLP, MLPConfig

FORMAT = "actlab-checkpoint"
FORMAT_VERSION = 1

#: keys every checkpoint has (besides format and version)
REQUIRED_KEYS = ("model_config", "model_state", "epoch", "step")


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any],
                    also: tuple[str | os.PathLike[str], ...] = ()) -> Path:
    """Write `payload` (plus format tags) atomically to `path`; returns the path.

    `also`: more names for the same bytes (best.pt beside last.pt), each a hard link to the
    written file (a copy where the file system has no hard links), renamed into place before
    `path` itself, so a kill between the renames leaves the old `path`. The bytes are
    serialised and fsync'd once.

    On failure (full disk, unwritable folder) the temp files are removed, any previous file at
    `path` (and at each of `also`) is left as it was, and a CheckpointError says why.
    """
    path = Path(path)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    extra = [(Path(other), Path(other).with_name(f".{Path(other).name}.tmp-{os.getpid()}")) for other in also]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            _save_to(data, f)
            f.flush()
            os.fsync(f.fileno())
        for other, other_tmp in extra:
            _remove_quietly(other_tmp)
            try:
                os.link(tmp, other_tmp)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
                _copy_synced(tmp, other_tmp)  # no hard links here (or across folders): the same bytes again
            os.replace(other_tmp, other)
        os.replace(tmp, path)
        for folder in dict.fromkeys([path.parent, *(other.parent for other, _ in extra)]):
            _fsync_dir(folder)
    except OSError as exc:
        for leftover in (tmp, *(other_tmp for _, other_tmp in extra)):
            _remove_quietly(leftover)
        reason = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}") from None
    except BaseException:  # e.g. SystemExit from a second Ctrl-C mid-write: no temp file left behind
        for leftover in (tmp, *(other_tmp for _, other_tmp in extra)):
            _remove_quietly(leftover)
        raise
    return path


class _RecordingFile:
    """A file that remembers the OSError of a failed write: PyTorch's zip writer turns it
    into "unexpected pos N vs M", which says nothing about the full disk behind it."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self._f.flush()


def _save_to(data: dict[str, Any], f: Any) -> None:
    """torch.save into an open file; a failed write raises its own OSError (ENOSPC)."""
    recording = _RecordingFile(f)
    try:
        torch.save(data, recording)
    except RuntimeError:
        if recording.error is not None:
            raise recording.error from None
        raise


def _copy_synced(src: Path, dst: Path) -> None:
    with open(src, "rb") as f_in, open(dst, "wb") as f_out:
        while chunk := f_in.read(1 << 20):
            f_out.write(chunk)
        f_out.flush()
        os.fsync(f_out.fileno())


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files left in `folder` by writers that were killed mid-write (kill -9).

    A temp file is `.<name>.tmp-<pid>`; one whose process is still alive is kept (another
    writer may be using it). Returns the files removed.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp-*"):
        pid = tmp.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        _remove_quietly(tmp)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


# --- reading: one guard that checks everything before anything uses the file ----------------
#
# Order matters: the file's kind and the zip's member sizes are checked before torch.load
# reads a byte of it; the pickled metadata is loaded with the tensors memory-mapped (no
# tensor data read yet); the metadata's shape and size, the model config and the shape and
# dtype of every tensor (model and optimizer state) are checked against the model config
# before any tensor is copied, allocated or handed to PyTorch's optimizer (whose fused
# kernels trust the shapes they are given).

#: a real checkpoint's pickled metadata (data.pkl) is a few KB
MAX_METADATA_BYTES = 16 << 20
#: objects in the metadata, counted with repeats (a shared list counts each time it is reached)
MAX_METADATA_NODES = 500_000
#: nesting depth of the metadata (a real one nests 5 deep)
MAX_METADATA_DEPTH = 32
#: zip members at most (a real one has two per tensor plus a few)
MAX_MEMBERS = 20_000
#: a legacy (non-zip) PyTorch file cannot be memory-mapped: at most this size
MAX_LEGACY_BYTES = 64 << 20
#: beyond the tensors a model needs, a checkpoint holds this much at most (RNG states, metadata)
SLACK_BYTES = 64 << 20
#: epoch counters beyond the config's largest `train.epochs` are not a real run's
MAX_EPOCH = 10**6
MAX_STEP = 2**53
#: tensor dtypes a checkpoint may hold: real floating point (weights, optimizer state), bytes
#: (RNG states) and int64 (counters); never complex, quantized or bool
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_ALLOWED_DTYPES = (*_FLOAT_DTYPES, torch.uint8, torch.int64)
#: optimizer state per parameter: (key, shape rule) - "param" = the parameter's own shape
_OPTIMIZER_STATE = {"momentum_buffer": "param", "exp_avg": "param", "exp_avg_sq": "param",
                    "max_exp_avg_sq": "param", "step": "scalar"}


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu", *,
                    run_config: Any = None) -> dict[str, Any]:
    """The checkpoint dict, fully checked, or one CheckpointError line.

    With `run_config` (the run folder's config.json, a LabConfig) the checkpoint must also
    belong to that run: the same hidden widths, dropout, dataset shape and optimizer.
    """
    path = Path(path)
    size = _check_file(path)
    kind = _sniff(path)
    if kind == "zip":
        _check_zip(path, size)
    elif size > MAX_LEGACY_BYTES:
        raise CheckpointError(f"{path}: a legacy PyTorch file of {size:,} bytes; actlab checkpoints are zip "
                              f"files and a legacy one is read only up to {MAX_LEGACY_BYTES:,} bytes")
    data = _load(path, kind)
    check_checkpoint(data, path, file_size=size, run_config=run_config)
    return _owned(data, map_location)


def _check_file(path: Path) -> int:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (.pt)")
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path}: not a regular file (a FIFO, socket or device), expected a checkpoint file")
    if info.st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    return info.st_size


def _sniff(path: Path) -> str:
    """"zip" (PyTorch's format) or "pickle" (its legacy one); anything else is refused unread."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    looks = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else f"bytes {head!r}"
    raise CheckpointError(f"{path}: not a PyTorch checkpoint file (it starts with {looks})")


def _check_zip(path: Path, size: int) -> None:
    """Member sizes before anything is extracted: PyTorch stores members uncompressed, so a
    compressed member (a decompression bomb) or sizes beyond the file's are refused."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CheckpointError(f"{path}: truncated (the file ends before its zip directory: cut short)") from None
    if len(members) > MAX_MEMBERS:
        raise CheckpointError(f"{path}: {len(members):,} zip members, more than a checkpoint has "
                              f"(at most {MAX_MEMBERS:,})")
    total = 0
    for member in members:
        name = printable(member.filename)[:80]
        if member.compress_type != zipfile.ZIP_STORED or member.file_size != member.compress_size:
            raise CheckpointError(f"{path}: zip member {name} is compressed ({member.file_size:,} bytes unpacked "
                                  f"from {member.compress_size:,}); PyTorch never compresses, so the file was not "
                                  "written by it (a decompression bomb?) and was not read")
        if member.filename.endswith("data.pkl") and member.file_size > MAX_METADATA_BYTES:
            raise CheckpointError(f"{path}: {member.file_size:,} bytes of metadata ({name}), more than a checkpoint "
                                  f"has (at most {MAX_METADATA_BYTES:,}); not read")
        total += member.file_size
    if total > size:
        raise CheckpointError(f"{path}: its zip members claim {total:,} bytes, more than the file's {size:,}")


def _load(path: Path, kind: str) -> Any:
    """torch.load with weights_only (no pickle code runs) and, for zip files, memory-mapped
    tensors (nothing is read into memory before the checks); PyTorch's warnings stay quiet."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "zip")
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found or "GLOBAL" in text:
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path}: refused: the file holds Python code or objects{what}, not just tensors, and was not "
                f"loaded (not an actlab checkpoint, or tampered with)") from None
        detail = next((line.strip() for line in text.splitlines() if "Unsupported" in line), "")
        raise CheckpointError(f"{path}: corrupt checkpoint (bad pickle data{': ' + detail[:100] if detail else ''})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: metadata nested too deeply (at most {MAX_METADATA_DEPTH} levels)") from None
    except MemoryError:
        raise CheckpointError(f"{path}: metadata too large to read") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, IndexError,
            KeyError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        first = _first_line(exc)
        if kind == "zip":
            raise CheckpointError(f"{path}: a zip archive, but not a PyTorch checkpoint ({first})") from None
        if isinstance(exc, EOFError) or "central directory" in first:
            raise CheckpointError(f"{path}: truncated or not a PyTorch file") from None
        raise CheckpointError(f"{path}: unreadable checkpoint ({first})") from None


def _first_line(exc: BaseException) -> str:
    """The first line of a library's (often multi-line) message, cut to 120 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return printable(lines[0])[:120] if lines else type(exc).__name__


class _Bad(Exception):
    """One problem found by a check below; the reader turns it into a CheckpointError."""


def check_checkpoint(data: Any, path: str | os.PathLike[str] = "checkpoint", *, file_size: int | None = None,
                     run_config: Any = None) -> None:
    """Everything a resume or `actlab inspect` relies on, checked; one CheckpointError line."""
    try:
        _check_tree(data)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not an actlab checkpoint (no '{FORMAT}' format tag)")
        version = data.get("format_version")
        if not _is_int(version) or version < 1:
            raise CheckpointError(f"{path}: not an actlab checkpoint (bad format version {_show(version)})")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: written by a newer actlab (format {version}; this version reads up to {FORMAT_VERSION})")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise CheckpointError(f"{path}: incomplete actlab checkpoint (missing {', '.join(missing)})")
        config = model_config_of(data, path)
        with torch.device("meta"):  # shapes and dtypes without allocating a byte
            expected = MLP(config)
        shapes = {name: tuple(t.shape) for name, t in expected.state_dict().items()}
        params = [tuple(p.shape) for p in expected.parameters()]
        needed = sum(math.prod(s) for s in shapes.values()) * 4
        if file_size is not None and file_size > 3 * needed + SLACK_BYTES:
            raise _Bad(f"{file_size:,} bytes, more than a checkpoint of its model can hold "
                       f"({needed:,} bytes of weights, three copies at most with the optimizer's state)")
        _check_state(data["model_state"], shapes, file_size)
        _check_counters(data)
        if data.get("optimizer") is not None:
            _check_optimizer(data["optimizer"], params)
        if data.get("rng") is not None:
            _check_rng(data["rng"])
        _check_extras(data, path)
        if run_config is not None:
            _check_belongs(config, data, run_config)
    except _Bad as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = printable(repr(value)) if not isinstance(value, torch.Tensor) else f"tensor{tuple(value.shape)}"
    return text if len(text) <= 40 else text[:37] + "..."


def _check_tree(data: Any) -> None:
    """Size and depth of the metadata, walked without recursion; only plain values and tensors."""
    stack, nodes = [(data, 0, "checkpoint")], 0
    while stack:
        item, depth, where = stack.pop()
        nodes += 1
        if nodes > MAX_METADATA_NODES:
            raise _Bad(f"metadata too large (more than {MAX_METADATA_NODES:,} values); not a checkpoint")
        if depth > MAX_METADATA_DEPTH:
            raise _Bad(f"metadata nested too deeply at {where} (more than {MAX_METADATA_DEPTH} levels)")
        if isinstance(item, dict):
            for key, value in item.items():
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise _Bad(f"metadata key of type {type(key).__name__} in {where}")
                stack.append((value, depth + 1, f"{where}.{printable(key)[:40]}"))
        elif isinstance(item, (list, tuple)):
            stack.extend((value, depth + 1, f"{where}[{i}]") for i, value in enumerate(item))
        elif isinstance(item, torch.Tensor):
            if item.layout != torch.strided or item.is_quantized or item.dtype not in _ALLOWED_DTYPES:
                kind = str(item.dtype).replace("torch.", "") + ("" if item.layout == torch.strided else
                                                                 " " + str(item.layout).replace("torch.", ""))
                raise _Bad(f"{where.removeprefix('checkpoint.')} is a {kind} tensor, not real floating point "
                           "(a checkpoint holds float tensors, and uint8/int64 ones for RNG states and counters)")
        elif item is not None and not isinstance(item, (bool, int, float, str, bytes)):
            raise _Bad(f"{where} holds a {type(item).__name__}")


def model_config_of(data: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> MLPConfig:
    """The stored model config, each value checked (as lab.toml's are) before a model is built."""
    raw = data.get("model_config")
    try:
        if not isinstance(raw, dict):
            raise ValueError("model_config is not a table")
        unknown = set(raw) - {"input_size", "num_classes", "hidden_sizes", "activation", "activation_config",
                              "dropout"}
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(printable(k) for k in unknown))[:80]}")
        for key in ("input_size", "num_classes"):
            value = raw.get(key, getattr(MLPConfig, key))
            if not _is_int(value) or not 1 <= value <= INT_LIMIT:
                raise ValueError(f"{key} = {_show(value)}, must be an integer >= 1 and <= {INT_LIMIT}")
        hidden = raw.get("hidden_sizes", list(MLPConfig.hidden_sizes))
        if not isinstance(hidden, (list, tuple)) or not 1 <= len(hidden) <= 1000 or \
                not all(_is_int(h) and 1 <= h <= INT_LIMIT for h in hidden):
            raise ValueError(f"hidden_sizes = {_show(hidden)}, must be 1 to 1000 integers >= 1 and <= {INT_LIMIT}")
        dropout = raw.get("dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout = {_show(dropout)}, must be a number >= 0 and < 1")
        name = raw.get("activation", "relu")
        options = raw.get("activation_config", {})
        if not isinstance(name, str) or not isinstance(options, dict):
            raise ValueError("activation must be a name and activation_config a table")
        from .activations import create_activation

        create_activation(name, **options)  # unknown names, keys and out-of-range values: one line
        return MLPConfig.from_dict(dict(raw))
    except (TypeError, ValueError, UserError) as exc:
        raise CheckpointError(f"{path}: bad model config in checkpoint ({printable(exc)[:160]})") from None


def _check_state(state: Any, shapes: dict[str, tuple], file_size: int | None) -> None:
    if not isinstance(state, dict):
        raise _Bad("model_state is not a state dict")
    missing = [k for k in shapes if k not in state]
    unexpected = [printable(k)[:40] for k in state if k not in shapes]
    if missing or unexpected:
        raise _Bad(f"weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, shape in shapes.items():
        theirs = state[key]
        if not isinstance(theirs, torch.Tensor) or tuple(theirs.shape) != shape:
            got = tuple(theirs.shape) if isinstance(theirs, torch.Tensor) else type(theirs).__name__
            raise _Bad(f"weights do not fit the model: {key} has shape {got}, the model needs {shape}")
        if theirs.dtype not in _FLOAT_DTYPES:
            raise _Bad(f"weights do not fit the model: {key} is {str(theirs.dtype).replace('torch.', '')}, "
                       "not real floating point")
    if file_size is not None:
        stored = sum(t.numel() * t.element_size() for t in state.values())
        if stored > file_size:
            raise _Bad(f"the weights claim {stored:,} bytes, more than the file's {file_size:,}")


def _counter(value: Any, name: str, limit: int) -> int:
    if not _is_int(value) or not 0 <= value <= limit:
        raise _Bad(f"{name} = {_show(value)}, must be an integer >= 0 and <= {limit:,}")
    return value


def _finite(value: Any, name: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        where = f" in [{lo:g}, {hi:g}]" if math.isfinite(lo) and math.isfinite(hi) else \
            f" >= {lo:g}" if math.isfinite(lo) else ""
        raise _Bad(f"{name} = {_show(value)}, must be a finite number{where}")
    return float(value)


def _check_counters(data: dict[str, Any]) -> None:
    epoch = _counter(data["epoch"], "epoch", MAX_EPOCH)
    step = _counter(data["step"], "step", MAX_STEP)
    progress = data.get("progress")
    if progress is None:
        return
    if not isinstance(progress, dict):
        raise _Bad("progress is not a table")
    need = ("epoch", "batch", "step", "best_val_acc", "best_epoch", "since_best", "loss_sum", "correct", "seen")
    missing = [k for k in need if k not in progress]
    if missing:
        raise _Bad(f"progress lacks {', '.join(missing)}")
    if _counter(progress["epoch"], "progress.epoch", MAX_EPOCH) != epoch or \
            _counter(progress["step"], "progress.step", MAX_STEP) != step:
        raise _Bad(f"progress (epoch {progress['epoch']}, step {progress['step']}) disagrees with the "
                   f"checkpoint's epoch {epoch}, step {step}")
    batch = _counter(progress["batch"], "progress.batch", MAX_STEP)
    if batch > step:
        raise _Bad(f"progress.batch = {batch} is more than the {step} steps taken")
    if _counter(progress["best_epoch"], "progress.best_epoch", MAX_EPOCH) > epoch:
        raise _Bad(f"progress.best_epoch = {progress['best_epoch']} is after epoch {epoch}")
    _counter(progress["since_best"], "progress.since_best", MAX_EPOCH)
    seen = _counter(progress["seen"], "progress.seen", MAX_STEP)
    if _counter(progress["correct"], "progress.correct", MAX_STEP) > seen:
        raise _Bad(f"progress.correct = {progress['correct']} is more than the {seen} samples seen")
    _finite(progress["best_val_acc"], "progress.best_val_acc", -1.0, 1.0)
    _finite(progress["loss_sum"], "progress.loss_sum", 0.0)
    shuffle = progress.get("shuffle_state")
    if shuffle is not None:
        _check_generator_state(shuffle, "progress.shuffle_state")


def _check_generator_state(state: Any, name: str) -> None:
    """A CPU generator's state: the same uint8 vector torch.get_rng_state() gives."""
    size = torch.get_rng_state().numel()
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or tuple(state.shape) != (size,):
        raise _Bad(f"{name} is not a random generator state (uint8 tensor of {size} bytes)")


def _check_rng(rng: Any) -> None:
    if not isinstance(rng, dict):
        raise _Bad("rng is not a table")
    for key in ("torch", "shuffle"):
        if key not in rng:
            raise _Bad(f"rng lacks {key}")
        _check_generator_state(rng[key], f"rng.{key}")
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, (list, tuple)) or len(cuda) > 1024 or not all(
            isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1 and t.numel() <= 4096
            for t in cuda):
        raise _Bad("rng.cuda is not a list of CUDA generator states")


def _check_optimizer(optimizer: Any, params: list[tuple]) -> None:
    """Groups cover the model's parameters once each; every state tensor has its parameter's
    shape and a real floating dtype (a wrong shape crashes fused kernels, not just Python)."""
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) \
            or not isinstance(optimizer.get("param_groups"), list):
        raise _Bad("optimizer is not an optimizer state (state and param_groups)")
    indices: list[int] = []
    for g, group in enumerate(optimizer["param_groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) \
                or not all(_is_int(i) for i in group["params"]):
            raise _Bad(f"optimizer.param_groups[{g}] has no list of parameter indices")
        indices.extend(group["params"])
        for key, value in group.items():
            if key == "params":
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if isinstance(v, torch.Tensor):
                    v = float(v.reshape(-1)[0]) if v.numel() == 1 and v.is_floating_point() else None
                    if v is None:
                        raise _Bad(f"optimizer.param_groups[{g}].{printable(key)[:30]} is not a number")
                if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v):
                    raise _Bad(f"optimizer.param_groups[{g}].{printable(key)[:30]} = {v}, must be finite")
        for key, lo, hi in (("lr", 0.0, 1e30), ("momentum", 0.0, 1.0), ("weight_decay", 0.0, 1e30)):
            if key in group and not isinstance(group[key], torch.Tensor):
                value = _finite(group[key], f"optimizer.{key}", lo, hi)
                if key == "lr" and value <= 0:
                    raise _Bad(f"optimizer.lr = {value}, must be > 0")
    if sorted(indices) != list(range(len(params))):
        raise _Bad(f"optimizer state covers parameters {_show(sorted(indices))}, the model has {len(params)}")
    for index, state in optimizer["state"].items():
        if not _is_int(index) or not 0 <= index < len(params) or not isinstance(state, dict):
            raise _Bad(f"optimizer state for parameter {_show(index)}: the model has {len(params)} parameters")
        for key, value in state.items():
            rule = _OPTIMIZER_STATE.get(key)
            if rule is None:
                raise _Bad(f"optimizer state {printable(key)[:40]} of parameter {index} is not SGD's or Adam's")
            if value is None and key == "momentum_buffer":
                continue
            if rule == "scalar":
                if isinstance(value, torch.Tensor):
                    if value.numel() != 1 or value.dtype not in _ALLOWED_DTYPES or value.dtype == torch.uint8:
                        raise _Bad(f"optimizer step of parameter {index} is not a number")
                    value = float(value.reshape(-1)[0])
                _finite(value, f"optimizer step of parameter {index}", 0.0, float(MAX_STEP))
                continue
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != params[index]:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise _Bad(f"optimizer {key} of parameter {index} has shape {got}, the parameter has {params[index]}")
            if value.dtype not in _FLOAT_DTYPES:
                raise _Bad(f"optimizer {key} of parameter {index} is {str(value.dtype).replace('torch.', '')}, "
                           "not real floating point")
            if not bool(torch.isfinite(value).all()):
                raise _Bad(f"optimizer {key} of parameter {index} holds NaN or inf")


def _check_extras(data: dict[str, Any], path: Any) -> None:
    metrics = data.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, dict):
            raise _Bad("metrics is not a table")
        for key, value in metrics.items():
            _finite(value, f"metrics.{printable(key)[:30]}")
    if data.get("run_id") is not None and not isinstance(data["run_id"], str):
        raise _Bad("run_id is not a string")
    lab = data.get("lab_config")
    if lab is not None:
        from .config import config_from_dict

        try:
            config_from_dict(lab, source="lab_config")
        except UserError as exc:
            raise _Bad(f"stored run config: {exc}") from None


def _check_belongs(config: MLPConfig, data: dict[str, Any], run: Any) -> None:
    """The checkpoint is this run's: the run's architecture, dataset shape and optimizer."""
    from .config import DATASET_SHAPES

    ours = (tuple(run.model.hidden_sizes), float(run.model.dropout))
    theirs = (tuple(config.hidden_sizes), float(config.dropout))
    if ours != theirs:
        raise _Bad(f"not this run's checkpoint: its model has hidden sizes {list(theirs[0])} and dropout "
                   f"{theirs[1]:g}, the run's config.json says {list(ours[0])} and {ours[1]:g}")
    shape = DATASET_SHAPES.get(run.data.dataset)
    if shape and shape != (config.input_size, config.num_classes):
        raise _Bad(f"the checkpoint's model takes {config.input_size} inputs and {config.num_classes} classes, "
                   f"but the run's dataset {run.data.dataset} has {shape[0]} inputs and {shape[1]} classes")
    state = (data.get("optimizer") or {}).get("state", {})
    kinds = {key for entry in state.values() if isinstance(entry, dict) for key in entry}
    if run.train.optimizer == "sgd" and kinds & {"exp_avg", "exp_avg_sq"} or \
            run.train.optimizer == "adam" and "momentum_buffer" in kinds:
        raise _Bad(f"not this run's checkpoint: its optimizer state is not {run.train.optimizer}'s")


def _owned(data: Any, map_location: Any) -> Any:
    """The checked dict with every tensor copied out of the memory-mapped file onto `map_location`."""
    if isinstance(data, dict):
        return {key: _owned(value, map_location) for key, value in data.items()}
    if isinstance(data, list):
        return [_owned(value, map_location) for value in data]
    if isinstance(data, tuple):
        return tuple(_owned(value, map_location) for value in data)
    if isinstance(data, torch.Tensor):
        return data.to(map_location, copy=True)
    return data


def load_weights(model: torch.nn.Module, data: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> None:
    """Copy the checkpoint's weights into `model`; one line when shapes or names differ."""
    state = data["model_state"]
    try:
        _check_state(state, {name: tuple(t.shape) for name, t in model.state_dict().items()}, None)
    except _Bad as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    bad = [key for key, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"{path}: weights hold NaN or inf values ({bad[0]}); the file cannot be used")
    model.load_state_dict(state)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> tuple[MLP, dict[str, Any]]:
    """Rebuild the model from the file alone: (model with its weights, checkpoint dict)."""
    data = read_checkpoint(path, map_location)
    model = MLP(model_config_of(data, path))
    load_weights(model, data, path)
    return model.to(map_location), data
