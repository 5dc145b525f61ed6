"""Pilot: distil a privileged object-token policy into a camera policy with DAgger (not a claim check).

    PYTHONPATH=src python scripts/pilot_tabletop_distill.py --teacher T --demos D --linear-readout
        [--encoder query_views] [--rounds 8] [--round-steps 1000] [--arms "dagger,bc only"] [--seed 0]

The teacher is a ``nanorepro embodied train-policy --encoder objects`` file (it reads the object
poses, so it cannot run on cameras); the student reads the two views. The student starts with
``--bc-steps`` of behaviour cloning on the demonstrations; each DAgger round (Ross et al. 2011;
``embodied.distill.dagger``) runs the student on ``--round-tasks`` fresh training tasks, labels
the chunk-start states it visits with the teacher's chunk, adds them to a growing pool, and
trains ``--round-steps`` more on half demonstrations, half labelled visits. The control trains
the same number of steps on the demonstrations alone. Success on 100 training and 100 unseen
tasks (chunks executed whole, 300 steps, the default suite) after every round, for both arms
and the teacher.
"""

from __future__ import annotations

import argparse
import time

import torch

from nanorepro.embodied.demos import load_demos
from nanorepro.embodied.distill import DAggerConfig, dagger
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, Pool, demo_tensors, evaluate, fit_policy
from nanorepro.embodied.tools import load_policy
from nanorepro.envs.tabletop import TabletopConfig, sample_tasks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--demos", required=True)
    parser.add_argument("--encoder", default="query_views")
    parser.add_argument("--linear-readout", action="store_true")
    parser.add_argument("--bc-steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--round-steps", type=int, default=1000)
    parser.add_argument("--round-tasks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", default="dagger,bc only", help="Comma-separated: dagger, bc only.")
    args = parser.parse_args()
    torch.set_num_threads(2)
    suite = TabletopConfig()
    teacher, data = load_policy(args.teacher), load_demos(args.demos)
    evaluation = {split: sample_tasks(split, 100, 4242 + i) for i, split in enumerate(("train", "unseen"))}

    def score(policy) -> str:
        return ", ".join(f"{split} {evaluate(policy, tasks, 4242, config=suite).mean():.2f}"
                         for split, tasks in evaluation.items())

    print(f"teacher (objects): {score(teacher)}", flush=True)
    demo_obs, demo_chunks = demo_tensors(data, teacher.cfg.horizon)
    demos = Pool(demo_obs, demo_chunks)
    cfg = PolicyConfig(horizon=teacher.cfg.horizon, encoder=args.encoder, linear_readout=args.linear_readout)
    for arm in args.arms.split(","):
        start = time.time()
        torch.manual_seed(args.seed)
        student = ChunkPolicy(cfg)
        if arm == "dagger":   # the library's loop (embodied.distill), scored after every round
            def report(row, student=student, start=start):
                print(f"[dagger] round {row['round']}: {score(student)} ({row['visits']} labelled visits, student "
                      f"solved {row['rollout_success']:.2f} of its rollouts; {time.time() - start:.0f} s)", flush=True)

            dagger(student, teacher, data, DAggerConfig(bc_steps=args.bc_steps, rounds=args.rounds,
                                                        round_steps=args.round_steps, round_tasks=args.round_tasks),
                   args.seed, suite, on_round=report)
            continue
        gen = torch.Generator().manual_seed(args.seed)   # control: the same steps on the demonstrations alone
        fit_policy(student, [demos], args.bc_steps, 64, 1e-3, gen)
        print(f"[{arm}] BC {args.bc_steps} steps: {score(student)} ({time.time() - start:.0f} s)", flush=True)
        for r in range(args.rounds):
            fit_policy(student, [demos], args.round_steps, 64, 1e-3, gen)
            print(f"[{arm}] round {r + 1}: {score(student)} (demonstrations only; {time.time() - start:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
