"""Hostile configurations, generated in families as a fuzzer would: every integer key at the
edges of 64-bit integers, every float key at the edges of float64, TOML dates and times in
every key, arrays and tables nested 2 to 2000 deep, keys full of control characters and
escape sequences, overlong names, special files as --config, a model that cannot fit in
memory, and `--set` overrides. Each must end as ONE line on stderr naming the file and the
key (or flag) and what is allowed, exit code 2, and nothing created in the working folder.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from actlab.engine import config as cfg
from actlab.engine.config import (INT_LIMIT, MAX_DEPTH, SECTIONS, LabConfig, apply_overrides,
                                  check_memory, config_from_dict, estimate_memory, load_config, parse_set_override)
from actlab.engine.errors import ConfigError
from actlab.tui import cli

from robust_harness import child_env

KEYS = [(section, f) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
INT_KEYS = [f"{s}.{f.name}" for s, f in KEYS if cfg._base_type(f) is int]
FLOAT_KEYS = [f"{s}.{f.name}" for s, f in KEYS if cfg._base_type(f) is float]
ALL_KEYS = [f"{s}.{f.name}" for s, f in KEYS]
HUGE_INTS = [2**63, 2**64, -2**63 - 1, 10**30]
EDGE_FLOATS = ["1e308", "-1e308", "inf", "-inf", "nan", "1e-320", "-1e-320"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


def _cli(tmp_path, monkeypatch, capsys, text: str | bytes, *flags: str) -> tuple[int, str]:
    """`actlab run --headless --config lab.toml FLAGS` in tmp_path; (exit code, the one stderr line).

    Asserts the invariants every case shares: one line, no traceback, nothing created or changed.
    """
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "lab.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    before = _snapshot(tmp_path)
    code = cli.main(["run", "--headless", "--config", "lab.toml", *flags])
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
    assert err.startswith("actlab: ") and "Traceback" not in err, err
    assert _snapshot(tmp_path) == before, "something was created or changed"
    return code, err.strip()


def _toml_line(dotted: str, literal: str) -> str:
    section, key = dotted.split(".")
    return f"[{section}]\n{key} = {literal}\n"


@pytest.mark.parametrize("value", HUGE_INTS, ids=str)
@pytest.mark.parametrize("dotted", INT_KEYS)
def test_every_integer_key_at_the_edges_of_int64(dotted, value, tmp_path, monkeypatch, capsys):
    code, message = _cli(tmp_path, monkeypatch, capsys, _toml_line(dotted, str(value)))
    assert code == 2
    assert message.startswith("actlab: lab.toml:2: ") and f"{dotted} = " in message, message
    assert "must be an integer >= " in message and " and <= " in message, message


@pytest.mark.parametrize("value", HUGE_INTS + [2**31], ids=str)
def test_hidden_widths_at_the_edges_of_int64(value, tmp_path, monkeypatch, capsys):
    code, message = _cli(tmp_path, monkeypatch, capsys, _toml_line("model.hidden_sizes", f"[16, {value}]"))
    assert code == 2 and "model.hidden_sizes" in message and f"<= {INT_LIMIT}" in message, message


@pytest.mark.parametrize("flag, value", [("--seed", 2**70), ("--seed", 2**64), ("--seed", -1), ("--epochs", 10**30),
                                         ("--epochs", 2**63)])
def test_integer_flags_at_the_edges(flag, value, tmp_path, monkeypatch, capsys):
    code, message = _cli(tmp_path, monkeypatch, capsys, "", flag, str(value))
    assert code == 2 and message.startswith(f"actlab: {flag} ") and "must be an integer" in message, message


@pytest.mark.parametrize("literal", EDGE_FLOATS)
@pytest.mark.parametrize("dotted", FLOAT_KEYS)
def test_every_float_key_at_the_edges_of_float64(dotted, literal, tmp_path, monkeypatch, capsys):
    code, message = _cli(tmp_path, monkeypatch, capsys, _toml_line(dotted, literal))
    assert code == 2 and f"lab.toml:2: {dotted} = " in message, message
    assert "must be a number >" in message and (" and <= " in message or " and < " in message), message


@pytest.mark.parametrize("dotted", FLOAT_KEYS)
def test_negative_zero_is_zero_or_refused(dotted, tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text(_toml_line(dotted, "-0.0"))
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}:2: {dotted} = -0.0: must be") and "\n" not in str(exc)
        return
    section, key = dotted.split(".")
    value = getattr(getattr(config, section), key)
    assert value == 0.0 and math.copysign(1.0, value) == 1.0  # never a -0.0 that prints as "-0"


DATES = ["1979-05-27", "1979-05-27T07:32:00Z", "1979-05-27T07:32:00", "07:32:00", "[1979-05-27]",
         "{ a = 1979-05-27 }"]


@pytest.mark.parametrize("literal", DATES)
@pytest.mark.parametrize("dotted", ALL_KEYS)
def test_toml_dates_and_times_in_every_key(dotted, literal, tmp_path, monkeypatch, capsys):
    code, message = _cli(tmp_path, monkeypatch, capsys, _toml_line(dotted, literal))
    assert code == 2 and f"lab.toml:2: {dotted} = " in message and ": must be " in message, message


def _nested_array(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _nested_table(depth: int) -> str:
    return "{ a = " * depth + "1" + " }" * depth


@pytest.mark.parametrize("depth", [2, 3, MAX_DEPTH, MAX_DEPTH + 1, 100, 500, 2000])
@pytest.mark.parametrize("dotted, build", [("model.hidden_sizes", _nested_array), ("model.activation_config", _nested_table),
                                           ("train.lr", _nested_array), ("run.name", _nested_table)])
def test_deeply_nested_values(dotted, build, depth, tmp_path, monkeypatch, capsys):
    code, message = _cli(tmp_path, monkeypatch, capsys, _toml_line(dotted, build(depth)))
    assert code == 2, message
    assert f"{dotted} = " in message or "nested too deeply" in message, message
    assert "lab.toml" in message and "RecursionError" not in message


def test_deeply_nested_sections(tmp_path, monkeypatch, capsys):
    keys = ".".join(["a"] * 3000)
    code, message = _cli(tmp_path, monkeypatch, capsys, f"{keys} = 1\n")
    assert code == 2 and "lab.toml" in message


HOSTILE_CHARS = ["\n", "\r", "\x1b[31m", "\x1b]0;title\x07", "\u2028", "\t", "\x7f", "\u202e", "\x00", "\\"]


def _hostile_keys(n: int = 24) -> list[str]:
    rng = random.Random(14)
    keys = []
    for _ in range(n):
        parts = [rng.choice(["lr", "seed", "x", "épsilon", "名前", "🙂"]) for _ in range(rng.randint(1, 3))]
        for _ in range(rng.randint(1, 3)):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(HOSTILE_CHARS))
        keys.append("".join(parts))
    return keys


def _toml_string(text: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in text) + '"'


@pytest.mark.parametrize("key", _hostile_keys())
@pytest.mark.parametrize("where", ["key", "section"])
def test_keys_with_control_characters_print_escaped_on_one_line(key, where, tmp_path, monkeypatch, capsys):
    text = f"[train]\n{_toml_string(key)} = 1\n" if where == "key" else f"[{_toml_string(key)}]\nx = 1\n"
    code, message = _cli(tmp_path, monkeypatch, capsys, text)
    assert code == 2 and ("unknown key train." in message or "unknown section [" in message), message
    assert message.isprintable(), repr(message)  # escapes shown as text (\n, \x1b), never sent raw
    assert "\x1b" not in message and "\r" not in message


@pytest.mark.parametrize("length", [65, 255, 300, 5000])
def test_overlong_run_name_is_refused_with_the_limit(length, tmp_path, monkeypatch, capsys):
    code, message = _cli(tmp_path, monkeypatch, capsys, _toml_line("run.name", repr("n" * length)))
    assert code == 2 and "run.name" in message and "at most 64 characters" in message, message
    assert "File name too long" not in message


@pytest.mark.parametrize("name", ["é" * 64, "名" * 64, "🙂" * 64, "a/b" * 21, "..", "-" * 64])
def test_any_allowed_name_makes_a_short_run_id(name, tmp_path):
    from actlab.engine.runs import new_run_id

    config = config_from_dict({"run": {"name": name}})
    run_id = new_run_id(config, tmp_path)
    assert len(run_id.encode()) <= 120 and "/" not in run_id and run_id.isascii(), run_id


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_bytes(b"\xef\xbb\xbf[train]\nlr = 0.05\n")
    assert load_config(path).train.lr == 0.05


def test_a_large_file_is_refused_unread(tmp_path, monkeypatch, capsys):
    code, message = _cli(tmp_path, monkeypatch, capsys, b"# " + b"x" * (2 << 20) + b"\n")
    assert code == 2 and "lab.toml" in message and "too large" in message, message


def _actlab(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actlab.tui.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=child_env(), stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/null", "/dev/urandom"])
def test_special_files_as_config_neither_hang_nor_read_forever(special, tmp_path):
    if special == "fifo":
        path = tmp_path / "lab.fifo"
        os.mkfifo(path)
    else:
        path = Path(special)
        if not path.exists():
            pytest.skip(f"{special} does not exist here")
    before = _snapshot(tmp_path)
    result = _actlab(["run", "--headless", "--config", str(path)], tmp_path, timeout=30)  # a hang fails here
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr, result.stderr
    assert "regular" in result.stderr
    assert _snapshot(tmp_path) == before


def test_a_model_that_cannot_fit_is_refused_with_the_estimate(tmp_path, monkeypatch, capsys):
    text = (f'[run]\nruns_dir = "runs"\ndevice = "cpu"\n[data]\ndataset = "digits"\n'
            f"[model]\nhidden_sizes = [10000000, 10000000]\n[probes]\nenabled = false\n")
    code, message = _cli(tmp_path, monkeypatch, capsys, text)
    assert code == 2 and "model.hidden_sizes" in message and "does not fit in memory" in message, message
    estimate = estimate_memory(load_config(tmp_path / "lab.toml"), 64, 10)
    assert f"{estimate.parameters:,} parameters x 4 bytes x 3" in message
    assert not (tmp_path / "runs").exists()


def test_the_estimate_counts_weights_gradients_optimizer_state_and_activations():
    config = config_from_dict({"model": {"hidden_sizes": [100, 50], "dropout": 0.0},
                               "train": {"batch_size": 8, "optimizer": "adam"}})
    estimate = estimate_memory(config, 64, 10)
    parameters = 65 * 100 + 101 * 50 + 51 * 10
    assert estimate.parameters == parameters and estimate.copies == 4  # weights, grads, exp_avg, exp_avg_sq
    assert estimate.activation_bytes == 8 * 4 * ((100 + 50) * 4 + 64 + 10 * 3)
    assert estimate.total == parameters * 4 * 4 + estimate.activation_bytes
    room = math.ceil(estimate.total / cfg.MEMORY_SHARE)
    check_memory(config, "cpu", 64, 10, available=room)  # fits exactly: no error
    with pytest.raises(ConfigError, match=r"^model.hidden_sizes = \[100, 50\]: does not fit in memory: "):
        check_memory(config, "cpu", 64, 10, available=room - 2)


@pytest.mark.parametrize("text, expected", [
    ("train.lr=0.003", ("train.lr", 0.003)),
    ("model.hidden_sizes=[256,128]", ("model.hidden_sizes", [256, 128])),
    ("model.activation=gelu", ("model.activation", "gelu")),
    ('data.dataset="digits"', ("data.dataset", "digits")),
    ("probes.enabled=false", ("probes.enabled", False)),
    ("model.activation_config={alpha=0.2}", ("model.activation_config", {"alpha": 0.2})),
    (" train.epochs = 3 ", ("train.epochs", 3)),
])
def test_set_overrides_parse_as_toml_values(text, expected):
    assert parse_set_override(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("train.lr", "expected section.key=value"), ("lr=3", "expected section.key=value"),
    ("=3", "expected section.key=value"), ("a.b.c=1", "expected section.key=value"),
    ("train.lr=", "no value after '='"), ("train.lrr=1", "unknown key train.lrr; did you mean 'lr'?"),
    ("trian.lr=1", "unknown section [trian]"), ("train.l\nr=1", "unknown key train.l\\nr"),
    ("model.hidden_sizes=" + "[" * 3000 + "1" + "]" * 3000, "nested too deeply"),
])
def test_bad_set_overrides_are_one_line_naming_the_text(text, fragment):
    with pytest.raises(ConfigError) as err:
        parse_set_override(text)
    message = str(err.value)
    assert message.startswith("--set ") and fragment in message and message.isprintable(), message


@pytest.mark.parametrize("text", [f"{key}={value}" for key in INT_KEYS for value in HUGE_INTS]
                         + [f"{key}={value}" for key in FLOAT_KEYS for value in EDGE_FLOATS]
                         + [f"{key}=1979-05-27" for key in ALL_KEYS])
def test_set_values_are_checked_exactly_like_lab_toml(text):
    dotted, value = parse_set_override(text)
    with pytest.raises(ConfigError) as err:
        apply_overrides(LabConfig(), {dotted: value}, source={dotted: f"--set {text}"})
    message = str(err.value)
    assert message.startswith(f"--set {text}") and ": must be " in message and "\n" not in message, message
    with pytest.raises(ConfigError) as from_file:  # the same value in a file: the same rule
        config_from_dict({dotted.split(".")[0]: {dotted.split(".")[1]: value}}, source="lab.toml")
    assert str(from_file.value).split(": must be ")[1] == message.split(": must be ")[1]


def test_set_overrides_are_explicit_and_win_over_the_dataset_recipe():
    from actlab.engine.config import apply_recipe

    config = config_from_dict({"data": {"dataset": "digits"}})
    dotted, value = parse_set_override("train.batch_size=64")
    chosen = apply_recipe(apply_overrides(config, {dotted: value}), "digits")
    assert chosen.train.batch_size == 64 and chosen.train.epochs == cfg.DATASET_RECIPES["digits"]["train.epochs"]
