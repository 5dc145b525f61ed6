"""Pilot: is the proportional mix's loss batch-order noise, or the critics? (not a claim check)

    python scripts/pilot_vlgor_mix.py --demos demos.npz --imagined vlgor.safetensors.imagined.safetensors
                                      [--orders 3] [--seed 0]

``embodied vlgor --set mix=proportional`` lost 0.08 on training and unseen tasks against the
same offline RL on real data (docs/vlgor.md, the tool's pilot). With the data, the
initialisation, the hyper-parameters and the evaluation tasks of ``embodied vlgor --seed S``
(``VlgorToolConfig`` defaults), this trains, for each batch-order seed 0 .. orders-1 (order 0
is the tool's own run):

* ``real``: IQL critics and AWR on the real demonstrations only;
* ``proportional``: critics on real + the kept imagined transitions, imagined rows drawn as often
  as each demonstration row (the tool's ``mix=proportional``);
* ``real_critics``: the same imagined pool, weighted by critics that saw the real data only.

Success on the tool's 100 training and 100 unseen tasks. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from nanorepro.common.checkpoint import load_checkpoint
from nanorepro.common.seeding import seed_everything
from nanorepro.embodied.demos import load_demos
from nanorepro.embodied.offline_rl import advantage_weights, awr_pools, demo_transitions, fit_critics
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, Pool, demo_tensors, evaluate, fit_policy
from nanorepro.embodied.tools import VlgorToolConfig, suite
from nanorepro.envs.tabletop import sample_tasks, scene_seed
from nanorepro.rl.iql import IQLConfig

VARIANTS = ("real", "proportional", "real_critics")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demos", type=Path, required=True)
    parser.add_argument("--imagined", type=Path, required=True, help="<out>.imagined.safetensors of embodied vlgor")
    parser.add_argument("--orders", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="the seed embodied vlgor ran with")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cfg = VlgorToolConfig()
    data = load_demos(args.demos)
    imagined = load_checkpoint(args.imagined)["transitions"]
    H, view_size = int(data["chunk"]), int(data["head"].shape[1])
    real = demo_transitions(data, H)
    obs, targets = demo_tensors(data, H)
    real_obs = {k: obs[k] for k in ("state", "instruction")}
    share = len(imagined["chunk"]) / (len(imagined["chunk"]) + len(targets))
    iql_cfg = IQLConfig(expectile=cfg.expectile, beta=cfg.beta)
    config = suite(cfg.grasp_max_speed, view_size)
    evaluation = {split: scene_seed(args.seed, f"vlgor evaluation {split}") for split in ("train", "unseen")}
    out: dict = {"imagined_transitions": len(imagined["chunk"]), "share": share, "runs": []}
    for order in range(args.orders):
        for variant in VARIANTS:
            t0 = time.time()
            seed_everything(args.seed)
            policy = ChunkPolicy(PolicyConfig(horizon=H, view_size=view_size, encoder="objects"))
            gen = torch.Generator().manual_seed(args.seed + order)
            if variant == "real_critics":
                iql, _ = fit_critics(real, cfg.iql_steps, args.seed, gen, iql_cfg)
                pools = [Pool(real_obs, targets, advantage_weights(iql, real_obs["state"], real_obs["instruction"],
                                                                   targets)),
                         Pool({k: imagined[k] for k in ("state", "instruction")}, imagined["chunk"],
                              advantage_weights(iql, imagined["state"], imagined["instruction"], imagined["chunk"]))]
                fractions = [1 - share, share]
            else:
                extra = imagined if variant == "proportional" else None
                pools, fractions, _ = awr_pools(real, real_obs, targets, extra, cfg.iql_steps, args.seed, gen,
                                                iql_cfg, share)
            fit_policy(policy, pools, cfg.policy_steps, cfg.policy_batch, cfg.policy_lr, gen, fractions)
            success = {split: float(evaluate(policy, sample_tasks(split, cfg.eval_tasks, scenes), scenes,
                                             cfg.max_steps, config).mean()) for split, scenes in evaluation.items()}
            out["runs"].append({"order": order, "variant": variant, **success, "s": round(time.time() - t0, 1)})
            print(json.dumps(out["runs"][-1]), flush=True)
    for variant in VARIANTS:
        rows = [r for r in out["runs"] if r["variant"] == variant]
        out[variant] = {split: [float(np.mean([r[split] for r in rows])), float(np.std([r[split] for r in rows],
                                                                                       ddof=1))]
                        for split in ("train", "unseen")} if len(rows) > 1 else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
