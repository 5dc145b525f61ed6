"""Train a SAC expert on a Gymnasium env and write its deterministic demonstrations (no download).

    nanorepro imitation make-experts HalfCheetah-v5 --steps 150000 --episodes 10

The expert is plain SAC (``rl.sac``, auto temperature) run through ``rl.online.run_online``
on the env's reward; its deterministic policy a = centre + scale tanh(mean(s)) then plays
``episodes`` episodes, recorded into the format of ``imitation.demos``. A uniform random
policy's mean return over as many episodes goes into the sidecar for normalisation.

Resumable: the training state (networks, optimisers, replay, RNGs, curve) is checkpointed
after every evaluation to ``OUT.ckpt.safetensors``; running the same command again
continues from it (a fresh episode starts at the checkpoint), and the file is removed once
the demonstrations are written.
"""

from __future__ import annotations

import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from nanorepro.common.checkpoint import load_owned_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.common.provenance import git_commit
from nanorepro.imitation.demos import Demos, save_demos
from nanorepro.rl.online import Budget, EnvSpec, SACLearner, env_id, make_env, run_online
from nanorepro.rl.sac import SAC, SACConfig


@dataclass(frozen=True)
class ExpertConfig:
    steps: int = 150_000  # env steps of SAC training (one update a step)
    start_steps: int = 5_000
    hidden: int = 128
    batch_size: int = 256
    episodes: int = 10  # demonstration episodes written
    eval_every: int = 10_000
    seed: int = 0

    def validate(self) -> None:
        if self.steps <= self.start_steps or self.episodes < 1:
            raise UserError("need steps > start_steps and episodes >= 1")


@torch.no_grad()
def record_episodes(policy, env: gym.Env, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Play ``episodes`` episodes with ``policy(obs_1D) -> action``; arrays in the demo-file layout."""
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "next_observations", "rewards",
                                             "terminated", "truncated")}
    starts = []
    for episode in range(episodes):
        starts.append(len(rows["rewards"]))
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = np.asarray(policy(obs), dtype=np.float32)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(rows, (obs, action, next_obs, reward, terminated, truncated), strict=True):
                rows[key].append(value)
            obs, done = next_obs, terminated or truncated
    dtypes = {"terminated": np.bool_, "truncated": np.bool_}
    out = {k: np.asarray(v, dtype=dtypes.get(k, np.float32)) for k, v in rows.items()}
    out["episode_starts"] = np.asarray(starts, dtype=np.int64)
    return out


def make_experts(env: EnvSpec, out: str | Path, config: ExpertConfig = ExpertConfig(), board=None) -> Demos:
    """Train the expert, record its demonstrations, write ``out`` (.npz) and its sidecar; return them."""
    config.validate()
    torch.manual_seed(config.seed)
    probe = make_env(env)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    low, high = probe.action_space.low, probe.action_space.high
    agent = SAC(obs_dim, act_dim, low, high, SACConfig(hidden=config.hidden, batch_size=config.batch_size))
    budget = Budget(env_steps=config.steps, start_steps=config.start_steps, eval_every=config.eval_every,
                    eval_episodes=5)
    task = board.task(f"SAC expert {env_id(env)}", config.steps) if board else None
    log = board.log if board else (lambda m: None)
    ckpt_path, owner = checkpoint_path(out), {"env_id": env_id(env), "config": asdict(config)}
    resume, seconds_before = None, 0.0
    saved = load_owned_checkpoint(ckpt_path, owner, log)
    if saved is not None:
        resume, seconds_before = saved["loop"], saved["train_seconds"]
        log(f"resuming from {ckpt_path} at step {resume['step']}")
    start = time.perf_counter()

    def save(loop: dict) -> None:
        save_checkpoint(ckpt_path, {**owner, "loop": loop,
                                    "train_seconds": seconds_before + time.perf_counter() - start})

    curve, _ = run_online(env, SACLearner(agent, config.batch_size), budget, config.seed,
                          on_eval=lambda row: log(f"  step {row['env_step']}: return {row['return_mean']:.0f}"),
                          advance=task.advance if task else None, save=save, resume=resume)
    train_seconds = seconds_before + time.perf_counter() - start

    def expert_policy(obs):
        return agent.act(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic=True)[0].numpy()

    arrays = record_episodes(expert_policy, probe, config.episodes, seed=1_000_000 + config.seed)
    probe.action_space.seed(config.seed)
    random_arrays = record_episodes(lambda obs: probe.action_space.sample(), probe, config.episodes,
                                    seed=2_000_000 + config.seed)
    expert_returns = np.add.reduceat(arrays["rewards"].astype(np.float64), arrays["episode_starts"])
    random_returns = np.add.reduceat(random_arrays["rewards"].astype(np.float64), random_arrays["episode_starts"])
    import mujoco  # noqa: PLC0415 (version for the sidecar; MuJoCo envs need it anyway)

    meta = {
        "env_id": env_id(env),
        "expert_return": float(expert_returns.mean()),
        "expert_return_std": float(expert_returns.std()),
        "random_return": float(random_returns.mean()),
        "random_return_std": float(random_returns.std()),
        "episodes": config.episodes,
        "transitions": int(len(arrays["rewards"])),
        "seed": config.seed,
        "expert": {"algorithm": "SAC (nanorepro.rl.sac)", **asdict(config), "train_seconds": round(train_seconds),
                   "learning_curve": [(r["env_step"], round(r["return_mean"], 1)) for r in curve]},
        "versions": {"gymnasium": gym.__version__, "mujoco": mujoco.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "nanorepro_commit": git_commit(),
        "command": " ".join(shlex.quote(a) for a in ["nanorepro", *sys.argv[1:]]) if sys.argv else "",
    }
    demos = Demos(**arrays, meta=meta)
    save_demos(out, demos)
    ckpt_path.unlink(missing_ok=True)
    return demos


def checkpoint_path(out: str | Path) -> Path:
    """Where an interrupted ``make_experts`` keeps its state (next to the demo file; removed when done)."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".npz") + ".ckpt.safetensors")
