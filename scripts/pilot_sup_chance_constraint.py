"""SuP's CMDP with an expected-cost constraint vs a chance constraint, on the scripted demonstrator.

    PYTHONPATH=src python scripts/pilot_sup_chance_constraint.py [--log 300] [--test 300] [--seed 0]

The committed ``sup`` experiment constrains the *mean* world-model deviation per chunk. A
diagnostic (docs/sup.md) found the world model ranks the few catastrophic chunks (a grasp
closed too fast) well, but a mean budget is spent on the many moderate deviations of
ordinary chunks. Here the same logged rows and world-model costs feed three schedulers:

* ``mean``: the experiment's CMDP, cost c_k (normalised by the mean k = 4 cost), budget d;
* ``chance``: the same Lagrangian fitted-Q on the violation indicator 1[c_k > tau] (tau a
  quantile of the logged k = 4 costs), budget = the allowed share of violating chunks;
* ``wm-threshold``: no learning, the largest k whose predicted cost is <= tau (the world
  model at run time, with the demonstrator's next chunk: an upper reference).

All are measured on the same fresh paired test scenes against the base policy and fixed k = 2.
A pilot after the committed run; its numbers are not claim checks.
"""

import argparse
import time

import numpy as np
import torch

from nanorepro.common.seeding import seed_everything
from nanorepro.embodied.sup import (
    RATES,
    SchedulerConfig,
    ScriptedChunks,
    execute,
    fixed_rate,
    paired,
    price_logged_chunks,
    random_rates,
    train_scheduler,
    world_model_costs,
)
from nanorepro.embodied.tools import suite
from nanorepro.envs.tabletop import sample_tasks, scene_seed

parser = argparse.ArgumentParser()
parser.add_argument("--log", type=int, default=300)
parser.add_argument("--test", type=int, default=300)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--wm-steps", type=int, default=2000)
args = parser.parse_args()
torch.set_num_threads(2)
seed_everything(args.seed)
run = dict(max_steps=300, horizon=8, config=suite())
start = time.time()
log_seed, test_seed = scene_seed(args.seed, "log"), scene_seed(args.seed, "pilot-test")
log = execute(ScriptedChunks, sample_tasks("train", args.log, log_seed), log_seed, random_rates(args.seed), record=True,
              **run)
rows = log["rows"]
wm, costs, scale, _ = price_logged_chunks(rows, log["success"], 8, args.wm_steps, args.seed)
costs = costs / scale
print(f"logged {len(costs)} chunks, world model and costs in {time.time() - start:.0f} s; normalised k = 4 cost "
      f"quantiles 50/90/99%: {np.quantile(costs[:, -1], [0.5, 0.9, 0.99]).round(2).tolist()}")

tests = sample_tasks("train", args.test, test_seed)
base = execute(ScriptedChunks, tests, test_seed, fixed_rate(1), **run)


def report(name, scheduler):
    out = paired(base, execute(ScriptedChunks, tests, test_seed, scheduler, **run))
    speed = "n/a" if out["speedup"] is None else f"{out['speedup']:.2f}x"
    print(f"{name:<34} success {out['success']:.3f} (base {out['base_success']:.3f}, lower bound "
          f"{out['success_diff_lower95']:+.3f})  speed-up {speed}", flush=True)


report("fixed k = 2", fixed_rate(2))
sched_cfg = SchedulerConfig()
for d in (0.1, 0.2):
    report(f"mean cost, d = {d}", train_scheduler(rows, costs, d, sched_cfg, args.seed))
for q in (0.8, 0.9, 0.95):
    tau = float(np.quantile(costs[:, -1], q))
    violations = (costs > tau).astype(np.float32)
    for d in (0.01, 0.05):
        report(f"chance, tau = q{q:g}, d = {d}", train_scheduler(rows, violations, d, sched_cfg, args.seed))

    def threshold(state, chunk, context, tau=tau):
        nxt = context["frozen"].peek(context["rows"])
        c = world_model_costs(wm, state, context["sim"]._instruction[context["rows"]], chunk.astype(np.float32),
                              nxt.astype(np.float32)) / scale
        return np.array([max(k for k, ok in zip(RATES, row <= tau, strict=True) if ok or k == 1) for row in c])

    report(f"wm-threshold, tau = q{q:g}", threshold)
print(f"total {time.time() - start:.0f} s")
