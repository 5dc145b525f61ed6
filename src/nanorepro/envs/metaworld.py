"""A thin adapter to Meta-World (MuJoCo, from PyPI; optional): state-based demonstrations in our chunk format.

It shows the embodied pieces are not tied to Tabletop: ``make_metaworld_demos`` runs
Meta-World's own scripted policy on an MT1 task and returns arrays in the layout of
``embodied.demos`` (without the views, which Meta-World renders at only 4–21 frames/s on
these CPUs): ``state`` (N, 39), ``action`` (N, 4: end-effector delta + gripper),
``solved`` (Meta-World's ``info["success"]`` after the step), ``episode``,
``instruction`` (E, 12; Tabletop's vocabulary has no Meta-World words, so padding) and
``success``. ``chunk_transitions`` and ``StateWorldModel(state_dim=39, action_dim=4)``
take them as they are. metaworld is not a dependency: ``pip install metaworld``.
"""

from __future__ import annotations

import importlib
import re

import numpy as np

from nanorepro.common.errors import UserError
from nanorepro.envs.tabletop import MAX_WORDS


def _scripted_policy(task: str):
    """Meta-World's scripted expert for ``task`` (e.g. push-v3 -> SawyerPushV3Policy)."""
    policies = importlib.import_module("metaworld.policies")
    name = "Sawyer" + "".join(p.capitalize() for p in re.split(r"[-_]", task[:-3])) + task[-2:].upper() + "Policy"
    if not hasattr(policies, name):
        raise UserError(f"Meta-World has no scripted policy for task '{task}' (looked for {name})")
    return getattr(policies, name)()


def make_metaworld_demos(task: str = "push-v3", episodes: int = 10, max_steps: int = 150, seed: int = 0,
                         action_noise: float = 0.0, horizon: int = 8) -> dict[str, np.ndarray]:
    """Scripted demonstrations of one MT1 task; ``action_noise`` (Gaussian std) diversifies them."""
    try:
        import gymnasium as gym
        import metaworld  # noqa: F401  (registers the Meta-World/* environments)
    except ImportError:
        raise UserError("Meta-World is not installed: pip install metaworld") from None
    try:
        env = gym.make("Meta-World/MT1", env_name=task, seed=seed)
    except (ValueError, KeyError, gym.error.Error) as exc:
        raise UserError(f"unknown Meta-World task '{task}': {exc}") from None
    policy, rng = _scripted_policy(task), np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("state", "action", "solved", "episode")}
    success = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        solved = False
        for _ in range(max_steps):
            action = np.clip(policy.get_action(obs) + action_noise * rng.standard_normal(4), -1, 1)
            next_obs, _, terminated, truncated, info = env.step(action.astype(np.float32))
            solved = bool(info["success"])
            for k, v in (("state", obs), ("action", action), ("solved", solved), ("episode", e)):
                rows[k].append(v)
            obs = next_obs
            if terminated or truncated:
                break
        success.append(solved)
    env.close()
    return {"state": np.asarray(rows["state"], np.float32), "action": np.asarray(rows["action"], np.float32),
            "solved": np.asarray(rows["solved"]), "episode": np.asarray(rows["episode"], np.int32),
            "instruction": np.zeros((episodes, MAX_WORDS), np.int64), "success": np.asarray(success),
            "chunk": np.array(horizon)}
