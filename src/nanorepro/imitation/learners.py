"""Imitation learners for continuous control, one interface: ``learner.fit(env, demos, budget, seed)``.

    BC        maximum likelihood of expert actions under a tanh-Gaussian policy (+ small L2)
    GAIL      off-policy, DAC-style (Kostrikov et al., 2019): a discriminator D(s, a) on expert
              vs replay with a gradient penalty; SAC on the reward r = log D - log(1 - D)
    IQLearn   inverse soft-Q (Garg et al., 2021), chi^2 regulariser on the expert samples
              ("IQ-E") or on the expert/replay mixture ("IQ-M", the official MuJoCo recipe)
    DualQDM   IQ-Learn's linear objective with the chi^2 term replaced by a Bellman (box)
              constraint l <= r_hat <= u on the mixture, as a squared hinge (Xu et al., 2026)

The critic objectives (per batch of B expert and B replay transitions, mix = both):

    r_hat(s, a) = Q(s, a) - gamma (1 - d) V'(s')          IQ-Learn's inverse soft Bellman map
    V(s)        = Q(s, a~) - alpha log pi(a~|s),  a~ ~ pi   V' the same with the target critic
    value term  = mean_mix[V(s) - gamma (1 - d) V'(s')]    ("mix")  or  (1 - gamma) mean_mix[V(s)] ("v0")

    L_IQ    = -mean_E[r_hat] + value term + 1/(4c) mean_{E or mix}[r_hat^2]
    L_DualQ = -mean_E[r_hat] + value term + lambda mean_mix[relu(l - r_hat)^2 + relu(r_hat - u)^2]

The actor of every Q-based learner takes SAC's step towards softmax(Q / alpha) at a fixed
temperature alpha (``learn_temperature=True``: SAC's automatic one); GAIL's SAC learns its
temperature. All online learners share the loop of ``rl.online`` (absorbing states for
terminating envs) and SAC's networks (``rl.sac``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from nanorepro.common.errors import UserError
from nanorepro.imitation.demos import Demos, check_matches_env
from nanorepro.nn.mlp import mlp
from nanorepro.rl.online import Budget, EnvSpec, add_flag, evaluate, make_env, run_online, with_absorbing
from nanorepro.rl.replay import ReplayBuffer
from nanorepro.rl.sac import SAC, SACConfig, TanhGaussianActor, min_q

ValueTerm = Literal["mix", "v0"]


@dataclass(frozen=True)
class ImitationConfig:
    """Shared by all learners (each uses the fields it needs)."""

    hidden: int = 256
    layers: int = 2
    gamma: float = 0.99
    tau: float = 0.005
    critic_lr: float = 3e-4
    actor_lr: float = 3e-5  # IQ-Learn's MuJoCo default
    temperature: float = 0.01  # alpha of the Q-based learners (fixed, or the start when learned)
    learn_temperature: bool = False  # True: SAC's temperature step towards entropy -dim(A) (GAIL always learns)
    batch_size: int = 256  # per source: B expert + B replay transitions
    critics: int = 1  # IQ-Learn's MuJoCo recipe uses one Q with a target copy
    value_term: ValueTerm = "mix"
    chi2_c: float = 0.5  # IQ-Learn: phi(r) = r - r^2 / (4 c)
    box_low: float = -1.0  # Dual Q-DM: l <= r_hat <= u
    box_high: float = 1.0
    hinge_weight: float = 0.5  # lambda
    absorbing: bool = True  # absorbing-state wrapping (rl.online); False: V(s') = 0 at terminations
    demo_episodes: int = 1
    subsample: int = 20  # keep every k-th expert transition (random offset)
    bc_steps: int = 10_000  # BC gradient steps (BC never touches the env)
    bc_weight_decay: float = 1e-4
    disc_lr: float = 3e-4  # GAIL's discriminator
    disc_grad_penalty: float = 10.0

    def validate(self) -> None:
        if min(self.hidden, self.layers, self.batch_size, self.critics, self.demo_episodes, self.subsample,
               self.bc_steps) < 1:
            raise ValueError("hidden, layers, batch_size, critics, demo_episodes, subsample and bc_steps must be >= 1")
        if not 0 < self.gamma < 1 or not 0 < self.tau <= 1:
            raise ValueError(f"need 0 < gamma < 1 and 0 < tau <= 1, got {self.gamma}, {self.tau}")
        if min(self.temperature, self.chi2_c, self.critic_lr, self.actor_lr, self.disc_lr) <= 0:
            raise ValueError("temperature, chi2_c and the learning rates must be > 0")
        if self.box_low >= self.box_high or self.hinge_weight < 0:
            raise ValueError(f"need box_low < box_high and hinge_weight >= 0, got [{self.box_low}, {self.box_high}], "
                             f"{self.hinge_weight}")
        if self.value_term not in ("mix", "v0"):
            raise ValueError(f"value_term must be 'mix' or 'v0', got {self.value_term!r}")


@dataclass
class Fit:
    """A fitted learner: its deterministic policy (env observations -> actions), learning curve and actor.

    ``actor`` reads the learner's observations (with the absorbing flag when ``absorbing``);
    ``imitation.tools`` saves its weights.
    """

    policy: Callable[[torch.Tensor], torch.Tensor]
    curve: list[dict]
    actor: TanhGaussianActor
    absorbing: bool


def env_policy(act: Callable[[torch.Tensor], torch.Tensor], absorbing: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The deterministic policy on the env's own observations (the absorbing flag added here, 0)."""
    @torch.no_grad()
    def policy(obs: torch.Tensor) -> torch.Tensor:
        return act(add_flag(obs) if absorbing else obs)
    return policy


# --------------------------------------------------------------------------- the critic objectives


def inverse_bellman_reward(q: torch.Tensor, next_v_target: torch.Tensor, done: torch.Tensor,
                           gamma: float) -> torch.Tensor:
    """r_hat = Q(s, a) - gamma (1 - d) V'(s')."""
    return q - gamma * (1 - done) * next_v_target


def chi2_penalty(r_hat: torch.Tensor, c: float) -> torch.Tensor:
    """IQ-Learn's chi^2 term 1/(4c) mean[r_hat^2] (from phi(r) = r - r^2/(4c))."""
    return (r_hat**2).mean() / (4 * c)


def box_penalty(r_hat: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Dual Q-DM's Bellman constraint as a squared hinge: mean[relu(l - r_hat)^2 + relu(r_hat - u)^2]."""
    return (F.relu(low - r_hat) ** 2 + F.relu(r_hat - high) ** 2).mean()


def iq_objective(q: torch.Tensor, v: torch.Tensor, next_v_target: torch.Tensor, done: torch.Tensor,
                 n_expert: int, gamma: float, value_term: ValueTerm,
                 penalty: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """The inverse soft-Q loss on a mixed batch whose first ``n_expert`` rows are expert transitions.

    ``penalty(r_hat)`` receives r_hat over the whole mixture; it selects its own rows
    (IQ-E: the expert ones). Returns the loss and its three terms (detached).
    """
    r_hat = inverse_bellman_reward(q, next_v_target, done, gamma)
    expert_term = -r_hat[:n_expert].mean()
    if value_term == "mix":
        value = (v - gamma * (1 - done) * next_v_target).mean()
    elif value_term == "v0":
        value = (1 - gamma) * v.mean()
    else:
        raise ValueError(f"unknown value term {value_term!r}")
    reg = penalty(r_hat)
    info = {"expert_term": expert_term.detach(), "value_term": value.detach(), "penalty": reg.detach(),
            "r_hat_expert": r_hat[:n_expert].detach().mean(), "r_hat_replay": r_hat[n_expert:].detach().mean()}
    return expert_term + value + reg, info


# --------------------------------------------------------------------------- shared plumbing


def expert_buffer(demos: Demos, cfg: ImitationConfig, rng: np.random.Generator, low, high) -> dict[str, torch.Tensor]:
    """The expert transitions the learner sees: subsampled, with absorbing states (or done = terminated)."""
    picked = demos.subsample(cfg.demo_episodes, cfg.subsample, rng)
    if cfg.absorbing:
        loop_actions = torch.from_numpy(rng.uniform(low, high, size=picked["act"].shape).astype(np.float32))
        return with_absorbing(picked, loop_actions)
    return {**{k: picked[k] for k in ("obs", "act", "rew", "next_obs")}, "done": picked["terminated"].float()}


def sample_rows(data: dict[str, torch.Tensor], n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    idx = torch.randint(0, len(data["obs"]), (n,), generator=generator)
    return {k: v[idx] for k, v in data.items()}


def check_setup(env: EnvSpec, demos: Demos) -> tuple[int, int, np.ndarray, np.ndarray]:
    probe = make_env(env)
    check_matches_env(demos, probe, demos.meta.get("env_id", "demonstrations"))
    space = probe.action_space
    probe.close()
    return probe.observation_space.shape[0], space.shape[0], space.low, space.high


def sac_agent(obs_dim: int, act_dim: int, low, high, cfg: ImitationConfig, **overrides) -> SAC:
    sac_cfg = SACConfig(hidden=cfg.hidden, layers=cfg.layers, gamma=cfg.gamma, tau=cfg.tau,
                        actor_lr=cfg.actor_lr, critic_lr=cfg.critic_lr, init_alpha=cfg.temperature,
                        learn_alpha=cfg.learn_temperature, batch_size=cfg.batch_size, critics=cfg.critics)
    return SAC(obs_dim, act_dim, low, high, replace(sac_cfg, **overrides))


class _OnlineImitation:
    """fit() for online learners: the shared loop of rl.online around ``update``."""

    name = "online"

    def __init__(self, config: ImitationConfig = ImitationConfig()):
        self.config = config

    def fit(self, env: EnvSpec, demos: Demos, budget: Budget, seed: int = 0,
            advance: Callable[[int], None] | None = None, save: Callable[[dict], None] | None = None,
            resume: dict | None = None) -> Fit:
        """``save``/``resume``: checkpoint after each evaluation and continue from one (``rl.online.run_online``)."""
        torch.manual_seed(seed)
        obs_dim, act_dim, low, high = check_setup(env, demos)
        self.expert = expert_buffer(demos, self.config, np.random.default_rng(seed), low, high)
        self.build(obs_dim + int(self.config.absorbing), act_dim, low, high)
        curve, _ = run_online(env, self, budget, seed, absorbing=self.config.absorbing, advance=advance,
                              save=save, resume=resume)
        return Fit(env_policy(lambda obs: self.act(obs, deterministic=True), self.config.absorbing), curve,
                   self.agent.actor, self.config.absorbing)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.agent.act(obs, deterministic)

    def training_state(self) -> dict:
        return {"agent": self.agent.training_state()}

    def load_training_state(self, state: dict) -> None:
        self.agent.load_training_state(state["agent"])


class IQLearn(_OnlineImitation):
    """IQ-Learn with a fixed temperature; ``chi2_on`` = "expert" (IQ-E) or "mixture" (IQ-M)."""

    def __init__(self, config: ImitationConfig = ImitationConfig(), chi2_on: Literal["expert", "mixture"] = "mixture"):
        super().__init__(config)
        if chi2_on not in ("expert", "mixture"):
            raise ValueError(f"chi2_on must be 'expert' or 'mixture', got {chi2_on!r}")
        self.chi2_on = chi2_on
        self.name = "iq_e" if chi2_on == "expert" else "iq_m"

    def build(self, obs_dim: int, act_dim: int, low, high) -> None:
        self.agent = sac_agent(obs_dim, act_dim, low, high, self.config)

    def penalty(self, r_hat: torch.Tensor) -> torch.Tensor:
        rows = r_hat[: self.config.batch_size] if self.chi2_on == "expert" else r_hat
        return chi2_penalty(rows, self.config.chi2_c)

    def update(self, replay: ReplayBuffer, generator: torch.Generator) -> dict[str, torch.Tensor]:
        cfg, agent = self.config, self.agent
        expert = sample_rows(self.expert, cfg.batch_size, generator)
        learner = replay.sample(cfg.batch_size, generator)
        batch = {k: torch.cat([expert[k], learner[k]]) for k in ("obs", "act", "next_obs", "done")}
        with torch.no_grad():
            next_act, next_logp = agent.actor.sample(batch["next_obs"])
            next_v_target = min_q(agent.critic_target(batch["next_obs"], next_act)) - agent.alpha * next_logp
            policy_act, policy_logp = agent.actor.sample(batch["obs"])
        q_data = agent.critic(batch["obs"], batch["act"])
        q_policy = agent.critic(batch["obs"], policy_act)
        losses = [iq_objective(q, qp - agent.alpha * policy_logp, next_v_target, batch["done"], cfg.batch_size,
                               cfg.gamma, cfg.value_term, self.penalty)
                  for q, qp in zip(q_data, q_policy, strict=True)]
        loss = sum(loss for loss, _ in losses) / len(losses)
        agent.step_critic(loss)
        info = agent.update_actor(batch["obs"])
        agent.update_targets()
        return {"critic_loss": loss.detach(), **losses[0][1], **info}


class DualQDM(IQLearn):
    """Dual Q-DM: IQ-Learn's objective with the Bellman box constraint instead of chi^2 (module docstring)."""

    def __init__(self, config: ImitationConfig = ImitationConfig()):
        super().__init__(config, "mixture")
        self.name = "dqdm"

    def penalty(self, r_hat: torch.Tensor) -> torch.Tensor:
        return self.config.hinge_weight * box_penalty(r_hat, self.config.box_low, self.config.box_high)


class GAIL(_OnlineImitation):
    """Off-policy GAIL (DAC): discriminator logits as the reward of a SAC learner with learned temperature."""

    name = "gail"

    def build(self, obs_dim: int, act_dim: int, low, high) -> None:
        cfg = self.config
        self.agent = sac_agent(obs_dim, act_dim, low, high, cfg, actor_lr=cfg.critic_lr, learn_alpha=True,
                               init_alpha=0.1, critics=2)
        self.discriminator = mlp(obs_dim + act_dim, cfg.hidden, 1, cfg.layers)
        self.disc_opt = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.disc_lr)

    def training_state(self) -> dict:
        return {**super().training_state(), "discriminator": self.discriminator.state_dict(),
                "disc_opt": self.disc_opt.state_dict()}

    def load_training_state(self, state: dict) -> None:
        super().load_training_state(state)
        self.discriminator.load_state_dict(state["discriminator"])
        self.disc_opt.load_state_dict(state["disc_opt"])

    def logits(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.discriminator(torch.cat([obs, act], -1)).squeeze(-1)

    def update(self, replay: ReplayBuffer, generator: torch.Generator) -> dict[str, torch.Tensor]:
        cfg = self.config
        expert = sample_rows(self.expert, cfg.batch_size, generator)
        learner = replay.sample(cfg.batch_size, generator)
        disc_loss, penalty = discriminator_loss(self.logits, expert, learner, cfg.disc_grad_penalty, generator)
        self.disc_opt.zero_grad(set_to_none=True)
        (disc_loss + penalty).backward()
        self.disc_opt.step()
        with torch.no_grad():  # r = log D - log(1 - D) = the logit of D(s, a) = P(expert | s, a)
            reward = self.logits(learner["obs"], learner["act"])
        info = self.agent.update({**learner, "rew": reward})
        return {"disc_loss": disc_loss.detach(), "reward": reward.mean(), **info}


def discriminator_loss(logits: Callable, expert: dict, learner: dict, grad_penalty: float,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE(expert -> 1, replay -> 0) and the gradient penalty weight * E[(||grad D(x~)|| - 1)^2] on interpolates."""
    bce = (F.binary_cross_entropy_with_logits(logits(expert["obs"], expert["act"]), torch.ones(len(expert["obs"])))
           + F.binary_cross_entropy_with_logits(logits(learner["obs"], learner["act"]),
                                                torch.zeros(len(learner["obs"]))))
    eps = torch.rand(len(expert["obs"]), 1, generator=generator)
    obs = (eps * expert["obs"] + (1 - eps) * learner["obs"]).requires_grad_(True)
    act = (eps * expert["act"] + (1 - eps) * learner["act"]).requires_grad_(True)
    grads = torch.autograd.grad(logits(obs, act).sum(), (obs, act), create_graph=True)
    norm = torch.cat(grads, -1).norm(dim=-1)
    return bce, grad_penalty * ((norm - 1) ** 2).mean()


class BC:
    """Behaviour cloning: min -mean_E log pi(a|s) + weight decay, the tanh-Gaussian actor of SAC."""

    name = "bc"

    def __init__(self, config: ImitationConfig = ImitationConfig()):
        self.config = config

    def fit(self, env: EnvSpec, demos: Demos, budget: Budget, seed: int = 0,
            advance: Callable[[int], None] | None = None) -> Fit:
        """BC never steps the env; it is evaluated ``budget.n_evals`` times along its ``bc_steps``."""
        cfg = self.config
        torch.manual_seed(seed)
        obs_dim, act_dim, low, high = check_setup(env, demos)
        data = expert_buffer(demos, cfg, np.random.default_rng(seed), low, high)
        actor = TanhGaussianActor(obs_dim + int(cfg.absorbing), act_dim, torch.as_tensor(low),
                                  torch.as_tensor(high), cfg.hidden, cfg.layers)
        opt = torch.optim.Adam(actor.parameters(), lr=3e-4, weight_decay=cfg.bc_weight_decay)
        generator = torch.Generator().manual_seed(seed)
        policy = actor.deterministic
        curve, n_evals = [], max(budget.n_evals, 1)
        for step in range(1, cfg.bc_steps + 1):
            batch = sample_rows(data, cfg.batch_size, generator)
            loss = -actor.log_prob(batch["obs"], batch["act"]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done_evals = step * n_evals // cfg.bc_steps
            if done_evals > len(curve):
                returns = evaluate(policy, env, budget.eval_episodes, seed=10_000 + seed * 1000,
                                   max_steps=budget.eval_max_steps, absorbing=cfg.absorbing)
                curve.append({"env_step": done_evals * budget.eval_every, "grad_step": step,
                              "return_mean": float(returns.mean()), "return_std": float(returns.std()),
                              "returns": returns.tolist(), "nll": loss.item()})
                if advance is not None:
                    advance(budget.env_steps // n_evals)
        return Fit(env_policy(policy, cfg.absorbing), curve, actor, cfg.absorbing)


LEARNERS: dict[str, Callable[[ImitationConfig], object]] = {
    "bc": BC,
    "gail": GAIL,
    "iq_e": lambda cfg: IQLearn(cfg, "expert"),
    "iq_m": lambda cfg: IQLearn(cfg, "mixture"),
    "dqdm": DualQDM,
}


def make_learner(name: str, config: ImitationConfig = ImitationConfig()):
    if name not in LEARNERS:
        raise UserError(f"unknown learner '{name}' (known: {', '.join(LEARNERS)})")
    return LEARNERS[name](config)


__all__ = ["BC", "GAIL", "IQLearn", "DualQDM", "ImitationConfig", "Fit", "Budget", "make_learner"]
