"""A corpus of malformed lab.toml files (tests/corpus/config/): each one stops `actlab run`
with exit code 2 and one line that names the file, the key (and line, where TOML gives it)
and what is allowed; no traceback, and nothing runs (no run folder appears).

Each corpus file says what it expects in its header:
    # expect: fragment|another fragment     (all must be in the message)
    # args: --epochs 0                      (optional: command-line flags added)
    # line: 3                               (optional: the message points at FILE:3)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from actlab.tui import cli

CORPUS = Path(__file__).resolve().parent / "corpus" / "config"
CASES = sorted(p.name for p in CORPUS.glob("*.toml"))


def _header(path: Path) -> dict[str, str]:
    fields = {}
    for raw in path.read_bytes().splitlines():
        line = raw.decode("utf-8", errors="replace")
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _run(tmp_path, monkeypatch, capsys, argv) -> tuple[int, str, set[str]]:
    """Run `actlab` in a copy of the corpus folder; (exit code, stderr, new paths)."""
    work = tmp_path / "corpus"
    shutil.copytree(CORPUS, work)
    monkeypatch.chdir(work)
    before = {str(p.relative_to(work)) for p in work.rglob("*")}
    code = cli.main(argv)
    err = capsys.readouterr().err
    after = {str(p.relative_to(work)) for p in work.rglob("*")}
    return code, err, after - before


def _assert_one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("actlab: ") and "Traceback" not in err, err
    return err.strip()


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert all("expect" in _header(CORPUS / name) for name in CASES)


@pytest.mark.parametrize("name", CASES)
def test_malformed_config_is_one_line_exit_2_and_nothing_runs(name, tmp_path, monkeypatch, capsys):
    header = _header(CORPUS / name)
    argv = ["run", "--headless", "--config", name, *header.get("args", "").split()]
    code, err, created = _run(tmp_path, monkeypatch, capsys, argv)
    message = _assert_one_line(err)
    assert code == 2, message
    for fragment in header["expect"].split("|"):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    if header.get("args"):
        assert header["args"].split()[0] in message  # the flag that was wrong
    else:
        assert name in message  # the file
    if header.get("line"):
        assert f"{name}:{header['line']}" in message
    assert created == set(), f"something was written: {sorted(created)}"


def test_missing_config_file(tmp_path, monkeypatch, capsys):
    code, err, created = _run(tmp_path, monkeypatch, capsys, ["run", "--headless", "--config", "nope.toml"])
    assert code == 2 and _assert_one_line(err) == "actlab: nope.toml: config file not found"
    assert created == set()


def test_config_path_is_a_folder(tmp_path, monkeypatch, capsys):
    code, err, created = _run(tmp_path, monkeypatch, capsys, ["run", "--headless", "--config", "data-empty"])
    assert code == 2 and "data-empty: is a folder, expected a TOML file" in _assert_one_line(err)
    assert created == set()


def test_unreadable_config_file(tmp_path, monkeypatch, capsys):
    """chmod 000 does not stop root, so the refusal is simulated where the file is read."""
    original = Path.open

    def refuse(self, *args, **kwargs):
        if self.name == "lr-zero.toml":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    code, err, created = _run(tmp_path, monkeypatch, capsys, ["run", "--headless", "--config", "lr-zero.toml"])
    assert code == 2
    assert _assert_one_line(err) == "actlab: lr-zero.toml: cannot read config file (Permission denied)"
    assert created == set()
