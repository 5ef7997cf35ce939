"""Messages blame the right thing: an oversized data.val_size and an unusable data.cache_dir are
named by their key (with file and line), not by ACTLAB_DATA; `actlab inspect F | head` never
ends with a BrokenPipeError traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from robust_harness import child_env, one_thread, tiny_config  # noqa: F401

from actlab.tui import cli

from conftest import shared_datasets

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tmp_path, monkeypatch, capsys, text: str) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.toml").write_text(text)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code = cli.main(["run", "--headless", "--config", "lab.toml"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("actlab: ") and "Traceback" not in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # no run folder, no cache
    return code, err.strip()


@pytest.mark.parametrize("val_size", [60000, 60001, 10**6, 2**31 - 1])
@pytest.mark.parametrize("dataset", ["fashion-mnist", "mnist"])
def test_an_oversized_val_size_is_blamed_on_the_key(dataset, val_size, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ACTLAB_DATA", str(shared_datasets()))
    text = f'[run]\ndevice = "cpu"\n[data]\ndataset = "{dataset}"\nval_size = {val_size}\n'
    code, message = _run(tmp_path, monkeypatch, capsys, text)
    assert code == 2 and message.startswith(f"actlab: lab.toml:5: data.val_size = {val_size}: must be < 60000"), message
    assert "ACTLAB_DATA" not in message


def test_a_cache_dir_that_cannot_be_created_is_blamed_on_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ACTLAB_DATA", str(shared_datasets()))
    (tmp_path / "a-file").write_text("not a folder")
    text = '[run]\ndevice = "cpu"\n[data]\ndataset = "mnist"\ncache_dir = "a-file/cache"\n'
    code, message = _run(tmp_path, monkeypatch, capsys, text)
    assert code == 2 and message.startswith("actlab: lab.toml:5: data.cache_dir = 'a-file/cache': cannot create"), message
    assert "ACTLAB_DATA" not in message


@pytest.mark.parametrize("errno_name", ["EACCES", "EROFS", "ENOSPC"])
def test_a_read_only_or_full_cache_is_blamed_on_the_key(errno_name, tmp_path, monkeypatch, capsys):
    """Root ignores chmod, so the refusal comes where the cache is written (the copy from the source)."""
    import errno
    import os

    monkeypatch.setenv("ACTLAB_DATA", str(shared_datasets()))
    code_ = getattr(errno, errno_name)

    def refuse(src, dst, *args, **kwargs):
        raise OSError(code_, os.strerror(code_), str(dst))

    monkeypatch.setattr(shutil, "copyfile", refuse)
    text = '[run]\ndevice = "cpu"\n[data]\ndataset = "mnist"\ncache_dir = "cache"\n'
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.toml").write_text(text)
    code = cli.main(["run", "--headless", "--config", "lab.toml"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("actlab: lab.toml:5: data.cache_dir = 'cache': cannot write the dataset cache "), err
    assert os.strerror(code_) in err and "ACTLAB_DATA" not in err
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def a_checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pipe")
    config = tiny_config(tmp / "lab.toml", tmp / "runs", epochs=1, hidden="[8]")
    assert cli.main(["run", "--headless", "--config", str(config)]) == 0
    return next((tmp / "runs").iterdir()) / "checkpoints" / "last.pt"


@pytest.mark.parametrize("flags", [[], ["--json"]])
@pytest.mark.parametrize("attempt", range(3))
def test_inspect_into_a_closed_pipe_ends_quietly(flags, attempt, a_checkpoint):
    """The reader is gone before actlab writes (what `| head -3` does to a slow writer)."""
    proc = subprocess.Popen([sys.executable, "-m", "actlab.tui.cli", "inspect", *flags, str(a_checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    proc.stdout.close()  # the pipe's only reader closes: actlab's write gets EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == "", err


def test_inspect_piped_to_head(a_checkpoint, tmp_path):
    result = subprocess.run(f"{sys.executable} -m actlab.tui.cli inspect {a_checkpoint} 2>{tmp_path / 'err'} | head -3",
                            shell=True, capture_output=True, text=True, env=child_env(), timeout=60)
    assert len(result.stdout.splitlines()) == 3 and (tmp_path / "err").read_text() == ""
