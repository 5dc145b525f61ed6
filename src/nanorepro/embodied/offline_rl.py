"""Offline RL for the chunked policy: IQL critics over chunks, advantage-weighted regression into the policy.

IQL (Kostrikov et al., 2022) on chunk-level transitions (s, instruction, a = H waypoints, r, s', done):

    V  <- expectile_tau( Q_target(s, a) - V(s) )                       (the expectile loss)
    Q  <- ( r + gamma (1 - done) V(s') - Q(s, a) )^2                   (twin Q, Polyak targets)
    pi <- argmax E[ min(exp(beta (Q(s, a) - V(s))), w_max) log pi(a | s) ]   (AWR extraction)

The critics read the simulator state and the instruction's one-hot words
(``world_model.features``); the policy is any ``ChunkPolicy`` and its own loss is the
log-likelihood term (``ChunkPolicy.loss(weights=...)`` through ``policy.fit_policy``). Used by
VLA-MBPO's IQL baseline and by VLGOR's offline RL on real + imagined chunks.
"""

from __future__ import annotations

import numpy as np
import torch

from nanorepro.embodied.policy import Pool
from nanorepro.embodied.world_model import chunk_starts, features
from nanorepro.rl.iql import IQL, IQLConfig, awr_weights

TRANSITION_KEYS = ("state", "instruction", "chunk", "reward", "next_state", "done")


def demo_transitions(demos: dict[str, np.ndarray], horizon: int) -> dict[str, torch.Tensor]:
    """Demonstration chunk transitions (``TRANSITION_KEYS``) from every chunk start whose end lies in the same
    episode; reward and done are 1 on the chunk after which the task is solved."""
    rows = chunk_starts(demos["episode"], horizon)
    solved = torch.as_tensor(demos["solved"][rows + horizon - 1]).float()
    return {"state": torch.as_tensor(demos["state"][rows]),
            "instruction": torch.as_tensor(demos["instruction"][demos["episode"][rows]]),
            "chunk": torch.as_tensor(demos["action"][rows[:, None] + np.arange(horizon)]),
            "reward": solved, "next_state": torch.as_tensor(demos["state"][rows + horizon]), "done": solved}


def critic_inputs(state: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
    """The critics' observation: the state without the gripper's velocity (imagined states have none) and the
    instruction's one-hot words."""
    return features(torch.cat([state[:, :3], torch.zeros_like(state[:, 3:5]), state[:, 5:]], 1), instruction,
                    state[:, :0])


def fit_critics(transitions: dict[str, torch.Tensor], steps: int, seed: int, generator: torch.Generator,
                config: IQLConfig = IQLConfig(), batch_size: int = 256) -> tuple[IQL, dict[str, float]]:
    """IQL's value and twin-Q updates on chunk transitions (``TRANSITION_KEYS``); ``generator`` draws batches.
    Returns the learner and its last update's losses."""
    data = {"obs": critic_inputs(transitions["state"], transitions["instruction"]),
            "act": transitions["chunk"].flatten(1), "rew": transitions["reward"].float(),
            "next_obs": critic_inputs(transitions["next_state"], transitions["instruction"]),
            "done": transitions["done"].float()}
    torch.manual_seed(seed)
    act_dim = data["act"].shape[1]
    iql = IQL(data["obs"].shape[1], act_dim, torch.zeros(act_dim), torch.ones(act_dim), config)
    info: dict[str, torch.Tensor] = {}
    for _ in range(steps):
        idx = torch.randint(len(data["obs"]), (batch_size,), generator=generator)
        info = iql.update({k: v[idx] for k, v in data.items()})
    return iql, {k: float(v) for k, v in info.items()}


@torch.no_grad()
def advantage_weights(iql: IQL, state: torch.Tensor, instruction: torch.Tensor, chunk: torch.Tensor
                      ) -> torch.Tensor:
    """AWR weights min(exp(beta (min Q_target - V)), w_max) of (state, chunk) rows."""
    obs = critic_inputs(state, instruction)
    q = torch.min(*iql.critic_target(obs, chunk.flatten(1)))
    return awr_weights(q - iql.value(obs).squeeze(-1), iql.config.beta, iql.config.max_weight)


def awr_pools(real: dict[str, torch.Tensor], demo_obs: dict[str, torch.Tensor], demo_targets: torch.Tensor,
              imagined: dict[str, torch.Tensor] | None, critic_steps: int, seed: int, generator: torch.Generator,
              config: IQLConfig = IQLConfig(), imagined_fraction: float = 0.5
              ) -> tuple[list[Pool], list[float] | None, dict[str, float]]:
    """IQL critics on the real (+ imagined) chunk transitions, then AWR's pools for ``policy.fit_policy``: every
    demonstration step weighted by its advantage and, when imagined chunks exist, those too, as
    ``imagined_fraction`` of every batch. -> (pools, fractions, the critics' statistics)."""
    transitions = real if imagined is None else {k: torch.cat([real[k], imagined[k]]) for k in TRANSITION_KEYS}
    iql, info = fit_critics(transitions, critic_steps, seed, generator, config)
    weights = advantage_weights(iql, demo_obs["state"], demo_obs["instruction"], demo_targets)
    pools, fractions = [Pool(demo_obs, demo_targets, weights)], None
    out = {"critic_loss": info.get("critic_loss"), "real_weight_mean": float(weights.mean())}
    if imagined is not None and len(imagined["chunk"]):
        w = advantage_weights(iql, imagined["state"], imagined["instruction"], imagined["chunk"])
        pools.append(Pool({"state": imagined["state"], "instruction": imagined["instruction"]}, imagined["chunk"], w))
        fractions = [1 - imagined_fraction, imagined_fraction]
        out["imagined_weight_mean"] = float(w.mean())
    return pools, fractions, out
