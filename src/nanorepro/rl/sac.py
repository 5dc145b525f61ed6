"""Soft actor-critic (Haarnoja et al., 2018): twin Q, target critics, tanh-Gaussian actor, auto temperature.

One update, in the paper's order (cf. CleanRL's sac_continuous_action.py, written afresh):

    y       = r + gamma (1 - d) [min_j Q'_j(s', a') - alpha log pi(a'|s')],   a' ~ pi(.|s')
    L_Q     = sum_j E[(Q_j(s, a) - y)^2]
    L_pi    = E[alpha log pi(a~|s) - min_j Q_j(s, a~)],   a~ ~ pi(.|s)   (reparameterised)
    L_alpha = E[-log alpha (log pi(a~|s) + H_target)],    H_target = -dim(A) by default
    Q'_j   <- tau Q_j + (1 - tau) Q'_j

Actions live in a box [low, high]: the actor's tanh output is rescaled to it, and log pi
carries the Jacobian of tanh and of the rescaling.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from nanorepro.nn.mlp import mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass(frozen=True)
class SACConfig:
    hidden: int = 256
    layers: int = 2
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_alpha: float = 0.1
    learn_alpha: bool = True  # False: fixed temperature init_alpha
    target_entropy: float | None = None  # None: -dim(A)
    batch_size: int = 256
    critics: int = 2  # 2: twin Q with min (SAC); 1: a single Q (IQ-Learn's MuJoCo recipe)


class TanhGaussianActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, low: torch.Tensor, high: torch.Tensor, hidden: int, layers: int):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim, layers)
        self.register_buffer("scale", (high - low) / 2)
        self.register_buffer("centre", (high + low) / 2)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        # Soft clamp of log-std into [LOG_STD_MIN, LOG_STD_MAX] (as SpinningUp / CleanRL do).
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a = centre + scale tanh(x), x ~ N(mean, std); log pi(a|s) with the change of variables."""
        mean, log_std = self(obs)
        x = mean + log_std.exp() * torch.randn_like(mean)
        y = torch.tanh(x)
        log_prob = (-0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)), the numerically stable form.
        log_prob -= (2 * (math.log(2) - x - nn.functional.softplus(-2 * x)) + self.scale.log()).sum(-1)
        return self.centre + self.scale * y, log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.centre + self.scale * torch.tanh(self(obs)[0])

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
        """log pi(a|s) of given actions (offline learners): x = atanh((a - centre) / scale), squeezed inside the box."""
        mean, log_std = self(obs)
        y = ((act - self.centre) / self.scale).clamp(-1 + eps, 1 - eps)
        x = torch.atanh(y)
        log_prob = (-0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_prob - (torch.log1p(-y**2) + self.scale.log()).sum(-1)


class TwinQ(nn.Module):
    """Two independent Q networks (``critics=1``: just one); ``forward`` returns a tuple of Q values."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int, critics: int = 2):
        super().__init__()
        if critics not in (1, 2):
            raise ValueError(f"critics must be 1 or 2, got {critics}")
        self.q1 = mlp(obs_dim + act_dim, hidden, 1, layers)
        self.q2 = mlp(obs_dim + act_dim, hidden, 1, layers) if critics == 2 else None

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.cat([obs, act], dim=-1)
        if self.q2 is None:
            return (self.q1(x).squeeze(-1),)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def min_q(qs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The pessimistic estimate min_j Q_j (the only Q when there is one)."""
    return qs[0] if len(qs) == 1 else torch.minimum(qs[0], qs[1])


class SAC(nn.Module):
    """The agent: ``update(batch)`` takes obs, act, rew, next_obs, done tensors; ``act(obs)`` acts."""

    def __init__(self, obs_dim: int, act_dim: int, low, high, config: SACConfig = SACConfig()):
        super().__init__()
        low = torch.as_tensor(low, dtype=torch.float32).reshape(act_dim)
        high = torch.as_tensor(high, dtype=torch.float32).reshape(act_dim)
        self.config = config
        self.actor = TanhGaussianActor(obs_dim, act_dim, low, high, config.hidden, config.layers)
        self.critic = TwinQ(obs_dim, act_dim, config.hidden, config.layers, config.critics)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.init_alpha)), requires_grad=config.learn_alpha)
        self.target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, fused=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr, fused=True)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on critics, actor and temperature; returns detached losses (no sync)."""
        cfg = self.config
        obs, act, rew, next_obs, done = (batch[k] for k in ("obs", "act", "rew", "next_obs", "done"))
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(next_obs)
            target = rew + cfg.gamma * (1 - done) * (min_q(self.critic_target(next_obs, next_act))
                                                     - self.alpha * next_logp)
        qs = self.critic(obs, act)
        critic_loss = sum(((q - target) ** 2).mean() for q in qs)
        self.step_critic(critic_loss)
        info = self.update_actor(obs)
        self.update_targets()
        return {"critic_loss": critic_loss.detach(), "q": qs[0].detach().mean(), **info}

    def step_critic(self, loss: torch.Tensor) -> None:
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()

    def update_actor(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_pi = E[alpha log pi(a~|s) - min_j Q_j(s, a~)], then the temperature step (if learned)."""
        new_act, logp = self.actor.sample(obs)
        actor_loss = (self.alpha * logp - min_q(self.critic(obs, new_act))).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        if self.config.learn_alpha:
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
        return {"actor_loss": actor_loss.detach(), "alpha": self.alpha, "entropy": -logp.detach().mean()}

    @torch.no_grad()
    def update_targets(self) -> None:
        for p, p_t in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
            p_t.lerp_(p, self.config.tau)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor.deterministic(obs) if deterministic else self.actor.sample(obs)[0]

    def training_state(self) -> dict:
        """Everything to resume training exactly: weights and the three optimisers."""
        return {"model": self.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "alpha_opt": self.alpha_opt.state_dict()}

    def load_training_state(self, state: dict) -> None:
        self.load_state_dict(state["model"])
        for name in ("actor_opt", "critic_opt", "alpha_opt"):
            getattr(self, name).load_state_dict(state[name])
