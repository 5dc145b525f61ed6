"""Where VLA-MBPO's time goes: a chunk imagined in the pixel world model vs a chunk run in the real suite.

    python benchmarks/bench_vla_mbpo.py [--reps 3] [--threads 1]

Chunks per second, batch 64, measured in the same run: sampled chunks executed in the real
Tabletop suite (8 control steps, both views rendered each step), the same in the pixel world
model (interleaved and independent decoding, untrained weights: the cost does not depend on
them), and one chunk-level PPO gradient step. Prints one JSON object. The paper's premise is
that real steps are expensive (a robot); in our 2-D suite a real chunk is cheap, so the
imagined/real ratio says what the world model costs here, not what it saves.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch

from nanorepro.embodied.pixel_world_model import PixelWorldModel, PixelWorldModelConfig
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, as_tensors
from nanorepro.embodied.vla_mbpo import ChunkPPO, branched_rollouts, real_rollouts
from nanorepro.envs.tabletop import Tabletop, sample_task
from timing import median_time

H, B = 8, 64


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tasks = [sample_task("train", rng) for _ in range(B)]
    policy = ChunkPolicy(PolicyConfig(horizon=H))
    starts = as_tensors(Tabletop(B).reset(tasks, np.random.default_rng(0)))
    gen = torch.Generator().manual_seed(0)
    out = {"threads": args.threads, "batch": B}
    out["real_chunks_per_s"] = B / median_time(lambda: real_rollouts(policy, tasks, 0, H, gen), args.reps)
    for name, interleaved in (("interleaved", True), ("independent", False)):
        wm = PixelWorldModel(32, H, replace(PixelWorldModelConfig(), interleaved=interleaved)).eval()
        out[f"imagined_chunks_per_s_{name}"] = B / median_time(
            lambda wm=wm: branched_rollouts(policy, wm, starts, 1, float("inf"), generator=gen), args.reps)
    ppo = ChunkPPO(policy)
    batch = ppo.transitions(real_rollouts(policy, tasks, 0, H, gen))
    update_s = median_time(lambda: ppo.update(batch), args.reps)
    out["ppo_update_chunks_per_s_4_epochs"] = len(batch["advantage"]) / update_s
    out["imagined_over_real_time_interleaved"] = out["real_chunks_per_s"] / out["imagined_chunks_per_s_interleaved"]
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
