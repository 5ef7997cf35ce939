"""Checkpoints: a plain dict written atomically and read back without running any pickle code.

A file on disk is always either the previous checkpoint or the new one: we write a temp
file beside it, flush and fsync it, then rename it over the old one (rename is atomic on
POSIX) and fsync the folder. Loading uses `torch.load(weights_only=True)`, which refuses
pickled code, and every way a file can be wrong (missing, empty, truncated, foreign, newer
format, shapes that do not fit) becomes one `CheckpointError` line.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .model import MLP, MLPConfig

FORMAT = "actlab-checkpoint"
FORMAT_VERSION = 1

#: keys every checkpoint has (besides format and version)
REQUIRED_KEYS = ("model_config", "model_state", "epoch", "step")


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write `payload` (plus format tags) atomically to `path`; returns the path.

    On failure (full disk, unwritable folder) the temp file is removed, any previous file at
    `path` is left as it was, and a CheckpointError says why.
    """
    path = Path(path)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        _remove_quietly(tmp)
        reason = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}") from None
    except BaseException:  # e.g. SystemExit from a second Ctrl-C mid-write: no temp file left behind
        _remove_quietly(tmp)
        raise
    return path


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


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict, checked to be a readable actlab checkpoint of a known format."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (.pt)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    kind = _sniff(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found or "GLOBAL" in text:
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path}: refused: the file holds Python code or objects{what}, not just tensors, and was not "
                f"loaded (not an actlab checkpoint, or tampered with)") from None
        detail = next((line.strip() for line in text.splitlines() if "Unsupported" in line), "")
        raise CheckpointError(f"{path}: corrupt checkpoint (bad pickle data{': ' + detail if detail else ''})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, IndexError,
            KeyError, TypeError, UnicodeDecodeError) as exc:
        text = str(exc).strip()
        if kind == "zip" and not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: truncated (the file ends before its zip directory: cut short)") from None
        if kind == "zip":
            first = text.splitlines()[0] if text else type(exc).__name__
            raise CheckpointError(f"{path}: a zip archive, but not a PyTorch checkpoint ({first[:120]})") from None
        if isinstance(exc, EOFError) or "central directory" in text:
            raise CheckpointError(f"{path}: truncated or not a PyTorch file") from None
        first = text.splitlines()[0] if text else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint ({first[:120]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an actlab checkpoint (no '{FORMAT}' format tag)")
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: not an actlab checkpoint (bad format version {version!r})")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer actlab (format {version}; this version reads up to {FORMAT_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path}: incomplete actlab checkpoint (missing {', '.join(missing)})")
    return data


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


def model_config_of(data: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> MLPConfig:
    try:
        config = MLPConfig.from_dict(dict(data["model_config"]))
        from .activations import canonical_name

        canonical_name(config.activation)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model config in checkpoint ({exc})") from None
    return config


def load_weights(model: torch.nn.Module, data: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> None:
    """Copy the checkpoint's weights into `model`; one line when shapes or names differ."""
    state = data["model_state"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: model_state is not a state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, tensor in own.items():
        theirs = state[key]
        if not isinstance(theirs, torch.Tensor) or tuple(theirs.shape) != tuple(tensor.shape):
            shape = tuple(theirs.shape) if isinstance(theirs, torch.Tensor) else type(theirs).__name__
            raise CheckpointError(
                f"{path}: weights do not fit the model: {key} has shape {shape}, the model needs {tuple(tensor.shape)}")
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
