"""`nanorepro embodied vla-mbpo`: a camera policy fine-tuned in the pixel world model, resumable per round."""

import dataclasses

import pytest
import torch

from nanorepro.common.progress import ProgressBoard
from nanorepro.embodied import tools
from nanorepro.embodied.vla_mbpo import ImaginedPPO

TINY = ["--set", "vq_steps=2", "--set", "wm_steps=2", "--set", "imagined_chunks=4", "--set", "held_out_demos=2",
        "--set", "eval_tasks=2", "--set", "max_steps=16"]
TINY_CFG = tools.VlaMbpoToolConfig(rounds=2, real_tasks=2, iterations=2, vq_steps=2, wm_steps=2, imagined_chunks=4,
                                   held_out_demos=2, eval_tasks=2, max_steps=16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vla_mbpo_tool")
    demos, camera, objects = root / "demos.npz", root / "camera.safetensors", root / "objects.safetensors"
    tools.make_demo_file(demos, episodes=3, split="train", seed=0, horizon=4, view_size=16)
    board = ProgressBoard(enabled=False)
    tools.train_policy(demos, camera, tools.PolicyConfig(), tools.BCConfig(steps=3, batch=8), 0, board)
    tools.train_policy(demos, objects, tools.PolicyConfig(encoder="objects", object_dim=16),
                       tools.BCConfig(steps=2, batch=8), 0, board)
    return demos, camera, objects


def test_vla_mbpo_from_the_shell_writes_a_fine_tuned_policy(cli, files, tmp_path):
    demos, camera, _ = files
    out = tmp_path / "tuned.safetensors"
    code, text, err = cli("embodied", "vla-mbpo", "--policy", camera, "--demos", demos, "--out", out, "--rounds", 2,
                          "--real-tasks", 2, "--iterations", 2, *TINY)
    assert code == 0, err
    assert "success on 2 training tasks" in text and out.exists()
    assert (tmp_path / "tuned.safetensors.curve.png").exists()
    assert not (tmp_path / "tuned.safetensors.ckpt.safetensors").exists()
    base, tuned = tools.load_policy(camera), tools.load_policy(out)
    assert tuned.cfg == base.cfg
    assert any(not torch.equal(a, b) for a, b in zip(base.state_dict().values(), tuned.state_dict().values(),
                                                     strict=True)), "PPO left the policy unchanged"
    saved = tools.load_checkpoint(out)
    assert len(saved["curve"]) == 3 and saved["curve"][0][0] == 0 and saved["curve"][2][0] > saved["curve"][1][0] > 0


@pytest.mark.parametrize("refit_steps", [0, 2])
def test_a_run_killed_after_a_round_resumes_to_the_same_policy(files, tmp_path, monkeypatch, refit_steps, refuse):
    """With ``refit_steps`` the world model changes every round: the resumed run must carry it and the real chunks."""
    demos, camera, _ = files
    board = ProgressBoard(enabled=False)
    cfg = dataclasses.replace(TINY_CFG, refit_steps=refit_steps)
    whole = tools.fine_tune_vla_mbpo(camera, demos, tmp_path / "whole.safetensors", cfg, 3, board)

    real, calls = ImaginedPPO.improve, []

    def dies_in_the_second_round(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self)

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(ImaginedPPO, "improve", dies_in_the_second_round)
    with pytest.raises(KeyboardInterrupt):
        tools.fine_tune_vla_mbpo(camera, demos, out, cfg, 3, board)
    assert tools.load_checkpoint(tmp_path / "resumed.safetensors.ckpt.safetensors")["round"] == 1
    monkeypatch.setattr(tools.PixelWorldModel, "fit", refuse("the world model was trained again"))
    resumed = tools.fine_tune_vla_mbpo(camera, demos, out, cfg, 3, board)
    assert len(calls) == 3 and resumed["curve"] == whole["curve"]
    a, b = tools.load_policy(tmp_path / "whole.safetensors"), tools.load_policy(out)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)



def test_bad_input_is_one_line_and_exit_2(cli, files, tmp_path):
    demos, camera, objects = files
    code, _, err = cli("embodied", "vla-mbpo", "--policy", objects, "--demos", demos)
    assert code == 2 and "reads the object poses" in err
    other = tmp_path / "other.npz"
    tools.make_demo_file(other, episodes=1, split="train", seed=0, horizon=5, view_size=16)
    code, _, err = cli("embodied", "vla-mbpo", "--policy", camera, "--demos", other)
    assert code == 2 and "chunks of 5" in err
    code, _, err = cli("embodied", "vla-mbpo", "--policy", camera, "--demos", demos, "--branch", 0)
    assert code == 2 and "at least 1" in err
    code, _, err = cli("embodied", "vla-mbpo", "--policy", camera, "--demos", demos, "--set", "ppo_rate=1")
    assert code == 2 and "ppo_rate" in err
