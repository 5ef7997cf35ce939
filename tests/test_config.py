"""engine/config.py: the documented lab.toml equals the defaults; every error is one line naming the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from actlab.engine.config import (DATASET_RECIPES, LabConfig, apply_overrides, config_from_dict, describe_options,
                                  load_config)
from actlab.engine.errors import ConfigError

from conftest import REPO


def test_documented_lab_toml_is_the_default_config():
    assert load_config(REPO / "lab.toml") == LabConfig()


def test_every_option_is_documented_in_lab_toml():
    text = (REPO / "lab.toml").read_text()
    for key, _allowed, _default, doc in describe_options():
        section, name = key.split(".")
        assert f"[{section}]" in text, section
        recipe = key in DATASET_RECIPES["fashion-mnist"]  # documented commented out: the recipe decides
        line = f"\n# {name} " if recipe else f"\n{name} "
        assert line in text or f"\n{name}=" in text, f"{key} missing from lab.toml"
        assert doc, f"{key} has no doc"


def test_defaults_follow_the_reference_recipe():
    c = LabConfig()
    assert c.model.hidden_sizes == (512, 256, 256, 128)
    assert (c.train.optimizer, c.train.lr, c.train.momentum, c.train.batch_size) == ("sgd", 0.01, 0.9, 256)
    assert (c.train.epochs, c.train.patience, c.run.seed, c.data.val_size) == (50, 7, 42, 10000)


@pytest.mark.parametrize("text, fragments", [
    ("[train]\nlr = -0.1\n", ["lab.toml:2", "train.lr", "> 0"]),
    ("[train]\nbatch_size = 0\n", ["lab.toml:2", "train.batch_size", ">= 1"]),
    ("[train]\nepochs = 2.5\n", ["train.epochs", "an integer"]),
    ("[train]\nlr = \"fast\"\n", ["train.lr", "a number"]),
    ("[model]\nhidden_sizes = []\n", ["model.hidden_sizes", "non-empty list"]),
    ("[model]\nhidden_sizes = [512, -1]\n", ["model.hidden_sizes", ">= 1"]),
    ("[model]\ndropout = 1.0\n", ["model.dropout", "< 1"]),
    ("[data]\ndataset = \"fashion_mnist\"\n", ["data.dataset", "did you mean 'fashion-mnist'"]),
    ("[train]\nbatchsize = 3\n", ["lab.toml:2", "unknown key train.batchsize", "did you mean 'batch_size'"]),
    ("[trian]\nlr = 1\n", ["lab.toml:1", "unknown section [trian]", "did you mean 'train'"]),
    ("[run]\ndevice = \"gpu\"\n", ["run.device", "'auto', 'cuda', 'mps', 'cpu'"]),
    ("[probes]\nenabled = 1\n", ["probes.enabled", "true or false"]),
    ("train = 3\n", ["train must be a table"]),
    ("[train\nlr = 1\n", ["invalid TOML", "line 1"]),
])
def test_bad_values_give_one_line_naming_file_key_and_allowed(tmp_path, text, fragments):
    path = tmp_path / "lab.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment.replace("lab.toml", str(path)) in message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_overrides_are_checked_and_named_by_flag():
    c = apply_overrides(LabConfig(), {"train.epochs": 3, "model.activation": "gelu"})
    assert (c.train.epochs, c.model.activation) == (3, "gelu")
    with pytest.raises(ConfigError, match=r"^--epochs 0: must be an integer >= 1 and <= 1000000$"):
        apply_overrides(LabConfig(), {"train.epochs": 0}, source={"train.epochs": "--epochs"})


def test_config_is_frozen_and_round_trips_through_json():
    c = LabConfig().replace(**{"model.hidden_sizes": [64, 32], "train.optimizer": "adam"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.train.lr = 1.0  # type: ignore[misc]
    assert config_from_dict(c.to_dict()) == c
    assert c.model.hidden_sizes == (64, 32)


def test_config_module_does_not_import_torch():
    code = "import sys, actlab.engine.config, actlab.engine.events; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
