"""Hostile checkpoints, generated in families from a real one: wrong dtypes (complex, integer,
bool) and shapes of every tensor including the optimizer's momentum buffers, absurd counters,
impossible model configs, metadata nested 1 to 2000 deep or shared into an exponential tree,
oversized metadata, a decompression bomb, and a checkpoint of another architecture. Through
`actlab inspect FILE` and `actlab run --resume RUN`, each is ONE line on stderr naming the
file, exit code 2, and the run folder is unchanged (same files, same bytes). Also: a full
disk while a checkpoint or config.json is written names the full disk and leaves no temp file.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from robust_harness import child_env, one_thread, tiny_config  # noqa: F401

from actlab.engine import checkpoints, runs
from actlab.engine.checkpoints import MAX_METADATA_DEPTH, read_checkpoint, save_checkpoint
from actlab.engine.errors import CheckpointError, UserError
from actlab.tui import cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A finished 2-epoch digits run (hidden [16, 8], SGD with momentum): a real last.pt."""
    tmp = tmp_path_factory.mktemp("good")
    config = tiny_config(tmp / "lab.toml", tmp / "runs", epochs=2, hidden="[16, 8]", patience=0)
    torch.set_num_threads(1)
    assert cli.main(["run", "--headless", "--config", str(config)]) == 0
    return next((tmp / "runs").iterdir())


@pytest.fixture(scope="module")
def good(good_run) -> dict:
    return torch.load(runs.checkpoint_path(good_run), weights_only=True)


def _digest(folder: Path) -> dict[str, str]:
    """Every file's hash; run.lock by presence only (a trainer writes its pid there when it locks)."""
    return {str(p.relative_to(folder)): ("" if p.name == runs.LOCK_FILE else hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("actlab: ") and "Traceback" not in err, repr(err)
    assert "Warning" not in err and err.strip().isprintable(), repr(err)
    return err.strip()


def _write(data, path: Path, deep: bool = False) -> Path:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000 if deep else limit)
    try:
        torch.save(data, path)
    finally:
        sys.setrecursionlimit(limit)
    return path


def _refused_both_ways(path: Path, good_run: Path, tmp_path: Path, monkeypatch, capsys, fragment: str,
                       inspect_ok: bool = False) -> None:
    monkeypatch.chdir(tmp_path)
    code = cli.main(["inspect", str(path)])
    out, err = capsys.readouterr()
    if inspect_ok:
        assert code == 0 and err == "", err
    else:
        message = _one_line(err)
        assert code == 2 and out == "" and str(path) in message and fragment in message, message
    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    shutil.copyfile(path, runs.checkpoint_path(run_dir))
    before = _digest(run_dir)
    code = cli.main(["run", "--headless", "--resume", str(run_dir)])
    message = _one_line(capsys.readouterr().err)
    assert code == 2 and str(runs.checkpoint_path(run_dir)) in message and fragment in message, message
    assert _digest(run_dir) == before, "the run folder changed"


def _mutated(good: dict, change) -> dict:
    data = copy.deepcopy(good)
    change(data)
    return data


# --- tensors: dtypes and shapes, model and optimizer -------------------------------------------

BAD_DTYPES = [torch.complex64, torch.complex128, torch.int32, torch.int64, torch.int8, torch.bool, torch.uint8]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
@pytest.mark.parametrize("key", ["layers.fc1.weight", "layers.out.bias"])
def test_weights_of_a_wrong_dtype(key, dtype, good, good_run, tmp_path, monkeypatch, capsys):
    def change(d):
        d["model_state"][key] = d["model_state"][key].to(dtype)
    path = _write(_mutated(good, change), tmp_path / "bad.pt")
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, "not real floating point"
                       if dtype not in (torch.complex64, torch.complex128) else "tensor")


def _shapes(shape: tuple) -> list[tuple]:
    return [shape[::-1] if len(shape) > 1 and shape[0] != shape[-1] else (shape[0] + 1, *shape[1:]),
            (*shape, 1), (), (0,), (shape[0] * 2,) + shape[1:]]


@pytest.mark.parametrize("variant", range(5))
@pytest.mark.parametrize("index", range(6))  # fc1 w, b, fc2 w, b, out w, b
def test_momentum_buffers_of_a_wrong_shape(index, variant, good, good_run, tmp_path, monkeypatch, capsys):
    """A wrong momentum-buffer shape used to crash fused SGD with a segmentation fault on resume."""
    shape = tuple(good["optimizer"]["state"][index]["momentum_buffer"].shape)
    bad = _shapes(shape)[variant]

    def change(d):
        d["optimizer"]["state"][index]["momentum_buffer"] = torch.zeros(bad)
    path = _write(_mutated(good, change), tmp_path / "bad.pt")
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, f"momentum_buffer of parameter {index} has shape")


@pytest.mark.parametrize("what", ["complex", "nan", "int", "groups-short", "groups-dup", "index-out", "adam-state",
                                  "lr-negative", "lr-nan", "not-a-dict"])
def test_optimizer_states_that_do_not_fit(what, good, good_run, tmp_path, monkeypatch, capsys):
    def change(d):
        o = d["optimizer"]
        if what == "complex":
            o["state"][0]["momentum_buffer"] = o["state"][0]["momentum_buffer"].to(torch.complex64)
        elif what == "nan":
            o["state"][2]["momentum_buffer"][0, 0] = float("nan")
        elif what == "int":
            o["state"][1]["momentum_buffer"] = o["state"][1]["momentum_buffer"].to(torch.int64)
        elif what == "groups-short":
            o["param_groups"][0]["params"] = o["param_groups"][0]["params"][:-1]
        elif what == "groups-dup":
            o["param_groups"][0]["params"] = [0, *o["param_groups"][0]["params"][:-1]]
        elif what == "index-out":
            o["state"][99] = o["state"][0]
        elif what == "adam-state":
            o["state"][0] = {"exp_avg": o["state"][0]["momentum_buffer"], "step": torch.tensor(3.0)}
        elif what == "lr-negative":
            o["param_groups"][0]["lr"] = -0.1
        elif what == "lr-nan":
            o["param_groups"][0]["lr"] = float("nan")
        else:
            d["optimizer"] = [1, 2]
    path = _write(_mutated(good, change), tmp_path / "bad.pt")
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, "optimizer",
                       inspect_ok=what == "adam-state")


# --- counters and stored configs ------------------------------------------------------------------

ABSURD = [-1, 2**63, 2**70, 1.5, True, "3", None, float("nan")]
COUNTERS = [(key, value) for key in ("epoch", "step", "progress.batch", "progress.best_epoch", "progress.seen")
            for value in ABSURD] + [(key, value) for key in ("epoch", "progress.best_epoch") for value in (10**6 + 1, 10**9)]


@pytest.mark.parametrize("key, value", COUNTERS, ids=[f"{k}={v!r}" for k, v in COUNTERS])
def test_absurd_counters(key, value, good, good_run, tmp_path, monkeypatch, capsys):
    def change(d):
        if key.startswith("progress."):
            d["progress"][key.split(".")[1]] = value
        else:
            d[key] = value
            d["progress"][key] = value
    path = _write(_mutated(good, change), tmp_path / "bad.pt")
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, "must be an integer")


BAD_MODEL_CONFIGS = [("hidden_sizes", v) for v in ([-16, 8], [0, 8], [], [16.0, 8], [True, 8], ["16", 8], [2**40, 8],
                                                  [16] * 1001, "16", None)] + \
                    [("dropout", v) for v in (1.5, -0.1, float("nan"), float("inf"), 1.0, "0.1", True, None)] + \
                    [("input_size", v) for v in (0, -64, 2**40, 64.0, None)] + \
                    [("num_classes", v) for v in (0, -10, 2**63)] + \
                    [("activation", v) for v in ("relux", 3, None, "")] + \
                    [("activation_config", v) for v in ({"alpha": 0.1}, [1], "x")]


@pytest.mark.parametrize("key, value", BAD_MODEL_CONFIGS, ids=[f"{k}={v!r}"[:40] for k, v in BAD_MODEL_CONFIGS])
def test_impossible_model_configs(key, value, good, good_run, tmp_path, monkeypatch, capsys):
    def change(d):
        d["model_config"][key] = value
    path = _write(_mutated(good, change), tmp_path / "bad.pt")
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, "bad model config in checkpoint")


@pytest.mark.parametrize("what, fragment", [
    ("rng-size", "rng.torch is not a random generator state"), ("rng-missing", "rng lacks shuffle"),
    ("shuffle-float", "progress.shuffle_state is not a random generator state"),
    ("lab-config", "stored run config"), ("metrics-nan", "metrics.val_acc"), ("best-acc", "progress.best_val_acc"),
    ("correct", "progress.correct"), ("object", "metrics.val_acc"),
])
def test_other_fields_that_do_not_fit(what, fragment, good, good_run, tmp_path, monkeypatch, capsys):
    def change(d):
        if what == "rng-size":
            d["rng"]["torch"] = d["rng"]["torch"][:100]
        elif what == "rng-missing":
            del d["rng"]["shuffle"]
        elif what == "shuffle-float":
            d["progress"]["shuffle_state"] = torch.zeros(5056)
        elif what == "lab-config":
            d["lab_config"]["train"]["lr"] = -1.0
        elif what == "metrics-nan":
            d["metrics"]["val_acc"] = float("nan")
        elif what == "best-acc":
            d["progress"]["best_val_acc"] = 7.0
        elif what == "correct":
            d["progress"]["correct"] = d["progress"]["seen"] + 1
        else:
            d["metrics"]["val_acc"] = torch.Size([3])
    path = _write(_mutated(good, change), tmp_path / "bad.pt")
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, fragment)


def test_another_architecture_is_refused_on_resume(good, good_run, tmp_path, monkeypatch, capsys):
    """Self-consistent, so `inspect` shows it; but it is not the run's model."""
    from actlab.engine.model import MLP, MLPConfig

    other = MLP(MLPConfig(input_size=64, num_classes=10, hidden_sizes=(32, 8)))
    data = _mutated(good, lambda d: None)
    data["model_config"] = other.config.to_dict()
    data["model_state"] = other.state_dict()
    data["optimizer"] = torch.optim.SGD(other.parameters(), lr=0.05, momentum=0.9).state_dict()
    path = _write(data, tmp_path / "other.pt")
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, "not this run's checkpoint: its model has "
                       "hidden sizes [32, 8] and dropout 0, the run's config.json says [16, 8] and 0.1", inspect_ok=True)


# --- metadata: depth, size, sharing, compression ------------------------------------------------------

def _nested(depth: int):
    value: object = 1.0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [1, 2, MAX_METADATA_DEPTH, MAX_METADATA_DEPTH + 1, 100, 500, 2000])
def test_metadata_nested_deep(depth, good, good_run, tmp_path, monkeypatch, capsys):
    path = _write(_mutated(good, lambda d: d["metrics"].update(val_acc=_nested(depth))), tmp_path / "deep.pt", deep=True)
    fragment = "nested too deeply" if depth + 2 > MAX_METADATA_DEPTH else "metrics.val_acc"
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, fragment)


@pytest.mark.parametrize("levels", [20, 40, 60])
def test_metadata_shared_into_an_exponential_tree(levels, good, good_run, tmp_path, monkeypatch, capsys):
    """Each level's list holds the previous one twice: a small pickle, 2**levels values to walk."""
    tree: object = 0.5
    for _ in range(levels):
        tree = [tree, tree]
    path = _write(_mutated(good, lambda d: d.update(extra=tree)), tmp_path / "shared.pt", deep=True)
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, "metadata")


def test_oversized_metadata_is_refused_unread(good, good_run, tmp_path, monkeypatch, capsys):
    path = _write(_mutated(good, lambda d: d.update(run_id="x" * (17 << 20))), tmp_path / "big.pt")
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, "bytes of metadata")


@pytest.mark.parametrize("member", ["data.pkl", "data/0", "all"])
def test_a_decompression_bomb_is_refused_unread(member, good_run, tmp_path, monkeypatch, capsys):
    """The same checkpoint with members deflated, one of them padded to 200 MB of zeros."""
    source = runs.checkpoint_path(good_run)
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            hit = member == "all" or info.filename.endswith("/" + member)
            if hit and info.filename.endswith(member if member != "all" else "data.pkl"):
                data += b"\0" * (200 << 20)
            dst.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED if hit else zipfile.ZIP_STORED)
    assert path.stat().st_size < 2 << 20
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, "is compressed")


def test_a_file_far_larger_than_its_model_is_refused(good, good_run, tmp_path, monkeypatch, capsys):
    data = _mutated(good, lambda d: d.update(padding=torch.zeros(20_000_000)))  # 80 MB beside a 1 KB model
    path = _write(data, tmp_path / "padded.pt")
    _refused_both_ways(path, good_run, tmp_path, monkeypatch, capsys, "more than a checkpoint of its model can hold")


def test_a_fifo_is_refused_without_hanging(tmp_path):
    import os

    fifo = tmp_path / "last.pt"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "actlab.tui.cli", "inspect", str(fifo)], capture_output=True,
                            text=True, timeout=60, env=child_env())
    assert result.returncode == 2 and "not a regular file" in _one_line(result.stderr)


def test_the_good_checkpoint_still_loads_and_resumes(good, good_run, tmp_path, monkeypatch, capsys):
    assert read_checkpoint(runs.checkpoint_path(good_run))["epoch"] == 2
    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    config = (run_dir / "config.json").read_text().replace('"epochs": 2', '"epochs": 3')
    (run_dir / "config.json").write_text(config)
    assert cli.main(["run", "--headless", "--resume", str(run_dir)]) == 0
    assert read_checkpoint(runs.checkpoint_path(run_dir))["epoch"] == 3


# --- full disk ---------------------------------------------------------------------------------------

class _FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written (a disk filling up)."""

    def __init__(self, f, room: int) -> None:
        self._f, self.room = f, room

    def write(self, data) -> int:
        if self._f.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("room", [0, 64, 700, 4096, 20_000])
def test_a_full_disk_while_writing_a_checkpoint_names_it(room, good, tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    target.write_bytes(b"previous")
    monkeypatch.setattr(checkpoints, "open", lambda path, mode="r", *a, **k: _FullDisk(open(path, mode, *a, **k), room),
                        raising=False)
    payload = {k: v for k, v in good.items() if k not in ("format", "format_version")}
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(target, payload)
    assert str(err.value) == f"cannot write checkpoint {target}: no space left on device"
    assert "unexpected pos" not in str(err.value)
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("room", [0, 10, 500])
def test_a_full_disk_while_writing_config_json_leaves_no_temp_file(room, tmp_path, monkeypatch):
    from actlab.engine.config import config_from_dict

    monkeypatch.setattr(runs, "open", lambda path, mode="r", *a, **k: _FullDisk(open(path, mode, *a, **k), room),
                        raising=False)
    with pytest.raises(UserError) as err:
        runs.write_config(tmp_path, config_from_dict({}))
    assert str(err.value) == f"{tmp_path / 'config.json'}: cannot write run config (no space left on device)"
    assert list(tmp_path.iterdir()) == []
