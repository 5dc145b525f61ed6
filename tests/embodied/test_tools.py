"""`nanorepro embodied`: demonstrations -> a chunked policy -> SuP's scheduler -> paired evaluation, resumable."""

import numpy as np
import pytest
import torch

from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.common.progress import ProgressBoard
from nanorepro.embodied import tools
from nanorepro.embodied.demos import load_demos
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, train_bc
from nanorepro.embodied.tools import SupToolConfig, fit_sup, load_scheduler

TINY_SUP = SupToolConfig(budgets=(0.1, 0.8), log_episodes=4, valid_episodes=2, wm_steps=3, dual_iterations=2,
                         q_steps=3, max_steps=40)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "demos.npz"
    tools.make_demo_file(path, episodes=3, split="train", seed=0, horizon=4, view_size=16)
    return path


def test_make_demos_train_policy_and_evaluate_from_the_shell(cli, demos, tmp_path):
    data = load_demos(demos)
    assert int(data["chunk"]) == 4 and data["head"].shape[1:] == (16, 16, 3) and len(data["success"]) == 3
    policy = tmp_path / "policy.safetensors"
    code, out, err = cli("embodied", "train-policy", "--demos", demos, "--out", policy, "--steps", 3, "--batch", 8)
    assert code == 0, err
    assert "3 demonstrations" in out and policy.exists() and (tmp_path / "policy.safetensors.curve.png").exists()
    assert not (tmp_path / "policy.safetensors.ckpt.safetensors").exists()
    loaded = tools.load_policy(policy)
    assert (loaded.cfg.horizon, loaded.cfg.view_size) == (4, 16)   # taken from the demonstration file
    code, out, err = cli("embodied", "evaluate", "--policy", policy, "--rate", 2, "--episodes", 2)
    assert code == 0, err
    assert "fixed k = 2" in out and "2 train episodes" in out
    objects = tmp_path / "objects.safetensors"   # reads the state, so it runs without rendering the cameras
    code, out, err = cli("embodied", "train-policy", "--demos", demos, "--out", objects, "--steps", 2, "--batch", 8,
                         "--encoder", "objects", "--set", "object_dim=16")
    assert code == 0, err
    code, out, err = cli("embodied", "evaluate", "--policy", objects, "--rate", 3, "--episodes", 2, "--split", "unseen")
    assert code == 0, err
    assert "fixed k = 3" in out and "2 unseen episodes" in out
    code, out, err = cli("embodied", "evaluate", "--policy", "scripted", "--rate", 1, "--episodes", 2,
                         "--max-steps", 3)
    assert code == 0, err
    assert "base success 0.000" in out   # no task is solved in 3 control steps, not even by the demonstrator
    code, _, err = cli("embodied", "evaluate", "--policy", objects, "--rate", 1, "--max-steps", 0)
    assert code == 2 and "--max-steps must be at least 1" in err


def test_sup_from_the_shell_writes_a_scheduler_that_evaluate_reads(cli, tmp_path):
    scheduler = tmp_path / "scheduler.safetensors"
    code, out, err = cli("embodied", "sup", "--policy", "scripted", "--out", scheduler, "--budgets", "0.1,0.8",
                         "--log-episodes", 4, "--valid-episodes", 2, "--wm-steps", 3, "--set", "dual_iterations=2",
                         "--set", "q_steps=3", "--set", "max_steps=40")
    assert code == 0, err
    assert "budget 0.1 " in out and "budget 0.8 " in out and scheduler.exists()
    code, out, err = cli("embodied", "evaluate", "--policy", "scripted", "--scheduler", scheduler, "--episodes", 2)
    assert code == 0, err
    assert "SuP (budget" in out
    code, _, err = cli("embodied", "sup", "--policy", "scripted", "--set", "q_step=3")
    assert code == 2 and "q_step" in err


def test_rate_one_is_the_base_policy_exactly():
    """Same scenes, same policy, k = 1 on both sides: no difference at all (the pairing is exact)."""
    info = tools.evaluate(tools.SCRIPTED, episodes=6, split="train", seed=3, rate=1, max_steps=120)
    assert info["success_diff"] == 0.0 and info["success"] == info["base_success"]
    assert info["speedup"] in (None, 1.0)


def test_behaviour_cloning_resumes_to_the_same_weights(demos, tmp_path):
    data = load_demos(demos)
    cfg = PolicyConfig(horizon=4, view_size=16, encoder="objects", object_dim=16)

    def fresh():
        torch.manual_seed(0)
        return ChunkPolicy(cfg)

    whole = fresh()
    curve = train_bc(whole, data, 6, 8, seed=1)

    class Killed(Exception):
        pass

    state, ckpt = {}, tmp_path / "bc.ckpt.safetensors"

    def save_then_die():
        save_checkpoint(ckpt, state)
        raise Killed

    with pytest.raises(Killed):
        train_bc(fresh(), data, 6, 8, seed=1, state=state, save=save_then_die, save_every=2)
    saved = load_checkpoint(ckpt)   # what a killed run resumes from
    assert saved["step"] == 2
    resumed = fresh()
    rest = train_bc(resumed, data, 6, 8, seed=1, state=saved, save=lambda: None, save_every=2)
    assert rest == pytest.approx(curve)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_sup_scheduler_file_and_resume(tmp_path, monkeypatch):
    board = ProgressBoard(enabled=False)
    whole = tmp_path / "whole.safetensors"
    info = fit_sup(tools.SCRIPTED, whole, TINY_SUP, seed=0, board=board)
    assert info["budget"] in TINY_SUP.budgets and set(info["validation"]) == set(TINY_SUP.budgets)
    scheduler, saved = load_scheduler(whole)
    assert saved["horizon"] == 8 and saved["grasp_max_speed"] == 0.15
    rates = scheduler(np.zeros((3, 30), np.float32), np.zeros((3, 8, 3), np.float32))
    assert set(rates.tolist()) <= {1, 2, 3, 4}

    # killed while solving the second budget's CMDP: the rerun reuses the log, the costs and the first scheduler
    real, calls = tools.train_scheduler, []

    def dies_on_the_second(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(tools, "train_scheduler", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        fit_sup(tools.SCRIPTED, out, TINY_SUP, seed=0, board=board)
    assert (tmp_path / "resumed.safetensors.ckpt.safetensors").exists()
    monkeypatch.setattr(tools, "execute", _no_logging(tools.execute))
    fit_sup(tools.SCRIPTED, out, TINY_SUP, seed=0, board=board)
    assert calls == [0.1, 0.8, 0.8]   # the first budget was not solved again
    a, b = load_checkpoint(whole), load_checkpoint(out)
    assert a["budget"] == b["budget"] and a["validation"] == b["validation"]
    for key in ("mean", "std"):
        assert torch.equal(a["scheduler"][key], b["scheduler"][key])
    for x, y in zip(a["scheduler"]["q"].values(), b["scheduler"]["q"].values(), strict=True):
        assert torch.equal(x, y)


def _no_logging(execute):
    """``execute`` that refuses to log (record=True): a resumed run must not roll out the log again."""

    def guarded(*args, **kwargs):
        assert not kwargs.get("record"), "the logged rollouts were collected again"
        return execute(*args, **kwargs)

    return guarded


def test_bad_input_is_one_line_and_exit_2(cli, demos, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    code, _, err = cli("embodied", "evaluate", "--policy", "scripted", "--episodes", 2)
    assert code == 2 and "exactly one of --scheduler and --rate" in err
    code, _, err = cli("embodied", "evaluate", "--policy", "scripted", "--rate", 5)
    assert code == 2 and "--rate must be one of" in err
    code, _, err = cli("embodied", "evaluate", "--policy", tmp_path / "missing.safetensors", "--rate", 2)
    assert code == 2 and "policy file not found" in err
    code, _, err = cli("embodied", "evaluate", "--policy", junk, "--rate", 2)
    assert code == 2 and "cannot read checkpoint" in err
    other_version = tmp_path / "other.safetensors"
    save_checkpoint(other_version, {"format": tools.POLICY_FORMAT, "config": {"lidar_beams": 64}, "weights": {}})
    code, _, err = cli("embodied", "evaluate", "--policy", other_version, "--rate", 2)
    assert code == 2 and "does not fit this version's ChunkPolicy" in err
    code, _, err = cli("embodied", "evaluate", "--policy", "scripted", "--scheduler", junk)
    assert code == 2 and "cannot read checkpoint" in err
    code, _, err = cli("embodied", "evaluate", "--policy", "scripted", "--rate", 2, "--split", "holiday")
    assert code == 2 and "unknown tabletop split" in err
    code, _, err = cli("embodied", "train-policy", "--demos", demos, "--encoder", "lidar")
    assert code == 2 and "unknown encoder" in err
    code, _, err = cli("embodied", "train-policy", "--demos", junk)
    assert code == 2 and "not a readable .npz" in err
    code, _, err = cli("embodied", "sup", "--policy", "scripted", "--budgets", "small,large")
    assert code == 2 and "bad --budgets" in err
    code, _, err = cli("embodied", "sup", "--policy", "scripted", "--budgets", "0,0.1")
    assert code == 2 and "budgets must be positive" in err
    code, _, err = cli("embodied", "make-demos", "--out", tmp_path / "d.npz", "--view-size", 4)
    assert code == 2 and "view_size" in err


def test_a_scheduler_for_other_chunks_is_refused(tmp_path, demos):
    whole = tmp_path / "s.safetensors"
    fit_sup(tools.SCRIPTED, whole, TINY_SUP, seed=0, board=ProgressBoard(enabled=False))
    policy = ChunkPolicy(PolicyConfig(horizon=4, view_size=16, encoder="objects", object_dim=16))
    save_checkpoint(tmp_path / "p.safetensors", {"format": tools.POLICY_FORMAT, "config": vars(policy.cfg),
                                                 "weights": policy.state_dict()})
    with pytest.raises(UserError, match="chunks of 8 waypoints; the policy's have 4"):
        tools.evaluate(tmp_path / "p.safetensors", 2, "train", 0, scheduler_path=whole)
