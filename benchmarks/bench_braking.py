"""Speed of the braking pieces, as ratios measured in one run (these machines are noisy).

    python benchmarks/bench_braking.py [--reps 3]

1. simulator: stop-steps per second of ``BrakingSim`` for batches of 1, 64 and 1024 stops,
   and of the single-stop Gymnasium ``BrakingEnv`` (the per-step Python cost a user pays).
2. SAC updates per second (the braking policy's 2x128 networks) with 1 and 2 torch threads.
3. one imagined step of 64 stops in a 5-member stop model.
Prints one JSON object per line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nanorepro.braking.model import ImaginedStops, Pessimism, StopModel, StopModelConfig
from nanorepro.envs.braking import SURFACES, BrakingEnv, BrakingSim, Road
from nanorepro.rl.ensemble import EnsembleConfig
from nanorepro.rl.sac import SAC, SACConfig
from timing import median_time


def bench_simulator(reps: int) -> dict:
    steps = 200
    out = {"bench": "braking_sim", "control_steps": steps}
    for n in (1, 64, 1024):
        sim = BrakingSim(n)

        def run(sim=sim, n=n):
            sim.reset(np.full(n, 30.0), [Road(SURFACES["snow"])] * n, np.random.default_rng(0))
            for _ in range(steps):
                sim.step(np.full(n, 0.3))

        out[f"stop_steps_per_s_batch_{n}"] = n * steps / median_time(run, reps)
    env = BrakingEnv()

    def run_env():
        env.reset(seed=0, options={"road": "snow", "speed": 30.0})
        for _ in range(steps):
            env.step(np.array([0.3], dtype=np.float32))

    out["gym_env_steps_per_s"] = steps / median_time(run_env, reps)
    out["vectorised_speedup_64_vs_1"] = out["stop_steps_per_s_batch_64"] / out["stop_steps_per_s_batch_1"]
    return out


def bench_sac(reps: int) -> dict:
    out = {"bench": "sac_updates", "hidden": 128, "batch": 256}
    batch = {"obs": torch.randn(256, 20), "act": torch.rand(256, 1), "rew": torch.randn(256),
             "next_obs": torch.randn(256, 20), "done": torch.zeros(256)}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        agent = SAC(20, 1, [0.0], [1.0], SACConfig(hidden=128))

        def run(agent=agent):
            for _ in range(100):
                agent.update(batch)

        out[f"updates_per_s_{threads}_threads"] = 100 / median_time(run, reps)
    out["speedup_2_over_1"] = out["updates_per_s_2_threads"] / out["updates_per_s_1_threads"]
    return out


def bench_model_step(reps: int) -> dict:
    torch.set_num_threads(2)
    model = StopModel(StopModelConfig(ensemble=EnsembleConfig(members=5, elites=3, hidden=200, layers=3))).eval()
    starts = torch.rand(100, 4, 5) * 20
    contexts = torch.zeros(5, 100, 4)
    stops = ImaginedStops(model, starts, contexts, 64, Pessimism(halt_threshold=1.0), torch.Generator(), 3000)

    def run():
        for _ in range(50):
            stops.step(torch.full((64,), 0.3))

    return {"bench": "imagined_step", "stops": 64, "members": 5, "ms_per_step": 1000 * median_time(run, reps) / 50}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for bench in (bench_simulator, bench_sac, bench_model_step):
        print(json.dumps(bench(args.reps)), flush=True)
