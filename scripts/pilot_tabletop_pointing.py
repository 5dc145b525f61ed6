"""Pilot: can the chunked policy's encoders locate objects in the camera views? (not a claim check)

    python scripts/pilot_tabletop_pointing.py [--scenes 4096] [--steps 1500] [--lr 1e-3] [--seed 0]

A supervised probe of the policy's vision, apart from behaviour cloning: random place scenes
(3-5 objects, the gripper anywhere), and the policy is trained (its own L1 chunk loss,
``ChunkPolicy.loss``) to put all H waypoints on a target:

* ``centroid``: the mean position of the objects (no instruction needed: can it see them?);
* ``named``: the object whose colour the instruction names (can it bind the word to it?).

``--readout linear`` instead trains the encoder (``ChunkPolicy.features``) with a fresh linear
layer that outputs the target's absolute position (L1), bypassing the policy's head.

Each variant trains on 3/4 of the scenes and is scored on the rest by the L1 error of its last
waypoint, next to the error of always answering the training targets' median (no information).
Prints one line per (target, variant).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig
from nanorepro.envs.tabletop import Tabletop, Task, sample_task

VARIANTS = {  # views: the FiLM CNNs as used (film_scale 1); views_film16: film_scale 1/16; objects: privileged;
    # *_linear: the head with a linear path (PolicyConfig.linear_readout); *_offset1: offset_scale 1 (not 0.1)
    "views": PolicyConfig(horizon=4, channels=16, hidden=64),
    "views_film16": PolicyConfig(horizon=4, channels=16, hidden=64, film_scale=1 / 16),
    "view_tokens": PolicyConfig(horizon=4, channels=16, hidden=64, encoder="view_tokens", object_dim=32),
    "query_views": PolicyConfig(horizon=4, channels=16, hidden=64, encoder="query_views"),
    "query_views_linear": PolicyConfig(horizon=4, channels=16, hidden=64, encoder="query_views",
                                       linear_readout=True),
    "views_film16_linear": PolicyConfig(horizon=4, channels=16, hidden=64, film_scale=1 / 16, linear_readout=True),
    "query_tokens": PolicyConfig(horizon=4, channels=16, hidden=64, encoder="query_tokens", object_dim=32),
    "query_views_offset1": PolicyConfig(horizon=4, channels=16, hidden=64, encoder="query_views", offset_scale=1.0),
    "query_views_offset1_linear": PolicyConfig(horizon=4, channels=16, hidden=64, encoder="query_views",
                                               offset_scale=1.0, linear_readout=True),
    "objects": PolicyConfig(horizon=4, hidden=64, encoder="objects", object_dim=32),
}


def scenes(n: int, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Observations of n random place scenes and the two targets (n, 2)."""
    rng = np.random.default_rng(seed)
    tasks = [Task("place", sample_task("train", rng).colour, zone="top left") for _ in range(n)]
    raw = Tabletop(n, views=True).reset(tasks, rng)
    obs = {k: torch.as_tensor(raw[k]) for k in ("state", "head", "wrist", "instruction")}
    objects = obs["state"][:, 5:].view(n, 5, 5)
    present = (objects[..., :2] != 0).any(-1, keepdim=True).float()
    named = torch.stack([objects[b, (objects[b, :, 2] * 4).round() == t.colour][0, :2] for b, t in enumerate(tasks)])
    return obs, {"centroid": (objects[..., :2] * present).sum(1) / present.sum(1), "named": named}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    parser.add_argument("--targets", default="centroid,named")
    parser.add_argument("--readout", default="policy", choices=["policy", "linear"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    obs, targets = scenes(args.scenes, args.seed + 1)
    train = args.scenes * 3 // 4
    for target_name in args.targets.split(","):
        target = targets[target_name]
        chunk = torch.cat([target[:, None].expand(-1, 4, 2), torch.zeros(args.scenes, 4, 1)], -1)
        baseline = (target[train:] - target[:train].median(0).values).abs().mean().item()
        for name in args.variants.split(","):
            torch.manual_seed(args.seed)
            policy = ChunkPolicy(VARIANTS[name])
            readout = torch.nn.Linear(policy.feature_dim, 2)

            def point(rows: dict[str, torch.Tensor], policy=policy, readout=readout) -> torch.Tensor:
                if args.readout == "linear":
                    return readout(policy.features(rows))
                return policy(rows)[0][:, -1]

            params = list(policy.parameters()) + (list(readout.parameters()) if args.readout == "linear" else [])
            opt = torch.optim.Adam(params, lr=args.lr)
            generator = torch.Generator().manual_seed(args.seed)
            start = time.time()
            for _ in range(args.steps):
                idx = torch.randint(train, (64,), generator=generator)
                rows = {k: v[idx] for k, v in obs.items()}
                if args.readout == "linear":
                    loss = (point(rows) - target[idx]).abs().mean()
                else:
                    loss = policy.loss(rows, chunk[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                error = (point({k: v[train:] for k, v in obs.items()}) - target[train:]).abs().mean().item()
            print(f"{target_name:8s} {name:13s} L1 {error:.3f}  no-information {baseline:.3f}  "
                  f"ratio {error / baseline:.2f}  ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
