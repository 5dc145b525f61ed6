"""Pilot: why the chunked BC policy fails on Tabletop — binding the instruction to an object (not a claim check).

    python scripts/pilot_object_policy.py [--demos 300] [--steps 3000] [--seed 0]

Both policies read the simulator state (privileged: object poses, colours, shapes) and the
instruction, and are cloned with the same loss (``ChunkPolicy.loss``: L1 on waypoints relative to
the gripper + grip cross-entropy, batch 256, AdamW 1e-3, cosine decay) on the same demonstrations:

* ``flat``: an MLP (3 × 512) over the flat 30-d state and the one-hot instruction words;
* ``objects``: ``ChunkPolicy(encoder="objects")``, a transformer over gripper, object and word tokens.

Success on 200 tasks of each split (300 steps, mean chunks executed whole). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.policy import PROPRIO, ChunkPolicy, PolicyConfig, evaluate, train_bc
from nanorepro.embodied.world_model import features
from nanorepro.envs.tabletop import SPLITS, sample_task
from nanorepro.nn.mlp import mlp


class FlatStatePolicy(ChunkPolicy):
    """The chunked policy's head on an MLP over the flat state and one-hot words (the baseline)."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__(cfg)
        self.flat = mlp(30 + features(torch.zeros(1, 0), torch.zeros(1, 16, dtype=torch.long), torch.zeros(1, 0))
                        .shape[1], 512, 512, layers=2)
        self.out = mlp(512 + PROPRIO, cfg.hidden, 5 * cfg.horizon, layers=2)

    def features(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        state = obs["state"]
        return torch.cat([nn.functional.relu(self.flat(features(state, obs["instruction"], state[:, :0]))),
                          state[:, :PROPRIO]], 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demos", type=int, default=300)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    demos = make_demos([sample_task("train", rng) for _ in range(args.demos)], seed=args.seed)
    eval_rng = np.random.default_rng(args.seed + 1)
    tasks = {s: [sample_task(s, eval_rng) for _ in range(200)] for s in SPLITS}
    out: dict = {"demos": args.demos, "steps": args.steps, "seed": args.seed, "threads": torch.get_num_threads()}
    for name in ("objects", "flat"):
        torch.manual_seed(args.seed)
        cfg = PolicyConfig(encoder="objects")
        policy = ChunkPolicy(cfg) if name == "objects" else FlatStatePolicy(cfg)
        t0 = time.time()
        curve = train_bc(policy, demos, args.steps, batch_size=256, seed=args.seed)
        out[name] = {"train_s": round(time.time() - t0), "final_loss": round(float(np.mean(curve[-100:])), 3),
                     **{s: float(evaluate(policy, tasks[s], args.seed + 2).mean()) for s in SPLITS}}
        print(name, out[name], flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
