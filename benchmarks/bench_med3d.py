"""Speed of the TGH-MoE pieces, as ratios measured in one run (these machines are noisy).

    python benchmarks/bench_med3d.py [--reps 5] [--steps 10]

1. torch threads: ``--steps`` 3-D training steps (the ``tgh_moe`` full profile's model and
   batch of 16 volumes of 16 x 32 x 32) of the shared dense encoder and of TGH-MoE with
   1 thread against 2 threads, and greedy report generation for 16 volumes. This is the
   measurement behind ``threads=1`` of the ``tgh_moe`` experiment.
2. the price of the experts: a TGH-MoE and a parameter-matched wide dense training step
   against the shared dense encoder's, at 1 thread.
Prints one JSON object per line: median seconds of each side and their ratio.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nanorepro.med3d.data import PhantomConfig, Vocabulary, all_text, make_dataset, report_prompt
from nanorepro.med3d.model import ModelConfig, VisionLanguageModel
from nanorepro.med3d.train import TrainConfig, generate, train_3d
from timing import median_time


def setup(seed: int = 0):
    """The full profile's model sizes, 60 training volumes and one model per encoder kind."""
    rng = np.random.default_rng(seed)
    data = make_dataset(60, rng, PhantomConfig(slices=16, size=32))
    vocab = Vocabulary(all_text())
    cfg = ModelConfig(vocab=len(vocab), image=32, max_slices=16, depth_tokens=2, experts=4, top_k=2)
    models = {}
    for kind in ("dense", "tgh"):
        torch.manual_seed(seed)
        models[kind] = VisionLanguageModel(cfg).convert(kind, noise=0.01)
    ffn_params = {k: sum(p.numel() for p in models[k].encoder.upper[0].mlp.parameters()) for k in ("dense", "tgh")}
    torch.manual_seed(seed)  # wide: as many FFN parameters as TGH-MoE, as in the experiment
    factor = round(ffn_params["tgh"] / ffn_params["dense"])
    models["wide"] = VisionLanguageModel(cfg).convert("wide", wide_factor=factor)
    return data, vocab, models


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    data, vocab, models = setup()
    cfg = TrainConfig(steps=args.steps, batch_size=16, lr=1e-3, warmup=1)
    volumes = torch.from_numpy(data.volumes[:16])
    prompts = [report_prompt(np.random.default_rng(i)) for i in range(16)]

    def train_fn(kind):
        return lambda: train_3d(models[kind], data, vocab, cfg, seed=0)

    benches = {"dense_train": train_fn("dense"), "tgh_train": train_fn("tgh"),
               "tgh_generate_16": lambda: generate(models["tgh"], volumes, prompts, vocab, max_new=40)}
    for name, fn in benches.items():
        times = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            times[threads] = median_time(fn, args.reps)
        print(json.dumps({"bench": f"{name}_threads", "s_1_thread": times[1], "s_2_threads": times[2],
                          "speedup_2_over_1": times[1] / times[2]}))
    torch.set_num_threads(1)
    dense = median_time(train_fn("dense"), args.reps)
    for kind in ("tgh", "wide"):
        t = median_time(train_fn(kind), args.reps)
        print(json.dumps({"bench": f"{kind}_over_dense_train", "threads": 1, "steps": args.steps, "s_dense": dense,
                          f"s_{kind}": t, "ratio": t / dense}))


if __name__ == "__main__":
    main()
