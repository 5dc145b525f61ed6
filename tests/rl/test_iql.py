import pytest
import torch

from nanorepro.rl.iql import IQL, IQLConfig, awr_weights, expectile_loss
from nanorepro.rl.sac import TanhGaussianActor


def test_expectile_loss_by_hand_and_its_minimiser_is_the_expectile():
    diff = torch.tensor([1.0, -2.0])
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.7 * 1 + 0.3 * 4) / 2)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (diff**2).mean().item())
    # the tau-expectile of {0, 1} (equal mass) solves tau (1 - e) = (1 - tau) e, so e = tau
    samples = torch.tensor([0.0, 1.0])
    v = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.5)
    for _ in range(300):
        loss = expectile_loss(samples - v, 0.9)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert v.item() == pytest.approx(0.9, abs=1e-3)


def test_awr_weights_are_clipped_and_carry_no_gradient():
    adv = torch.tensor([-1.0, 0.0, 10.0], requires_grad=True)
    w = awr_weights(adv, beta=1.0, max_weight=5.0)
    assert w.tolist() == pytest.approx([torch.exp(torch.tensor(-1.0)).item(), 1.0, 5.0])
    assert not w.requires_grad


def test_actor_log_prob_matches_the_sampled_log_prob():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0]), hidden=16, layers=1)
    obs = torch.randn(64, 3)
    act, logp = actor.sample(obs)
    assert torch.allclose(actor.log_prob(obs, act), logp, atol=1e-3)


def test_iql_prefers_the_rewarded_action_in_an_offline_bandit():
    torch.manual_seed(0)
    n = 512
    obs = torch.randn(n, 2)
    good = torch.rand(n) < 0.3                            # 30% of the logged actions are the good one
    act = torch.where(good, 0.5, -0.5)[:, None] + 0.05 * torch.randn(n, 1)
    batch = {"obs": obs, "act": act, "rew": good.float(), "next_obs": obs, "done": torch.ones(n)}
    agent = IQL(2, 1, -1.0, 1.0, IQLConfig(hidden=32, layers=2, lr=3e-3, beta=3.0))
    for _ in range(400):
        agent.update(batch)
    q_good = torch.min(*agent.critic(obs, torch.full((n, 1), 0.5))).mean().item()
    q_bad = torch.min(*agent.critic(obs, torch.full((n, 1), -0.5))).mean().item()
    assert q_good == pytest.approx(1.0, abs=0.1) and q_bad == pytest.approx(0.0, abs=0.1)
    # a unimodal policy fitted with weights exp(3 A) lands near their weighted mean (~0.3);
    # behaviour cloning (equal weights) lands near the data mean, -0.2
    assert agent.act(obs).mean().item() > 0.1
