"""`nanorepro embodied vlgor`: offline RL on demonstrations + imagined counterfactual rollouts, resumable per stage."""

import dataclasses

import numpy as np
import pytest
import torch

from nanorepro.common.progress import ProgressBoard
from nanorepro.embodied import tools
from nanorepro.embodied.demos import load_demos, save_demos
from nanorepro.embodied.offline_rl import TRANSITION_KEYS
from nanorepro.embodied.world_model import StateWorldModel
from nanorepro.envs.tabletop import VOCAB

TINY = ["--set", "wm_steps=2", "--set", "iql_steps=2", "--set", "chunks=3", "--set", "d_model=16", "--set", "layers=1",
        "--set", "max_steps=16", "--set", "policy_batch=16"]
TINY_CFG = tools.VlgorToolConfig(chunks=3, wm_steps=2, generator_steps=3, generator_batch=4, d_model=16, layers=1,
                                 imagined=6, iql_steps=2, policy_steps=3, policy_batch=16, eval_tasks=2, max_steps=16)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("vlgor_tool") / "demos.npz"
    tools.make_demo_file(path, episodes=6, split="train", seed=0, horizon=4, view_size=16)
    return path


def test_vlgor_from_the_shell_writes_a_policy_and_compares_it_with_real_data_only(cli, demos, tmp_path):
    out = tmp_path / "vlgor.safetensors"
    code, text, err = cli("embodied", "vlgor", "--demos", demos, "--out", out, "--imagined", 6,
                          "--generator-steps", 3, "--policy-steps", 3, "--eval-tasks", 2, *TINY)
    assert code == 0, err
    assert "imagined 6 rollouts from 6 demonstrations" in text and "IQL, real data only" in text
    assert (tmp_path / "vlgor.safetensors.rollouts.png").exists()
    assert not (tmp_path / "vlgor.safetensors.ckpt.safetensors").exists()
    policy = tools.load_policy(out)
    assert policy.cfg.encoder == "objects" and policy.cfg.horizon == 4 and policy.cfg.view_size == 16
    saved = tools.load_checkpoint(out)
    assert set(saved["success"]) == {"vlgor", "real_rl"}
    assert all(set(s) == {"train", "unseen"} for s in saved["success"].values())
    assert saved["imagined"]["rollouts"] == 6 and 0.0 <= saved["imagined"]["kept"] <= 1.0
    kept = tools.load_checkpoint(tmp_path / "vlgor.safetensors.imagined.safetensors")
    assert kept["format"] == tools.IMAGINED_FORMAT and set(kept["transitions"]) == set(TRANSITION_KEYS)
    assert all(len(v) == saved["imagined"]["transitions"] for v in kept["transitions"].values())


def test_a_run_killed_while_training_the_policies_resumes_to_the_same_policies(demos, tmp_path, monkeypatch,
                                                                               refuse):
    board = ProgressBoard(enabled=False)
    whole = tools.train_vlgor(demos, tmp_path / "whole.safetensors", TINY_CFG, 1, board)

    real, calls = tools.fit_policy, []

    def dies_in_the_second_policy(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(tools, "fit_policy", dies_in_the_second_policy)
    with pytest.raises(KeyboardInterrupt):
        tools.train_vlgor(demos, out, TINY_CFG, 1, board)
    saved = tools.load_checkpoint(tmp_path / "resumed.safetensors.ckpt.safetensors")
    assert "policy_vlgor" in saved and "policy_real_rl" not in saved
    for stage in (StateWorldModel, tools.RolloutGenerator):
        monkeypatch.setattr(stage, "fit", refuse(f"{stage.__name__} was trained again"))
    monkeypatch.setattr(tools, "imagine", refuse("the rollouts were imagined again"))
    resumed = tools.train_vlgor(demos, out, TINY_CFG, 1, board)
    assert len(calls) == 3 and resumed["success"] == whole["success"] and resumed["imagined"] == whole["imagined"]
    a, b = tools.load_policy(tmp_path / "whole.safetensors"), tools.load_policy(out)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_with_no_imagined_chunk_kept_vlgor_trains_exactly_the_real_data_policy(demos, tmp_path, monkeypatch):
    """The kept imagined chunks are the only difference between the two policies."""
    real, trained = tools.fit_policy, []

    def spy(policy, pools, *args, **kwargs):
        out = real(policy, pools, *args, **kwargs)
        trained.append((len(pools), {k: v.clone() for k, v in policy.state_dict().items()}))
        return out

    monkeypatch.setattr(tools, "filter_thresholds", lambda *args: (-1.0, -1.0))
    monkeypatch.setattr(tools, "fit_policy", spy)
    info = tools.train_vlgor(demos, tmp_path / "p.safetensors", TINY_CFG, 0, ProgressBoard(enabled=False))
    assert info["imagined"]["kept"] == 0.0 and info["imagined"]["transitions"] == 0
    (pools_vlgor, vlgor), (pools_real, real_only) = trained
    assert pools_vlgor == pools_real == 1
    assert all(torch.equal(vlgor[k], real_only[k]) for k in vlgor)


def test_a_proportional_mix_draws_imagined_rows_as_often_as_each_demonstration_row(demos, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(tools, "fit_policy", lambda policy, pools, *args, **kwargs: seen.append((pools, args[4])))
    cfg = dataclasses.replace(TINY_CFG, mix="proportional", compare=False, eval_tasks=0)
    info = tools.train_vlgor(demos, tmp_path / "p.safetensors", cfg, 0, ProgressBoard(enabled=False))
    (pools, fractions), = seen
    kept = info["imagined"]["transitions"]
    assert kept > 0 and [len(p) for p in pools] == [len(load_demos(demos)["state"]), kept]
    assert fractions == pytest.approx([len(pools[0]) / (len(pools[0]) + kept), kept / (len(pools[0]) + kept)])



def test_bad_input_is_one_line_and_exit_2(cli, demos, tmp_path):
    data = load_demos(demos)
    foreign = dict(data, instruction=np.where(np.arange(16) == 0, VOCAB["ball"], data["instruction"]))
    save_demos(tmp_path / "foreign.npz", foreign)
    code, _, err = cli("embodied", "vlgor", "--demos", tmp_path / "foreign.npz")
    assert code == 2 and "is not one of the Tabletop suite's task instructions" in err and len(err.splitlines()) == 1
    tools.make_demo_file(tmp_path / "novel.npz", episodes=3, split="novel", seed=0, horizon=4, view_size=16)
    code, _, err = cli("embodied", "vlgor", "--demos", tmp_path / "novel.npz")
    assert code == 2 and "no push or place demonstration" in err
    tools.make_demo_file(tmp_path / "odd.npz", episodes=3, split="train", seed=0, horizon=4, view_size=12)
    code, _, err = cli("embodied", "vlgor", "--demos", tmp_path / "odd.npz")
    assert code == 2 and "multiple of 8" in err
    tools.make_demo_file(tmp_path / "one.npz", episodes=1, split="train", seed=0, horizon=4, view_size=16)
    code, _, err = cli("embodied", "vlgor", "--demos", tmp_path / "one.npz")
    assert code == 2 and "too few" in err
    code, _, err = cli("embodied", "vlgor", "--demos", demos, "--set", "held_out_fraction=1.5")
    assert code == 2 and "held_out_fraction" in err
    code, _, err = cli("embodied", "vlgor", "--demos", demos, "--set", "mix=mostly")
    assert code == 2 and "unknown mix 'mostly'" in err
    code, _, err = cli("embodied", "vlgor", "--demos", demos, "--set", "generator_stps=3")
    assert code == 2 and "generator_stps" in err
