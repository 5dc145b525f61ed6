"""Online interaction with a Gymnasium continuous-control env: the loop every online learner shares.

    for t = 1 .. env_steps:
        a_t = uniform random (t <= start_steps) or a_t ~ pi(.|s_t)
        store (s_t, a_t, r_t, s_t+1, done) in the replay buffer     (absorbing states: see below)
        every ``update_every`` steps after start_steps: learner.update(replay)
        every ``eval_every`` steps: mean return of ``eval_episodes`` deterministic episodes

Absorbing states (Kostrikov et al., 2019, "Discriminator-Actor-Critic"): with
``absorbing=True`` every observation gets one extra coordinate, 0 for real states and 1 for
the absorbing state s_a (all other coordinates 0). A transition that *terminates* (Hopper
falls) becomes (s, a, s_a) plus the self-loop (s_a, a~, s_a) with a random a~, and no
transition is marked done: the learner bootstraps through s_a and learns its value,
instead of a hard-coded V(s') = 0 that biases imitation rewards. Truncation (the time
limit) is never a termination: it bootstraps from the real s'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch

from nanorepro.common.errors import UserError
from nanorepro.rl.replay import ReplayBuffer

EnvSpec = str | Callable[[], gym.Env]


def make_env(env: EnvSpec) -> gym.Env:
    """A Gymnasium env from an id or a factory; one clear error unless spaces are 1-D Boxes."""
    try:
        made = gym.make(env) if isinstance(env, str) else env()
    except gym.error.Error as exc:
        raise UserError(f"cannot make environment {env!r}: {exc}") from None
    obs_space, act_space = made.observation_space, made.action_space
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        raise UserError(f"{env!r}: observations must be a 1-D Box, got {obs_space}")
    if not (isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1):
        raise UserError(f"{env!r}: actions must be a continuous 1-D Box, got {act_space}")
    if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
        raise UserError(f"{env!r}: the action box must be bounded, got {act_space}")
    return made


def env_id(env: EnvSpec) -> str:
    return env if isinstance(env, str) else getattr(env, "__name__", repr(env))


# --------------------------------------------------------------------------- absorbing states


def add_flag(obs: torch.Tensor, flag: float = 0.0) -> torch.Tensor:
    """Append the absorbing-state coordinate (0: a real state)."""
    return torch.cat([obs, torch.full((*obs.shape[:-1], 1), flag, dtype=obs.dtype, device=obs.device)], -1)


def with_absorbing(batch: dict[str, torch.Tensor], random_actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Transitions with ``terminated`` flags -> transitions over states with the absorbing flag, none done.

    ``batch`` has obs, act, rew, next_obs, terminated (N rows); ``random_actions`` gives an
    action per row for the self-loops s_a -> s_a that terminated rows add (rows used in order).
    Returns obs, act, rew, next_obs, done (all done = 0); terminated rows point to s_a, and
    one self-loop (reward 0) per terminated row is appended after the N rows.
    """
    obs, act, rew, next_obs = (batch[k] for k in ("obs", "act", "rew", "next_obs"))
    term = batch["terminated"].bool()
    absorbing = add_flag(torch.zeros_like(obs[:1]), 1.0)
    next_flagged = torch.where(term[:, None], absorbing, add_flag(next_obs))
    n_term = int(term.sum())
    loops = absorbing.expand(n_term, -1)
    return {
        "obs": torch.cat([add_flag(obs), loops]),
        "act": torch.cat([act, random_actions[:n_term].to(act)]),
        "rew": torch.cat([rew, torch.zeros(n_term, dtype=rew.dtype)]),
        "next_obs": torch.cat([next_flagged, loops]),
        "done": torch.zeros(len(obs) + n_term, dtype=rew.dtype),
    }


# --------------------------------------------------------------------------- the loop


class OnlineLearner(Protocol):
    """What the loop needs: act on a batch of (flagged) observations, and one update from replay.

    Resumable runs also need ``training_state()`` / ``load_training_state(state)``.
    """

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor: ...

    def update(self, replay: ReplayBuffer, generator: torch.Generator) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class Budget:
    """How much a learner may interact, and when it is evaluated."""

    env_steps: int = 100_000
    start_steps: int = 2_000  # uniform random actions first (replay warm-up); no updates before
    update_every: int = 1  # env steps per gradient update (1: one update a step)
    eval_every: int = 5_000
    eval_episodes: int = 10
    eval_max_steps: int | None = None  # cap on evaluation episode length (None: the env's own limit)
    replay_capacity: int = 1_000_000

    def validate(self) -> None:
        if min(self.env_steps, self.eval_every, self.eval_episodes, self.update_every) < 1:
            raise UserError("env_steps, eval_every, eval_episodes and update_every must be >= 1")
        if self.start_steps < 0 or self.start_steps >= self.env_steps:
            raise UserError(f"start_steps must be in [0, env_steps), got {self.start_steps}")

    @property
    def n_evals(self) -> int:
        return self.env_steps // self.eval_every


@torch.no_grad()
def evaluate(policy: Callable[[torch.Tensor], torch.Tensor], env: EnvSpec, episodes: int, seed: int,
             max_steps: int | None = None, absorbing: bool = False) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes, stepped in lockstep with one batched policy call a step."""
    envs = [make_env(env) for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    returns = np.zeros(episodes)
    alive = np.ones(episodes, dtype=bool)
    steps = 0
    while alive.any() and (max_steps is None or steps < max_steps):
        obs_t = torch.from_numpy(obs)
        actions = policy(add_flag(obs_t) if absorbing else obs_t).numpy()
        for i in np.flatnonzero(alive):
            o, r, terminated, truncated, _ = envs[i].step(actions[i])
            obs[i], returns[i] = o, returns[i] + r
            alive[i] = not (terminated or truncated)
        steps += 1
    for e in envs:
        e.close()
    return returns


def replay_spec(obs_dim: int, act_dim: int) -> dict[str, tuple[int, ...]]:
    return {"obs": (obs_dim,), "act": (act_dim,), "rew": (), "next_obs": (obs_dim,), "done": ()}


def run_online(env: EnvSpec, learner: OnlineLearner, budget: Budget, seed: int, absorbing: bool = False,
               on_eval: Callable[[dict], None] | None = None, advance: Callable[[int], None] | None = None,
               save: Callable[[dict], None] | None = None, resume: dict | None = None
               ) -> tuple[list[dict], ReplayBuffer]:
    """The loop in the module docstring; returns the learning curve and the replay buffer.

    Curve rows: {"env_step", "return_mean", "return_std", "returns", "update"} where "update"
    holds the scalars the latest ``learner.update`` returned (losses, alpha, r_hat, ...:
    one sync per evaluation); ``advance(n)`` is called with env steps done (progress bars).

    Resuming: after each evaluation ``save(state)`` receives the loop's state (step, curve,
    replay, ``learner.training_state()``, RNG states); ``resume=state`` continues from it. The
    episode that was in progress is not restored (a fresh one starts, seeded by the step),
    so a resumed run is a valid continuation, not a bit-identical replay.
    """
    budget.validate()
    train_env = make_env(env)
    obs_dim = train_env.observation_space.shape[0] + int(absorbing)
    act_dim = train_env.action_space.shape[0]
    replay = ReplayBuffer(min(budget.replay_capacity, budget.env_steps + budget.env_steps // 2),
                          replay_spec(obs_dim, act_dim))
    generator = torch.Generator().manual_seed(seed)
    curve: list[dict] = []
    first = 1
    if resume is not None:
        first = resume["step"] + 1
        curve = list(resume["curve"])
        replay.load_state_dict(resume["replay"])
        learner.load_training_state(resume["learner"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        if advance is not None:
            advance(resume["step"] - resume["step"] % 1000)
    train_env.action_space.seed(seed + first - 1)
    obs, _ = train_env.reset(seed=seed + first - 1)
    last_update: dict[str, torch.Tensor] | None = None  # the latest update's diagnostics, read at evaluations
    for step in range(first, budget.env_steps + 1):
        if step <= budget.start_steps:
            action = train_env.action_space.sample()
        else:
            obs_t = torch.as_tensor(obs, dtype=torch.float32)[None]
            action = learner.act(add_flag(obs_t) if absorbing else obs_t)[0].numpy()
        next_obs, reward, terminated, truncated, _ = train_env.step(action)
        row = {"obs": torch.as_tensor(obs, dtype=torch.float32)[None],
               "act": torch.as_tensor(action, dtype=torch.float32)[None],
               "rew": torch.tensor([reward], dtype=torch.float32),
               "next_obs": torch.as_tensor(next_obs, dtype=torch.float32)[None]}
        if absorbing:
            loop_action = torch.as_tensor(train_env.action_space.sample(), dtype=torch.float32)[None]
            replay.add(with_absorbing({**row, "terminated": torch.tensor([terminated])}, loop_action))
        else:
            replay.add({**row, "done": torch.tensor([float(terminated)])})
        obs = next_obs
        if terminated or truncated:
            obs, _ = train_env.reset()
        if step > budget.start_steps and step % budget.update_every == 0:
            last_update = learner.update(replay, generator)
        if step % budget.eval_every == 0:
            returns = evaluate(lambda o: learner.act(o, deterministic=True), env, budget.eval_episodes,
                               seed=10_000 + seed * 1000, max_steps=budget.eval_max_steps, absorbing=absorbing)
            curve.append({"env_step": step, "return_mean": float(returns.mean()),
                          "return_std": float(returns.std()), "returns": returns.tolist(),
                          "update": {k: float(v) for k, v in (last_update or {}).items()}})
            if on_eval is not None:
                on_eval(curve[-1])
            if save is not None:
                save({"step": step, "curve": curve, "replay": replay.state_dict(),
                      "learner": learner.training_state(), "generator": generator.get_state(),
                      "torch_rng": torch.get_rng_state()})
        if advance is not None and step % 1000 == 0:
            advance(1000)
    train_env.close()
    return curve, replay


class SACLearner:
    """Plain SAC on the env's reward through ``run_online`` (experts; the SAC sanity checks)."""

    def __init__(self, agent, batch_size: int):
        self.agent, self.batch_size = agent, batch_size

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.agent.act(obs, deterministic)

    def update(self, replay: ReplayBuffer, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.agent.update(replay.sample(self.batch_size, generator))

    def training_state(self) -> dict:
        return self.agent.training_state()

    def load_training_state(self, state: dict) -> None:
        self.agent.load_training_state(state)
