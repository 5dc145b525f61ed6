"""Does ReVal's stepwise term help or hold back its trajectory term? Reweight the two.

    python scripts/reval_loss_weights.py --seed 0 [--weights 0:1,0.1:1] [--iterations 100]

Rebuilds the `reval` experiment's SFT model for a seed (same steps and data), then runs
ReVal with each ``lambda_step:lambda_traj`` pair at the experiment's full settings and the
seed of its "reval" arm, so a pair differs from the committed arm (1:1, in
results/reval/full/) only in the loss weights. Prints one JSON line per pair: first-half
area, final accuracy (last 3 evaluations) and the curve.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import replace
from functools import partial

import torch

from nanorepro.common.seeding import rng_stream
from nanorepro.llm_rl.experiment import (
    ReValExperimentConfig,
    _t1_train,
    auc_first_half,
    final_accuracy,
    reval_arms,
    reval_sft,
)
from nanorepro.llm_rl.loop import rl_train
from nanorepro.llm_rl.policy import CharTokenizer, TinyGPT, TinyGPTConfig
from nanorepro.llm_rl.tasks import T1_ALPHABET, t1_reward, t1_sample


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default="0:1,0.1:1", help="lambda_step:lambda_traj pairs, comma-separated")
    parser.add_argument("--iterations", type=int, default=None, help="default: the experiment's (100)")
    parser.add_argument("--sft-steps", type=int, default=None, help="default: the experiment's (800)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg, seed = ReValExperimentConfig(), args.seed
    cfg = replace(cfg, iterations=args.iterations or cfg.iterations, sft_steps=args.sft_steps or cfg.sft_steps)
    tok = CharTokenizer(T1_ALPHABET)
    torch.manual_seed(seed)  # as reval_run: the same initialisation, demonstrations and SFT steps
    base = TinyGPT(TinyGPTConfig(tok.vocab_size, cfg.d_model, cfg.layers, 4, 40))
    reval_sft(base, tok, cfg, seed)
    test = t1_sample(rng_stream(seed, "test"), cfg.eval_problems, "test", cfg.numbers)
    arm = reval_arms(cfg)["reval"]
    budget = cfg.iterations * cfg.prompts_per_iter * cfg.group
    for pair in args.weights.split(","):
        step, traj = (float(x) for x in pair.split(":"))
        rl = replace(arm, reval=replace(arm.reval, lambda_step=step, lambda_traj=traj))
        curve = rl_train(copy.deepcopy(base), tok, partial(_t1_train, numbers=cfg.numbers), {"test": test},
                         t1_reward, rl, seed=seed * 100 + len("reval"))
        print(json.dumps({"seed": seed, "lambda_step": step, "lambda_traj": traj,
                          "first_half_area": auc_first_half(curve, budget), "final": final_accuracy(curve),
                          "curve": [(p["samples"], round(p["acc_test"], 4)) for p in curve]}), flush=True)


if __name__ == "__main__":
    main()
