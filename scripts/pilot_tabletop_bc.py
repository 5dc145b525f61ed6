"""Pilot: behaviour cloning of the chunked policy on Tabletop demonstrations (not a claim check).

    python scripts/pilot_tabletop_bc.py [--demos 300] [--steps 3000]

Makes demonstrations for training tasks, trains the chunked policy by BC, and reports the
share of 60 training and 60 unseen tasks solved within 200 steps.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.policy import ENCODERS, ChunkPolicy, PolicyConfig, evaluate, train_bc
from nanorepro.envs.tabletop import sample_task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demos", type=int, default=300)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", default="l1")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--grad-clip", type=float, default=None)
    parser.add_argument("--film-scale", type=float, default=1.0, help="PolicyConfig.film_scale (1/16: the fix)")
    parser.add_argument("--encoder", default="views", choices=ENCODERS)
    parser.add_argument("--linear-readout", action="store_true", help="PolicyConfig.linear_readout")
    parser.add_argument("--offset-scale", type=float, default=0.1, help="PolicyConfig.offset_scale")
    parser.add_argument("--relative-keypoints", action="store_true", help="PolicyConfig.relative_keypoints")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    tasks = [sample_task("train", rng) for _ in range(args.demos)]
    t0 = time.time()
    data = make_demos(tasks, seed=args.seed)
    print(f"{args.demos} demonstrations, {data['success'].mean():.0%} solved, {len(data['state'])} steps "
          f"({time.time() - t0:.0f} s)")
    torch.manual_seed(args.seed)
    policy = ChunkPolicy(PolicyConfig(loss=args.loss, channels=args.channels, film_scale=args.film_scale,
                                      encoder=args.encoder, linear_readout=args.linear_readout,
                                      offset_scale=args.offset_scale, relative_keypoints=args.relative_keypoints))
    t0 = time.time()
    curve = train_bc(policy, data, args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     grad_clip=args.grad_clip)
    print(f"BC: loss {np.mean(curve[:20]):.1f} -> {np.mean(curve[-50:]):.1f} ({time.time() - t0:.0f} s)")
    for execute in (8, 4):
        policy.cfg = replace(policy.cfg, execute=execute)
        for split in ("train", "unseen"):
            split_rng = np.random.default_rng(args.seed + 5)
            evaluation = [sample_task(split, split_rng) for _ in range(60)]
            solved = evaluate(policy, evaluation, seed=args.seed + 7, max_steps=200)
            print(f"execute {execute}, {split}: {solved.sum()}/{len(solved)} solved")


if __name__ == "__main__":
    main()
