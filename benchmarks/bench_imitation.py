"""Speed of the continuous-control imitation pieces, as ratios measured in one run (these machines are noisy).

    python benchmarks/bench_imitation.py [--reps 5] [--device cuda]

1. SAC update throughput (updates/s, batch 256) at widths 128 and 256, with 1 and 2 torch
   threads: the ratio decides the experiment's ``threads=1`` (seeds run side by side).
2. Fused Adam against the for-loop Adam, the same SAC update (why ``rl.sac`` asks for fused).
3. An IQ-style update (Dual Q-DM: 128 expert + 128 replay, one critic) against a SAC update.
4. Env steps/s of HalfCheetah-v5 and Hopper-v5 (random actions, resets included).
With ``--device cuda`` (when a GPU is there) the SAC update is also timed on it.
Prints one JSON object per line.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

from nanorepro.imitation.learners import DualQDM, ImitationConfig
from nanorepro.rl.online import replay_spec
from nanorepro.rl.replay import ReplayBuffer
from nanorepro.rl.sac import SAC, SACConfig
from timing import median_time

OBS, ACT, UPDATES = 17, 6, 100  # HalfCheetah's sizes


def sac_updates_per_s(hidden: int, threads: int, reps: int, fused: bool = True, device: str = "cpu") -> float:
    torch.set_num_threads(threads)
    agent = SAC(OBS, ACT, -torch.ones(ACT), torch.ones(ACT), SACConfig(hidden=hidden, batch_size=256)).to(device)
    if not fused:
        agent.actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=3e-4, foreach=False)
        agent.critic_opt = torch.optim.Adam(agent.critic.parameters(), lr=3e-4, foreach=False)
    batch = {"obs": torch.randn(256, OBS), "act": torch.rand(256, ACT) * 2 - 1, "rew": torch.randn(256),
             "next_obs": torch.randn(256, OBS), "done": torch.zeros(256)}
    batch = {k: v.to(device) for k, v in batch.items()}

    def run():
        for _ in range(UPDATES):
            agent.update(batch)
        if device == "cuda":
            torch.cuda.synchronize()
    return UPDATES / median_time(run, reps)


def dual_qdm_updates_per_s(reps: int) -> float:
    torch.set_num_threads(1)
    learner = DualQDM(ImitationConfig(hidden=128, batch_size=128))
    learner.build(OBS + 1, ACT, -np.ones(ACT), np.ones(ACT))
    learner.expert = {"obs": torch.randn(50, OBS + 1), "act": torch.rand(50, ACT) * 2 - 1,
                      "rew": torch.zeros(50), "next_obs": torch.randn(50, OBS + 1), "done": torch.zeros(50)}
    replay = ReplayBuffer(10_000, replay_spec(OBS + 1, ACT))
    replay.add({"obs": torch.randn(5000, OBS + 1), "act": torch.rand(5000, ACT) * 2 - 1, "rew": torch.zeros(5000),
                "next_obs": torch.randn(5000, OBS + 1), "done": torch.zeros(5000)})
    generator = torch.Generator().manual_seed(0)

    def run():
        for _ in range(UPDATES):
            learner.update(replay, generator)
    return UPDATES / median_time(run, reps)


def env_steps_per_s(env_id: str, steps: int = 5000) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for hidden in (128, 256):
        one, two = (sac_updates_per_s(hidden, t, args.reps) for t in (1, 2))
        print(json.dumps({"bench": "sac_update_threads", "hidden": hidden, "updates_per_s_1_thread": round(one),
                          "updates_per_s_2_threads": round(two), "ratio_2_over_1": round(two / one, 2)}))
    fused, loop = sac_updates_per_s(128, 1, args.reps), sac_updates_per_s(128, 1, args.reps, fused=False)
    print(json.dumps({"bench": "fused_adam", "hidden": 128, "updates_per_s_fused": round(fused),
                      "updates_per_s_for_loop": round(loop), "ratio": round(fused / loop, 2)}))
    iq = dual_qdm_updates_per_s(args.reps)
    print(json.dumps({"bench": "dual_qdm_update", "hidden": 128, "updates_per_s": round(iq),
                      "sac_updates_per_s": round(fused), "ratio_to_sac": round(iq / fused, 2)}))
    for env_id in ("HalfCheetah-v5", "Hopper-v5"):
        print(json.dumps({"bench": "env_steps", "env": env_id, "steps_per_s": round(env_steps_per_s(env_id))}))
    if args.device == "cuda" and torch.cuda.is_available():
        for hidden in (256, 1024):
            gpu = sac_updates_per_s(hidden, 1, args.reps, device="cuda")
            print(json.dumps({"bench": "sac_update_cuda", "hidden": hidden, "updates_per_s": round(gpu),
                              "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
