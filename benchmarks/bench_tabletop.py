"""Speed of the Tabletop suite, as ratios measured in one run (these machines are noisy).

    python benchmarks/bench_tabletop.py [--reps 3]

Two-view frames per second (a control step renders the head and the wrist view of every
scene) for batches of 1, 64 and 256 scenes at 32 and 48 px, against the one-scene
Gymnasium environment (the per-step Python cost a user pays), and the vectorised success
predicates against the per-scene reference. Target: >= 500 two-view
frames/s for a batch of 64 on 2 cores. Prints one JSON object per line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from nanorepro.envs.tabletop import Tabletop, TabletopConfig, TabletopEnv, sample_task
from timing import median_time


def bench(reps: int) -> dict:
    steps = 20
    out = {"bench": "tabletop", "control_steps": steps}
    for px in (32, 48):
        for batch in (1, 64, 256):
            sim = Tabletop(batch, TabletopConfig(view_size=px))
            rng = np.random.default_rng(0)
            tasks = [sample_task("train", rng) for _ in range(batch)]

            def run(sim=sim, tasks=tasks, rng=rng, batch=batch):
                sim.reset(tasks, rng)
                for _ in range(steps):
                    sim.step(np.concatenate([rng.uniform(0, 1, (batch, 2)), rng.uniform(0, 1, (batch, 1))], 1))

            out[f"frames_per_s_{px}px_batch_{batch}"] = batch * steps / median_time(run, reps)
    env = TabletopEnv()

    def run_env():
        env.reset(seed=0)
        for _ in range(steps):
            env.step(np.array([0.5, 0.5, 0.0], np.float32))

    out["gym_env_frames_per_s_32px"] = steps / median_time(run_env, reps)
    out["vectorised_speedup_64_vs_env"] = out["frames_per_s_32px_batch_64"] / out["gym_env_frames_per_s_32px"]
    sim = Tabletop(64)
    rng = np.random.default_rng(0)
    sim.reset([sample_task("train", rng) for _ in range(64)], rng)
    per_scene = median_time(lambda: [sim._solved(b) for b in range(sim.B)], reps)
    out["success_vectorised_speedup_batch_64"] = per_scene / median_time(sim.success, reps)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    print(json.dumps(bench(parser.parse_args().reps)))
