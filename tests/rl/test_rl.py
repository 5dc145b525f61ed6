import math

import pytest
import torch

from nanorepro.nn.mlp import EnsembleMLP
from nanorepro.rl.ensemble import EnsembleConfig, GaussianEnsemble, fit_ensemble
from nanorepro.rl.replay import ReplayBuffer
from nanorepro.rl.sac import SAC, SACConfig


def test_ensemble_members_are_independent():
    net = EnsembleMLP(3, 2, 8, 1, layers=2)
    x = torch.randn(5, 2)
    out = net(x)
    assert out.shape == (3, 5, 1) and not torch.allclose(out[0], out[1])
    with torch.no_grad():
        net.out.weight[1].add_(1.0)  # change member 1 only
    after = net(x)
    assert torch.equal(after[0], out[0]) and torch.equal(after[2], out[2]) and not torch.equal(after[1], out[1])


def test_ensemble_training_reduces_validation_error_and_learns_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2000, 1, generator=g) * 6 - 3
    noise_std = 0.1 + 0.2 * (x > 0).float()  # heteroscedastic
    y = torch.sin(x) + noise_std * torch.randn(x.shape, generator=g)
    cfg = EnsembleConfig(members=3, elites=2, hidden=32, layers=2, max_steps=1500, eval_every=100, patience=50,
                         lr=3e-3)
    ens = GaussianEnsemble(1, 1, cfg)
    ens.set_normalisation(x, y)
    val = {"x": x[1600:], "y": y[1600:]}
    before = ens.mse(val["x"], val["y"]).mean().item()
    info = fit_ensemble(ens, {"x": x[:1600], "y": y[:1600]}, val, generator=g)
    after = min(info["best_val_error"])
    assert after < 0.25 * before
    assert len(info["elites"]) == 2 and set(info["elites"]) <= {0, 1, 2}
    with torch.no_grad():
        _, logstd = ens(torch.tensor([[-2.0], [2.0]]))
    std = logstd.exp()[ens.elite_idx].mean(0).squeeze(-1)
    assert std[1] > 1.5 * std[0]  # it learnt that x > 0 is noisier


def test_replay_buffer_is_fifo_with_wraparound():
    buf = ReplayBuffer(4, {"x": (), "v": (2,)})
    buf.add({"x": torch.arange(3.0), "v": torch.zeros(3, 2)})
    buf.add({"x": torch.arange(3.0, 6.0), "v": torch.ones(3, 2)})
    assert len(buf) == 4 and sorted(buf.data["x"].tolist()) == [2.0, 3.0, 4.0, 5.0]
    sample = buf.sample(64, torch.Generator().manual_seed(0))
    assert set(sample["x"].tolist()) <= {2.0, 3.0, 4.0, 5.0} and sample["v"].shape == (64, 2)
    state = buf.state_dict()
    other = ReplayBuffer(4, {"x": (), "v": (2,)})
    other.load_state_dict(state)
    assert torch.equal(other.data["x"], buf.data["x"]) and other.next == buf.next


def test_sac_log_prob_of_the_box_squashed_gaussian():
    """log pi of a = c + s tanh(x), checked against the density by change of variables."""
    torch.manual_seed(0)
    agent = SAC(3, 1, [0.0], [2.0])
    obs = torch.randn(4, 3)
    a, logp = agent.actor.sample(obs)
    mean, log_std = agent.actor(obs)
    x = torch.atanh(((a - 1.0) / 1.0).clamp(-0.999999, 0.999999))
    base = torch.distributions.Normal(mean, log_std.exp()).log_prob(x).sum(-1)
    expected = base - torch.log(1.0 * (1 - torch.tanh(x) ** 2)).sum(-1)
    assert torch.allclose(logp, expected, atol=1e-3)
    assert ((a >= 0) & (a <= 2)).all()


def test_sac_solves_a_one_step_bandit():
    """Reward -(a - 0.7)^2, terminal: the deterministic action must move to 0.7."""
    torch.manual_seed(0)
    agent = SAC(1, 1, [0.0], [1.0], SACConfig(hidden=32, init_alpha=0.01, learn_alpha=False, actor_lr=3e-3,
                                             critic_lr=3e-3))
    obs = torch.zeros(256, 1)
    for _ in range(600):
        act = torch.rand(256, 1)
        batch = {"obs": obs, "act": act, "rew": -((act.squeeze(-1) - 0.7) ** 2), "next_obs": obs,
                 "done": torch.ones(256)}
        losses = agent.update(batch)
    assert agent.act(torch.zeros(1, 1), deterministic=True).item() == pytest.approx(0.7, abs=0.05)
    assert math.isfinite(losses["critic_loss"].item())
