"""Pilot: why the inverse-soft-Q learners stall on HalfCheetah while GAIL learns (not a claim check).

    python scripts/pilot_imitation_ablation.py --learner dqdm --critics 2 --learn-temperature \
        [--env HalfCheetah-v5] [--init-temperature 0.1] [--seed 0] [--env-steps 100000] [--out FILE]

In ``dual_qdm_mujoco`` the Q-based learners (IQ-E, IQ-M, Dual Q-DM) differ from GAIL (DAC) in
more than the objective: one critic (IQ-Learn's MuJoCo recipe) against twin critics, and a
fixed temperature (Dual Q-DM's script: 0.001 on HalfCheetah) against SAC's learned one
(starting at 0.1). This runs one learner on one env with exactly the experiment's ``full``
budget and settings (``MujocoILConfig()``: 128-wide, 128 + 128 batch, 100k env steps,
an update every 2nd step, 10 evaluation episodes every 5k steps, one subsampled expert
trajectory) and only the named changes, so the committed ``full`` results are its
baseline. ``--subsample 1`` gives the learner the whole expert trajectory (1,000 pairs on
HalfCheetah), the data Dual Q-DM's own HalfCheetah script uses. Prints the curve
(normalised return and the update's diagnostics at each evaluation) and writes it as JSON
to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from nanorepro.common.io import atomic_write_json
from nanorepro.imitation.demos import bundled_demos_path, load_demos
from nanorepro.imitation.learners import make_learner
from nanorepro.imitation.mujoco_experiment import LEARNERS, MujocoILConfig, normalise
from nanorepro.rl.online import make_env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="HalfCheetah-v5", choices=["HalfCheetah-v5", "Hopper-v5"])
    parser.add_argument("--learner", default="dqdm", choices=LEARNERS)
    parser.add_argument("--critics", type=int, default=1, choices=[1, 2])
    parser.add_argument("--learn-temperature", action="store_true")
    parser.add_argument("--init-temperature", type=float, default=None,
                        help="default: the experiment's fixed temperature for the env")
    parser.add_argument("--subsample", type=int, default=None,
                        help="keep every k-th expert transition (default: the experiment's 20; 1: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-steps", type=int, default=100_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.learner in ("bc", "gail") and (args.critics != 1 or args.learn_temperature or args.init_temperature):
        parser.error("--critics, --learn-temperature and --init-temperature apply to the Q-based learners only")
    torch.set_num_threads(1)

    exp = replace(MujocoILConfig(), env_steps=args.env_steps)
    if args.subsample is not None:
        exp = replace(exp, subsample=args.subsample)
    settings = next(s for s in exp.settings if s.env == args.env)
    cfg = exp.learner_config(settings)
    cfg = replace(cfg, critics=args.critics, learn_temperature=args.learn_temperature,
                  temperature=cfg.temperature if args.init_temperature is None else args.init_temperature)
    demos = load_demos(bundled_demos_path(args.env), make_env(args.env))
    expert, random = demos.meta["expert_return"], demos.meta["random_return"]

    start = time.perf_counter()
    fit = make_learner(args.learner, cfg).fit(args.env, demos, exp.budget(), seed=args.seed)
    wall = time.perf_counter() - start
    diagnostics = ("alpha", "entropy", "r_hat_expert", "r_hat_replay", "penalty")
    curve = [{"env_step": r["env_step"], "normalised": normalise(r["return_mean"], expert, random),
              **{k: r.get("update", {}).get(k) for k in diagnostics}} for r in fit.curve]
    for row in curve:
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    out = {"env": args.env, "learner": args.learner, "critics": args.critics,
           "learn_temperature": args.learn_temperature, "init_temperature": cfg.temperature,
           "subsample": exp.subsample, "seed": args.seed,
           "env_steps": args.env_steps, "wall_s": round(wall),
           "normalised_last5": float(np.mean([r["normalised"] for r in curve[-exp.last_evals:]])), "curve": curve}
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}))
    if args.out:
        atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
