"""Continuous-control imitation: losses by hand, the box penalty's gradient, absorbing states, demo files, SAC."""

import numpy as np
import pytest
import torch

from nanorepro.cli import main
from nanorepro.common.errors import UserError
from nanorepro.imitation import BC, Budget, DualQDM, ImitationConfig, load_demos, save_demos
from nanorepro.imitation.demos import FIELDS, Demos, bundled_demos_path
from nanorepro.imitation.learners import (
    box_penalty,
    chi2_penalty,
    discriminator_loss,
    iq_objective,
    make_learner,
)
from nanorepro.rl.online import SACLearner, add_flag, run_online, with_absorbing
from nanorepro.rl.sac import SAC, SACConfig

# --------------------------------------------------------------------------- losses on a tiny batch

Q = torch.tensor([1.0, 2.0, 0.5, -1.0])  # rows 0-1 expert, rows 2-3 replay
V = torch.tensor([0.5, 1.0, 1.5, 0.0])
NEXT_V = torch.tensor([1.0, 2.0, -1.0, 3.0])
DONE = torch.tensor([0.0, 1.0, 0.0, 0.0])
GAMMA = 0.5
# r_hat = Q - gamma (1 - d) V'  =  [1 - 0.5, 2 - 0, 0.5 + 0.5, -1 - 1.5] = [0.5, 2, 1, -2.5]
R_HAT = [0.5, 2.0, 1.0, -2.5]


def test_iq_objective_chi2_on_expert_by_hand():
    loss, info = iq_objective(Q, V, NEXT_V, DONE, 2, GAMMA, "mix", lambda r: chi2_penalty(r[:2], 0.5))
    expert_term = -(0.5 + 2.0) / 2  # -1.25
    # V - gamma (1 - d) V' = [0.5 - 0.5, 1 - 0, 1.5 + 0.5, 0 - 1.5] -> mean 0.625
    value = (0.0 + 1.0 + 2.0 - 1.5) / 4
    chi2 = (0.25 + 4.0) / 2 / (4 * 0.5)  # 1.0625
    assert loss.item() == pytest.approx(expert_term + value + chi2)
    assert info["expert_term"].item() == pytest.approx(-1.25)
    assert info["value_term"].item() == pytest.approx(0.375)


def test_iq_objective_chi2_on_mixture_and_v0_by_hand():
    loss, _ = iq_objective(Q, V, NEXT_V, DONE, 2, GAMMA, "v0", lambda r: chi2_penalty(r, 0.5))
    value = (1 - GAMMA) * V.mean().item()  # 0.5 * 0.75
    chi2 = sum(r * r for r in R_HAT) / 4 / 2.0  # (0.25 + 4 + 1 + 6.25) / 4 / 2
    assert loss.item() == pytest.approx(-1.25 + value + chi2)


def test_dual_qdm_box_penalty_by_hand():
    # box [-1, 1]: violations 0, 1 (2 > 1), 0, 1.5 (-2.5 < -1) -> mean of squares (1 + 2.25) / 4
    assert box_penalty(torch.tensor(R_HAT), -1.0, 1.0).item() == pytest.approx(3.25 / 4)
    loss, _ = iq_objective(Q, V, NEXT_V, DONE, 2, GAMMA, "mix", lambda r: 0.5 * box_penalty(r, -1.0, 1.0))
    assert loss.item() == pytest.approx(-1.25 + 0.375 + 0.5 * 3.25 / 4)


def test_box_penalty_gradient_pushes_the_implied_reward_back_into_the_box():
    r = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5], requires_grad=True)
    box_penalty(r, -1.0, 1.0).backward()
    grad = r.grad.tolist()
    assert grad[0] < 0  # below l: descent raises r
    assert grad[1:4] == [0.0, 0.0, 0.0]  # inside (and on) the box: no force
    assert grad[4] > 0  # above u: descent lowers r
    assert grad[0] == pytest.approx(2 * (-3.0 + 1.0) / 5)  # d/dr relu(l - r)^2 / n = -2 (l - r) / n


def test_discriminator_loss_with_a_linear_discriminator():
    w = torch.tensor([3.0, 4.0])  # logits = w . (s, a): gradient norm |w| = 5 everywhere

    def logits(obs, act):
        return torch.cat([obs, act], -1) @ w

    zeros = {"obs": torch.zeros(2, 1), "act": torch.zeros(2, 1)}
    bce, penalty = discriminator_loss(logits, zeros, zeros, 10.0, torch.Generator().manual_seed(0))
    assert bce.item() == pytest.approx(2 * np.log(2))  # logits 0: BCE log 2 for each side
    assert penalty.item() == pytest.approx(10.0 * (5 - 1) ** 2)


# --------------------------------------------------------------------------- absorbing states


def test_absorbing_wrapping_redirects_terminations_and_adds_self_loops():
    batch = {"obs": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "act": torch.tensor([[0.1], [0.2]]),
             "rew": torch.tensor([1.0, 5.0]), "next_obs": torch.tensor([[3.0, 4.0], [9.0, 9.0]]),
             "terminated": torch.tensor([False, True])}
    out = with_absorbing(batch, torch.tensor([[-0.7]]))
    absorbing = [0.0, 0.0, 1.0]
    assert out["obs"].tolist() == [[1, 2, 0], [3, 4, 0], absorbing]
    assert out["next_obs"].tolist() == [[3, 4, 0], absorbing, absorbing]
    assert out["act"][:, 0].tolist() == pytest.approx([0.1, 0.2, -0.7])
    assert out["rew"].tolist() == [1.0, 5.0, 0.0]
    assert out["done"].tolist() == [0.0, 0.0, 0.0]  # nothing is done: the value of s_a is learned
    assert add_flag(torch.zeros(2, 3, 4)).shape == (2, 3, 5)


# --------------------------------------------------------------------------- demo files


def _demos(T=6, starts=(0, 3)) -> Demos:
    rng = np.random.default_rng(0)
    term = np.zeros(T, bool)
    term[2] = True  # episode 0 falls, episode 1 hits the time limit
    trunc = np.zeros(T, bool)
    trunc[-1] = True
    return Demos(observations=rng.normal(size=(T, 3)).astype(np.float32),
                 actions=rng.uniform(-2, 2, (T, 1)).astype(np.float32),
                 next_observations=rng.normal(size=(T, 3)).astype(np.float32),
                 rewards=np.arange(T, dtype=np.float32), terminated=term, truncated=trunc,
                 episode_starts=np.asarray(starts, np.int64), meta={"env_id": "Pendulum-v1"})


def _write_raw(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_demo_file_round_trip(tmp_path):
    import gymnasium as gym

    path = save_demos(tmp_path / "d.npz", _demos())
    demos = load_demos(path, gym.make("Pendulum-v1"))
    assert demos.episode_returns().tolist() == [0 + 1 + 2, 3 + 4 + 5]
    assert demos.meta["env_id"] == "Pendulum-v1"
    picked = demos.subsample(2, 2, np.random.default_rng(0))
    assert len(picked["obs"]) in (2, 3, 4)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("rewards"), "wrong keys"),
    (lambda a: a.update(extra=np.zeros(3)), "wrong keys"),
    (lambda a: a.update(actions=a["actions"].astype(np.float64)), "'actions' must be float32"),
    (lambda a: a.update(rewards=a["rewards"][:, None]), "'rewards' must be float32 with 1 dims"),
    (lambda a: a["observations"].__setitem__((1, 1), np.nan), "contains NaN"),
    (lambda a: a.update(next_observations=a["next_observations"][:4]), "has 4 rows"),
    (lambda a: a.update(episode_starts=np.array([1, 3])), "episode_starts"),
    (lambda a: a["truncated"].__setitem__(-1, False), "does not end with terminated or truncated"),
])
def test_demo_validation_names_the_problem(tmp_path, change, message):
    demos = _demos()
    arrays = {k: getattr(demos, k).copy() for k in FIELDS}
    change(arrays)
    path = _write_raw(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message):
        load_demos(path)


def test_demos_that_do_not_fit_the_env_are_refused(tmp_path):
    import gymnasium as gym

    path = save_demos(tmp_path / "d.npz", _demos())
    with pytest.raises(UserError, match="observations have shape"):
        load_demos(path, gym.make("MountainCarContinuous-v0"))
    demos = _demos()
    wide = Demos(**{k: getattr(demos, k) for k in FIELDS if k != "actions"},
                 actions=demos.actions * 10, meta={})
    path = save_demos(tmp_path / "wide.npz", wide)
    with pytest.raises(UserError, match="outside the env's action box"):
        load_demos(path, gym.make("Pendulum-v1"))


def test_a_pickle_or_garbage_file_is_refused(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable"):
        load_demos(tmp_path / "x.npz")
    with pytest.raises(UserError, match="does not exist"):
        load_demos(tmp_path / "missing.npz")


def test_bundled_demos_are_valid_and_expert_beats_random():
    import gymnasium as gym

    for env in ("HalfCheetah-v5", "Hopper-v5"):
        demos = load_demos(bundled_demos_path(env), gym.make(env))
        assert demos.n_episodes >= 5
        assert demos.meta["expert_return"] > demos.meta["random_return"] + 1000
        assert demos.episode_returns().mean() == pytest.approx(demos.meta["expert_return"], rel=1e-4)
    with pytest.raises(UserError, match="no bundled demonstrations"):
        bundled_demos_path("Ant-v5")


# --------------------------------------------------------------------------- SAC and the learners


def test_sac_learns_pendulum():
    torch.manual_seed(0)
    agent = SAC(3, 1, -2 * torch.ones(1), 2 * torch.ones(1),
                SACConfig(hidden=128, batch_size=128, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3))
    curve, _ = run_online("Pendulum-v1", SACLearner(agent, 128),
                          Budget(env_steps=5000, start_steps=500, eval_every=1000, eval_episodes=5), seed=0)
    returns = [row["return_mean"] for row in curve]
    # random play scores about -1200; a swung-up, balanced pendulum about -150
    assert max(returns[-2:]) > -400, returns


def test_make_experts_command_writes_valid_demos(tmp_path, capsys):
    out = tmp_path / "pendulum.npz"
    with pytest.raises(SystemExit) as exit_info:
        main(["imitation", "make-experts", "Pendulum-v1", "--steps", "400", "--episodes", "2", "--hidden", "16",
              "--out", str(out)])
    assert exit_info.value.code == 0
    demos = load_demos(out)
    assert demos.n_episodes == 2 and len(demos.rewards) == 400  # Pendulum: 200-step episodes
    assert {"expert_return", "random_return", "versions", "seed", "env_id"} <= set(demos.meta)
    with pytest.raises(SystemExit) as exit_info:
        main(["imitation", "make-experts", "NoSuchEnv-v0", "--out", str(tmp_path / "x.npz")])
    assert exit_info.value.code == 2
    assert "NoSuchEnv" in capsys.readouterr().err


def test_make_experts_resumes_an_interrupted_run_from_its_checkpoint(tmp_path, monkeypatch):
    from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
    from nanorepro.imitation import experts

    cfg = experts.ExpertConfig(steps=600, start_steps=100, eval_every=200, hidden=16, batch_size=32, episodes=1)
    out, saves = tmp_path / "pendulum.npz", []

    def save_then_crash(path, state):
        save_checkpoint(path, state)
        saves.append(state["loop"]["step"])
        if saves == [200, 400]:
            raise KeyboardInterrupt

    monkeypatch.setattr(experts, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        experts.make_experts("Pendulum-v1", out, cfg)
    ckpt = experts.checkpoint_path(out)
    assert ckpt.exists() and not out.exists()
    interrupted = load_checkpoint(ckpt)["loop"]["curve"]
    demos = experts.make_experts("Pendulum-v1", out, cfg)
    assert saves == [200, 400, 600]  # the second run continued at 400 rather than starting again
    curve = demos.meta["expert"]["learning_curve"]
    assert [step for step, _ in curve] == [200, 400, 600]
    assert [ret for _, ret in curve[:2]] == [round(row["return_mean"], 1) for row in interrupted]
    assert not ckpt.exists() and load_demos(out).n_episodes == 1


def test_bc_reproduces_the_demonstrated_actions(tmp_path):
    demos = _demos()
    clipped = Demos(**{k: getattr(demos, k) for k in FIELDS if k != "actions"},
                    actions=np.clip(demos.actions, -1.5, 1.5), meta=demos.meta)
    cfg = ImitationConfig(hidden=64, batch_size=16, bc_steps=5000, subsample=1, demo_episodes=2)
    fit = BC(cfg).fit("Pendulum-v1", clipped, Budget(env_steps=200, start_steps=0, eval_every=100,
                                                     eval_episodes=1, eval_max_steps=5))
    obs = torch.from_numpy(clipped.observations)  # the env's own observations (no absorbing flag)
    assert torch.allclose(fit.policy(obs), torch.from_numpy(clipped.actions), atol=0.1)
    assert [row["env_step"] for row in fit.curve] == [100, 200]


@pytest.mark.parametrize("name", ["gail", "iq_e", "iq_m", "dqdm"])
def test_online_learners_run_through_one_interface(name):
    cfg = ImitationConfig(hidden=16, batch_size=8, subsample=1, demo_episodes=2)
    fit = make_learner(name, cfg).fit("Pendulum-v1", _demos(), Budget(env_steps=60, start_steps=20,
                                                                     eval_every=30, eval_episodes=2,
                                                                     eval_max_steps=5), seed=1)
    assert [row["env_step"] for row in fit.curve] == [30, 60]
    action = fit.policy(torch.zeros(4, 3))
    assert action.shape == (4, 1) and action.abs().max() <= 2.0
    with pytest.raises(UserError, match="unknown learner"):
        make_learner("nope")


@pytest.mark.parametrize("learn", [False, True])
def test_temperature_is_fixed_unless_learned_and_the_curve_carries_update_diagnostics(learn):
    cfg = ImitationConfig(hidden=16, batch_size=8, subsample=1, demo_episodes=2, temperature=0.5,
                          learn_temperature=learn)
    fit = DualQDM(cfg).fit("Pendulum-v1", _demos(), Budget(env_steps=60, start_steps=20, eval_every=30,
                                                              eval_episodes=2, eval_max_steps=5), seed=1)
    alphas = [row["update"]["alpha"] for row in fit.curve]
    assert {"r_hat_expert", "r_hat_replay", "penalty", "entropy"} <= set(fit.curve[-1]["update"])
    if learn:  # 40 steps of SAC's temperature update have moved it
        assert alphas[0] != pytest.approx(0.5) and alphas[1] != pytest.approx(alphas[0])
    else:
        assert alphas == pytest.approx([0.5, 0.5])


def test_dual_qdm_is_importable_from_the_package_and_refuses_mismatched_demos():
    with pytest.raises(UserError, match="observations have shape"):
        DualQDM().fit("MountainCarContinuous-v0", _demos(), Budget(env_steps=10, start_steps=5, eval_every=5))


def test_experiment_resumes_finished_learners_and_an_interrupted_one_from_its_checkpoint(tmp_path, monkeypatch):
    from dataclasses import replace

    from nanorepro.common.config import config_hash
    from nanorepro.common.experiment import RunContext
    from nanorepro.common.progress import ProgressBoard
    from nanorepro.imitation.mujoco_experiment import DEFAULT_SETTINGS, EXPERIMENT, mujoco_il_run

    cfg = replace(EXPERIMENT.profiles["smoke"].config, settings=DEFAULT_SETTINGS[:1], learners=("bc", "dqdm"))
    finished = {"curve": [], "normalised": 0.123, "return": 1.0, "wall_s": 0.0}
    saved = []
    real_save = RunContext.save_checkpoint

    def save_then_crash(self, state):
        real_save(self, state)
        saved.append(state["partial"] and state["partial"]["loop"]["step"])
        if saved == [150]:  # Dual Q-DM's first evaluation (smoke: 300 env steps, one every 150)
            raise KeyboardInterrupt

    monkeypatch.setattr(RunContext, "save_checkpoint", save_then_crash)
    with ProgressBoard(enabled=False) as board:
        ctx = RunContext(seed=0, device=torch.device("cpu"), board=board, checkpoint_path=tmp_path / "c.ckpt",
                         config_hash=config_hash(cfg))
        real_save(ctx, {"finished": {"HalfCheetah-v5/bc": finished}, "partial": None})
        with pytest.raises(KeyboardInterrupt):
            mujoco_il_run(cfg, ctx)
        metrics = mujoco_il_run(cfg, ctx)
    learners = metrics["envs"]["HalfCheetah-v5"]["learners"]
    assert ctx.resumed and learners["bc"] == finished  # reused, not refitted
    assert saved == [150, 300, None]  # Dual Q-DM continued after its first evaluation, then finished
    assert [row["env_step"] for row in learners["dqdm"]["curve"]] == [150, 300]
