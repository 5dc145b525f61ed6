"""The practitioner's commands: `imitation train` / `imitation evaluate` on a user's env and demo file."""

import numpy as np
import pytest
import torch

from nanorepro.common.checkpoint import save_checkpoint
from nanorepro.common.progress import ProgressBoard
from nanorepro.imitation import Budget, save_demos, tools
from nanorepro.imitation.demos import Demos
from nanorepro.rl.online import add_flag

TINY = ["--set", "hidden=16", "--set", "batch_size=8"]


def _demo_file(tmp_path, expert_return=-150.0, random_return=-1250.0):
    """Six Pendulum transitions in two episodes, with a sidecar that records expert and random returns."""
    rng = np.random.default_rng(0)
    terminated, truncated = np.zeros(6, bool), np.zeros(6, bool)
    truncated[[2, 5]] = True
    demos = Demos(observations=rng.normal(size=(6, 3)).astype(np.float32),
                  actions=rng.uniform(-1.5, 1.5, (6, 1)).astype(np.float32),
                  next_observations=rng.normal(size=(6, 3)).astype(np.float32),
                  rewards=np.full(6, -1.0, np.float32), terminated=terminated, truncated=truncated,
                  episode_starts=np.array([0, 3], np.int64),
                  meta={"env_id": "Pendulum-v1", "expert_return": expert_return, "random_return": random_return})
    return save_demos(tmp_path / "pendulum.npz", demos), demos



def test_train_writes_a_policy_that_evaluate_reloads_exactly(tmp_path, cli):
    demo_path, _ = _demo_file(tmp_path)
    policy = tmp_path / "policy.safetensors"
    code, out, err = cli(*["imitation", "train", "Pendulum-v1", "--demos", str(demo_path), "--learner", "dqdm",
                           "--steps", "60", "--start-steps", "20", "--eval-every", "30", "--eval-episodes", "2",
                           "--out", str(policy), *TINY])
    assert code == 0, err
    assert policy.exists() and (tmp_path / "policy.safetensors.curve.png").stat().st_size > 1000
    assert not (tmp_path / "policy.safetensors.ckpt.safetensors").exists()
    _, state = tools.load_policy(policy)
    assert [row["step"] for row in state["curve"]] == [30, 60] and state["learner"] == "dqdm"
    assert (state["config"]["demo_episodes"], state["config"]["subsample"]) == (2, 1)  # every demonstration
    last = state["curve"][-1]
    assert last["normalised"] == pytest.approx((last["return"] + 1250.0) / 1100.0)
    # the training loop's evaluations use seed 10_000 + 1000 * seed: the reloaded actor must score the same
    again = tools.evaluate_policy(policy, "Pendulum-v1", episodes=2, seed=10_000, demos_path=demo_path)
    assert again["return_mean"] == pytest.approx(last["return"], rel=1e-6)
    assert again["normalised"] == pytest.approx(last["normalised"], rel=1e-6)
    code, out, _ = cli(*["imitation", "evaluate", "Pendulum-v1", "--policy", str(policy), "--episodes", "2",
                         "--seed", "10000", "--demos", str(demo_path)])
    assert code == 0 and f"return {last['return']:.1f}" in out and "normalised" in out


def test_bc_policy_file_reproduces_the_demonstrated_actions(tmp_path):
    demo_path, demos = _demo_file(tmp_path)
    cfg = tools.learner_config("Pendulum-v1", ["hidden=64", "batch_size=16", "subsample=1", "demo_episodes=2"])
    with ProgressBoard(enabled=False) as board:
        info = tools.train("Pendulum-v1", demo_path, "bc", tmp_path / "bc.safetensors", cfg,
                           Budget(env_steps=3000, start_steps=0, eval_every=3000, eval_episodes=1), 0, board)
    assert info["evaluations"] == 1
    actor, state = tools.load_policy(tmp_path / "bc.safetensors")
    assert state["absorbing"] and state["obs_dim"] == 4  # Pendulum's 3 + the absorbing flag
    actions = actor.deterministic(add_flag(torch.from_numpy(demos.observations)))
    assert torch.allclose(actions, torch.from_numpy(demos.actions), atol=0.1)


def test_an_interrupted_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    demo_path, _ = _demo_file(tmp_path)
    out, saves = tmp_path / "policy.safetensors", []
    cfg = tools.learner_config("Pendulum-v1", ["hidden=16", "batch_size=8", "subsample=1", "demo_episodes=2"])
    budget = Budget(env_steps=60, start_steps=20, eval_every=30, eval_episodes=2, eval_max_steps=5)

    def save_then_crash(path, state):
        save_checkpoint(path, state)
        if "loop" in state:
            saves.append(state["loop"]["step"])
            if saves == [30]:
                raise KeyboardInterrupt

    monkeypatch.setattr(tools, "save_checkpoint", save_then_crash)
    with ProgressBoard(enabled=False) as board, pytest.raises(KeyboardInterrupt):
        tools.train("Pendulum-v1", demo_path, "iq_m", out, cfg, budget, 0, board)
    assert not out.exists() and (tmp_path / "policy.safetensors.ckpt.safetensors").exists()
    with ProgressBoard(enabled=False) as board:
        tools.train("Pendulum-v1", demo_path, "iq_m", out, cfg, budget, 0, board)
    assert saves == [30, 60]  # continued at 30 instead of starting again
    assert [row["step"] for row in tools.load_policy(out)[1]["curve"]] == [30, 60]
    assert not (tmp_path / "policy.safetensors.ckpt.safetensors").exists()


def test_a_checkpoint_of_other_settings_is_ignored_not_resumed(tmp_path):
    demo_path, _ = _demo_file(tmp_path)
    out = tmp_path / "policy.safetensors"
    save_checkpoint(tmp_path / "policy.safetensors.ckpt.safetensors", {"env_id": "Pendulum-v1", "learner": "gail"})
    cfg = tools.learner_config("Pendulum-v1", ["hidden=16", "batch_size=8", "subsample=1", "demo_episodes=2"])
    messages = []
    with ProgressBoard(enabled=False) as board:
        board.log = messages.append
        tools.train("Pendulum-v1", demo_path, "dqdm", out, cfg,
                    Budget(env_steps=40, start_steps=20, eval_every=40, eval_episodes=1, eval_max_steps=5), 0, board)
    assert any("ignoring" in m for m in messages) and out.exists()


def test_learner_settings_follow_the_experiment_on_its_envs_and_take_overrides():
    cheetah = tools.learner_config("HalfCheetah-v5")
    assert (cheetah.temperature, cheetah.actor_lr, cheetah.hidden) == (1e-3, 3e-4, 128)
    hopper = tools.learner_config("Hopper-v5", ["box_low=-3"])
    assert (hopper.box_low, hopper.box_high, hopper.value_term) == (-3.0, 2.0, "v0")
    assert tools.learner_config("Pendulum-v1").hidden == 256  # ImitationConfig's default elsewhere


@pytest.mark.parametrize("args, message", [
    (["--learner", "nope"], "unknown learner 'nope'"),
    (["--set", "hidden=0"], "invalid ImitationConfig"),
    (["--set", "box_low=2"], "box_low < box_high"),
    (["--set", "nokey=1"], "unknown config key 'nokey'"),
    (["--demo-episodes", "5"], "asked for 5 demonstration episodes; the file has 2"),
])
def test_train_refuses_bad_settings_with_one_line(tmp_path, cli, args, message):
    demo_path, _ = _demo_file(tmp_path)
    code, _, err = cli(*["imitation", "train", "Pendulum-v1", "--demos", str(demo_path), "--steps", "40",
                         "--out", str(tmp_path / "p.safetensors"), *args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.safetensors").exists()


def test_evaluate_refuses_a_foreign_file_and_a_mismatched_env(tmp_path, cli):
    demo_path, _ = _demo_file(tmp_path)
    foreign = tmp_path / "foreign.safetensors"
    save_checkpoint(foreign, {"format": "something else"})
    code, _, err = cli(*["imitation", "evaluate", "Pendulum-v1", "--policy", str(foreign)])
    assert code == 2 and "not a nanorepro imitation policy" in err
    policy = tmp_path / "p.safetensors"
    with ProgressBoard(enabled=False) as board:
        tools.train("Pendulum-v1", demo_path, "bc", policy, tools.learner_config("Pendulum-v1", ["subsample=1"]),
                    Budget(env_steps=10, start_steps=0, eval_every=10, eval_episodes=1, eval_max_steps=2), 0, board)
    code, _, err = cli(*["imitation", "evaluate", "MountainCarContinuous-v0", "--policy", str(policy)])
    assert code == 2 and "was trained on Pendulum-v1" in err


def test_train_without_demos_uses_the_bundled_file_or_says_there_is_none(tmp_path, cli):
    code, _, err = cli(*["imitation", "train", "Pendulum-v1", "--out", str(tmp_path / "p.safetensors")])
    assert code == 2 and "no bundled demonstrations for Pendulum-v1" in err
    code, out, err = cli(*["imitation", "train", "Hopper-v5", "--learner", "bc", "--steps", "20", "--eval-every", "20",
                           "--eval-episodes", "1", "--out", str(tmp_path / "h.safetensors"), "--set", "hidden=16"])
    assert code == 0, err
    assert "normalised" in out  # the bundled sidecar records the expert's and a random policy's returns
