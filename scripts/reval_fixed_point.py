"""How much accuracy can ReVal's loss reach on T1 at all? Its KL-regularised fixed point.

    python scripts/reval_fixed_point.py [--seed 0] [--samples 64] [--betas 0.3,0.1,0.03]

With r_endo summing to beta log pi_ref(tau) (+ a prompt constant) along a trajectory, the
soft-optimal policy of ReVal's Bellman equation (src/nanorepro/llm_rl/reval.py) is
pi*(tau | x) ∝ pi_ref(tau | x) exp(R(tau) / beta). For a 0/1 reward its accuracy on prompt x
is p* = p0 e^{1/beta} / (p0 e^{1/beta} + 1 - p0), p0 the reference's sampled accuracy there.
This script rebuilds the `reval` experiment's SFT model for a seed (same steps and data),
estimates p0 per test problem from ``--samples`` samples at T = 1 and prints the mean p*
for each beta: the ceiling of a perfectly optimised ReVal, against GRPO (no KL term).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nanorepro.common.seeding import rng_stream
from nanorepro.llm_rl.experiment import ReValExperimentConfig, reval_sft
from nanorepro.llm_rl.loop import rollout
from nanorepro.llm_rl.policy import CharTokenizer, TinyGPT, TinyGPTConfig
from nanorepro.llm_rl.tasks import T1_ALPHABET, t1_reward, t1_sample


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--betas", default="0.3,0.1,0.03")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg, seed = ReValExperimentConfig(), args.seed
    tok = CharTokenizer(T1_ALPHABET)
    torch.manual_seed(seed)  # as reval_run: the same initialisation, demonstrations and SFT steps
    base = TinyGPT(TinyGPTConfig(tok.vocab_size, cfg.d_model, cfg.layers, 4, 40))
    reval_sft(base, tok, cfg, seed)
    test = t1_sample(rng_stream(seed, "test"), cfg.eval_problems, "test", cfg.numbers)
    out = rollout(base, tok, test, t1_reward, args.samples, 16, torch.Generator().manual_seed(seed + 1))
    p0 = out["R"].reshape(len(test), args.samples).float().mean(1).numpy()
    row = {"seed": seed, "samples": args.samples, "sampled_accuracy": float(p0.mean()),
           "problems_never_solved": float((p0 == 0).mean()), "problems_always_solved": float((p0 == 1).mean())}
    for beta in (float(b) for b in args.betas.split(",")):
        w = np.exp(1 / beta)
        row[f"fixed_point_beta_{beta:g}"] = float((p0 * w / (p0 * w + 1 - p0)).mean())
    print(json.dumps(row))


if __name__ == "__main__":
    main()
