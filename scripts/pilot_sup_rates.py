"""Why the SuP suite limits grasp speed: the scripted demonstrator at fixed rates, with and without the limit.

    PYTHONPATH=src python scripts/pilot_sup_rates.py [--tasks 300]
"""

import argparse

import numpy as np

from nanorepro.embodied.sup import RATES, ScriptedChunks, execute, fixed_rate, segment_oracle
from nanorepro.envs.tabletop import TabletopConfig, sample_task

parser = argparse.ArgumentParser()
parser.add_argument("--tasks", type=int, default=300)
args = parser.parse_args()
rng = np.random.default_rng(0)
tasks = [sample_task("train", rng) for _ in range(args.tasks)]
for label, config in (("no limit", TabletopConfig()), ("grasp_max_speed 0.15", TabletopConfig(grasp_max_speed=0.15))):
    base = execute(ScriptedChunks, tasks, 0, fixed_rate(1), config=config)
    for name, scheduler in [(f"k = {k}", fixed_rate(k)) for k in RATES] + [("segment oracle", segment_oracle)]:
        out = base if name == "k = 1" else execute(ScriptedChunks, tasks, 0, scheduler, config=config)
        both = out["success"] & base["success"]
        speedup = base["steps"][both].mean() / out["steps"][both].mean()
        print(f"{label:>22} {name:>15}: success {out['success'].mean():.3f}  speed-up {speedup:.2f}x")
