"""Speed of the dual_qdm_cliff pieces, as ratios measured in one run (these machines are noisy).

    python benchmarks/bench_cliff.py [--reps 5]

1. torch threads: one Dual Q-DM critic fit (H = 80) with 1 thread against 2 threads.
   The tables hold a few hundred numbers, so per-op overhead dominates and one thread wins;
   this is why the experiment declares ``threads=1``.
2. vectorisation: BC's exact gap on 200 datasets in one batched occupancy pass, against
   a Python loop over the datasets (the obvious implementation).
Prints one JSON object per line: median seconds of each side and their ratio.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nanorepro.common.seeding import rng_stream
from nanorepro.envs.tabular import deterministic_policy, policy_value, reset_cliff, sample_trajectories
from nanorepro.imitation.cliff import CliffConfig, bc_gap_over_datasets
from nanorepro.imitation.tabular import (
    Demonstrations,
    QLearnerConfig,
    behaviour_cloning,
    dual_qdm_loss,
    fit_q_learner,
)
from timing import median_time


def cliff_instance(H: int, seed: int = 0):
    rng = rng_stream(seed, "bench")
    a_star = rng.integers(0, 2, 10)
    mdp = reset_cliff(10, 2, a_star)
    states, actions, _ = sample_trajectories(mdp, deterministic_policy(np.append(a_star, 0), H, 2), 50, rng)
    return mdp, a_star, Demonstrations.from_trajectories(states, actions, 11, 2)


def bench_threads(reps: int) -> dict:
    mdp, _, demos = cliff_instance(80)
    cfg = QLearnerConfig(steps=200)

    def fit():
        fit_q_learner(dual_qdm_loss, mdp, demos, cfg, uses_learner_data=True, box=(-1.0, 1.0),
                      hinge_weight=0.5, value="v0")

    times = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times[threads] = median_time(fit, reps)
    return {"bench": "dqdm_fit_threads", "H": 80, "steps": 200, "s_1_thread": times[1], "s_2_threads": times[2],
            "speedup_1_over_2": times[2] / times[1]}


def bench_vectorised_bc(reps: int) -> dict:
    torch.set_num_threads(1)
    cfg, H, D = CliffConfig(), 80, 200

    def batched():
        bc_gap_over_datasets(cfg, H, D, rng_stream(0, "bench_bc"))

    def looped():
        rng = rng_stream(0, "bench_bc")
        a_star = rng.integers(0, 2, 10)
        mdp = reset_cliff(10, 2, a_star)
        expert = deterministic_policy(np.append(a_star, 0), H, 2)
        for _ in range(D):
            states, actions, _ = sample_trajectories(mdp, expert, cfg.n_demos, rng)
            bc = behaviour_cloning(Demonstrations.from_trajectories(states, actions, 11, 2))
            policy_value(mdp, bc.greedy_HSA)

    t_batched, t_looped = median_time(batched, reps), median_time(looped, max(1, reps // 2))
    return {"bench": "bc_gap_datasets", "H": H, "datasets": D, "s_batched": t_batched, "s_loop": t_looped,
            "speedup": t_looped / t_batched}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    for bench in (bench_threads, bench_vectorised_bc):
        print(json.dumps(bench(args.reps)), flush=True)
