"""Speed of the SIGMA pieces, as ratios measured in one run (these machines are noisy).

    python benchmarks/bench_recsys.py [--reps 5] [--items 1682]

1. torch threads: one training step (batch 256, d = 64) of SIGMA and of SASRec with
   1 thread against 2 threads, and full-catalogue scoring of 256 users. This is the
   measurement behind ``threads=1`` of the ``sigma`` and ``sigma_movielens`` experiments.
2. decoding: SIGMA's three-step generation with APF (5 prefix beams, every item of each
   bucket scored) against SASRec's single dot product over the catalogue, users per second.
Prints one JSON object per line: median seconds of each side and their ratio.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nanorepro.recsys.data import leave_out
from nanorepro.recsys.models import ModelConfig, Recommender, Trie, Vocabulary, encode_context
from nanorepro.recsys.semantic_ids import residual_kmeans
from timing import median_time


def models_and_batch(items: int, seed: int = 0):
    """SIGMA (32-code prefix + ID) and SASRec over ``items`` items, and a batch of 256 histories."""
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(0, items, rng.integers(20, 60)) for _ in range(300)]
    train, _ = leave_out(sequences, 1)
    vocab = Vocabulary(train.instruction)
    gen = torch.Generator().manual_seed(seed)
    vectors = torch.nn.functional.normalize(torch.randn(items, 64, generator=gen), dim=1)
    prefix = residual_kmeans(vectors, (32,), seed=seed)
    sigma = Recommender(ModelConfig(), len(vocab), Trie.build(prefix.codes), vectors)
    sasrec = Recommender(ModelConfig(scoring="dot", use_task=False), len(vocab),
                         Trie.build(torch.zeros(items, 0, dtype=torch.long)))
    pick = rng.choice(len(train), 256, replace=False)
    tokens, item_ctx = encode_context(train, vocab, sigma.cfg)
    target = torch.as_tensor(np.asarray(train.target))
    return {"sigma": sigma, "sasrec": sasrec}, tokens[pick], item_ctx[pick], target[pick]


def step_and_score(name: str, model: Recommender, tokens, item_ctx, target) -> dict:
    """One training step and one scoring pass of ``model`` as zero-argument functions."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    decode = {"beams": 5} if name == "sigma" else {}

    def step():
        model.train()
        loss = model.loss(tokens, item_ctx, target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def score():
        model.eval()
        model.scores(tokens, item_ctx, **decode)

    return {"train_step": step, "score_256_users": score}


def bench_threads(items: int, reps: int) -> list[dict]:
    models, tokens, item_ctx, target = models_and_batch(items)
    rows = []
    for name, model in models.items():
        for label, fn in step_and_score(name, model, tokens, item_ctx, target).items():
            times = {}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times[threads] = median_time(fn, reps)
            rows.append({"bench": f"{name}_{label}_threads", "items": items, "s_1_thread": times[1],
                         "s_2_threads": times[2], "speedup_2_over_1": times[1] / times[2]})
    return rows


def bench_decoding(items: int, reps: int, threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    models, tokens, item_ctx, _ = models_and_batch(items)
    for model in models.values():
        model.eval()
    apf = median_time(lambda: models["sigma"].scores(tokens, item_ctx, beams=5), reps)
    dot = median_time(lambda: models["sasrec"].scores(tokens, item_ctx), reps)
    return {"bench": "decode_apf_vs_dot", "items": items, "threads": threads, "users": len(tokens),
            "s_sigma_apf": apf, "s_sasrec_dot": dot, "apf_over_dot": apf / dot,
            "sigma_users_per_s": len(tokens) / apf, "sasrec_users_per_s": len(tokens) / dot}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--items", type=int, default=1682)
    args = parser.parse_args()
    for row in bench_threads(args.items, args.reps):
        print(json.dumps(row))
    print(json.dumps(bench_decoding(args.items, args.reps)))


if __name__ == "__main__":
    main()
