"""engine/checkpoints.py: round trip, atomic writes, and one clear line for every bad file."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from actlab.engine.checkpoints import FORMAT_VERSION, load_checkpoint, read_checkpoint, save_checkpoint
from actlab.engine.errors import CheckpointError
from actlab.engine.model import MLPConfig, build_model


def _payload(config: MLPConfig, seed: int = 0) -> dict:
    model = build_model(config, seed=seed)
    return {"model_config": config.to_dict(), "model_state": model.state_dict(), "epoch": 3, "step": 42}


def test_round_trip_rebuilds_the_model_from_the_file_alone(tmp_path):
    config = MLPConfig(input_size=64, hidden_sizes=(32, 16), activation="prelu", activation_config={"init": 0.25})
    payload = _payload(config, seed=7)
    path = save_checkpoint(tmp_path / "ck.pt", payload)
    model, data = load_checkpoint(path)
    assert model.config == config
    assert (data["epoch"], data["step"], data["format_version"]) == (3, 42, FORMAT_VERSION)
    for key, tensor in payload["model_state"].items():
        assert torch.equal(model.state_dict()[key], tensor), key
    x = torch.randn(5, 64)
    original = build_model(config, seed=7)
    assert torch.equal(model(x), original(x))


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    config = MLPConfig(input_size=8, hidden_sizes=(4,))
    path = save_checkpoint(tmp_path / "last.pt", _payload(config, seed=1))
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*last.pt: no space left on device"):
        save_checkpoint(path, _payload(config, seed=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_shape_mismatch_is_named(tmp_path):
    payload = _payload(MLPConfig(input_size=8, hidden_sizes=(4,)))
    payload["model_config"] = MLPConfig(input_size=8, hidden_sizes=(5,)).to_dict()
    save_checkpoint(tmp_path / "bad.pt", payload)
    with pytest.raises(CheckpointError, match=r"layers.fc1.weight has shape \(4, 8\), the model needs \(5, 8\)"):
        load_checkpoint(tmp_path / "bad.pt")


def test_newer_format_and_foreign_dict(tmp_path):
    payload = _payload(MLPConfig(input_size=8, hidden_sizes=(4,)))
    path = tmp_path / "new.pt"
    torch.save({"format": "actlab-checkpoint", "format_version": FORMAT_VERSION + 1, **payload}, path)
    with pytest.raises(CheckpointError, match="written by a newer actlab"):
        read_checkpoint(path)
    torch.save({"state_dict": payload["model_state"]}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an actlab checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")
