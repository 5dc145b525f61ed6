import json
import os

import pytest
import torch

from nanorepro.common import io as nio
from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError


def test_nested_state_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": 7,
        "curve": [{"step": 1, "loss": 0.5}],
        "rng": torch.get_rng_state(),
        "pair": (1, 2.5),
        "nothing": None,
    }
    save_checkpoint(tmp_path / "c.safetensors", state)
    back = load_checkpoint(tmp_path / "c.safetensors")
    assert back["step"] == 7 and back["curve"] == state["curve"] and back["pair"] == (1, 2.5)
    assert back["nothing"] is None
    assert torch.equal(back["rng"], state["rng"])
    assert set(back["optimizer"]["state"]) == {0, 1}  # int keys survive JSON
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-2)
    fresh.load_state_dict(back["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    for key, value in model.state_dict().items():
        assert torch.equal(back["model"][key], value)


def test_foreign_or_corrupt_checkpoint_is_a_user_error(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(UserError, match="not a nanorepro checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    nio.atomic_write_json(target, {"v": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between writing and renaming

    monkeypatch.setattr(nio.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        nio.atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["result.json"]  # no temp file left behind


def test_json_has_no_nan(tmp_path):
    path = nio.atomic_write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf"), 1.0]})
    assert json.loads(path.read_text()) == {"a": None, "b": [None, 1.0]}


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        nio.read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(UserError, match="bad.json is not valid JSON"):
        nio.read_json(tmp_path / "bad.json")
