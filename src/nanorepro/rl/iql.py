"""Implicit Q-learning (Kostrikov et al., 2022): offline RL without querying unseen actions.

One update (written from the paper's equations):

    L_V  = E[ L2^tau(min_j Q'_j(s, a) - V(s)) ],      L2^tau(u) = |tau - 1(u < 0)| u^2   (expectile)
    L_Q  = sum_j E[(r + gamma (1 - d) V(s') - Q_j(s, a))^2]
    L_pi = -E[ min(exp(beta (min_j Q'_j(s, a) - V(s))), w_max) log pi(a|s) ]            (AWR extraction)
    Q'_j <- polyak Q_j + (1 - polyak) Q'_j

Defaults are the paper's locomotion settings (tau = 0.7, beta = 3, w_max = 100). The
critics and the tanh-Gaussian actor are SAC's (``rl.sac``); instruction conditioning is the
caller's: concatenate the instruction's features to the observation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from nanorepro.nn.mlp import mlp
from nanorepro.rl.sac import TanhGaussianActor, TwinQ


@dataclass(frozen=True)
class IQLConfig:
    hidden: int = 256
    layers: int = 2
    gamma: float = 0.99
    expectile: float = 0.7
    beta: float = 3.0          # inverse temperature of the advantage weights
    max_weight: float = 100.0
    polyak: float = 0.005
    lr: float = 3e-4


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """E[|tau - 1(u < 0)| u^2], u = target - prediction: tau > 0.5 weights under-estimates more."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff**2).mean()


def awr_weights(advantage: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """min(exp(beta A), w_max), without gradient."""
    return (beta * advantage.detach()).exp().clamp(max=max_weight)


class IQL(nn.Module):
    """``update(batch)`` on obs, act, rew, next_obs, done tensors; ``act(obs)`` is the actor's mean action."""

    def __init__(self, obs_dim: int, act_dim: int, low, high, config: IQLConfig = IQLConfig()):
        super().__init__()
        low = torch.as_tensor(low, dtype=torch.float32).reshape(act_dim)
        high = torch.as_tensor(high, dtype=torch.float32).reshape(act_dim)
        self.config = config
        self.critic = TwinQ(obs_dim, act_dim, config.hidden, config.layers)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = mlp(obs_dim, config.hidden, 1, config.layers)
        self.actor = TanhGaussianActor(obs_dim, act_dim, low, high, config.hidden, config.layers)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=config.lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, act, rew, next_obs, done = (batch[k] for k in ("obs", "act", "rew", "next_obs", "done"))
        with torch.no_grad():
            q_target = torch.min(*self.critic_target(obs, act))
        v = self.value(obs).squeeze(-1)
        value_loss = expectile_loss(q_target - v, cfg.expectile)
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()

        with torch.no_grad():
            target = rew + cfg.gamma * (1 - done) * self.value(next_obs).squeeze(-1)
        q1, q2 = self.critic(obs, act)
        critic_loss = ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        weights = awr_weights(q_target - v, cfg.beta, cfg.max_weight)
        actor_loss = -(weights * self.actor.log_prob(obs, act)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        with torch.no_grad():
            for p, p_t in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
                p_t.lerp_(p, cfg.polyak)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "actor_loss": actor_loss.detach(), "advantage": (q_target - v).detach().mean()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.deterministic(obs)
