"""Pilot: how well VLGOR's rollout generator imagines rollouts on Tabletop (not a claim check).

    python scripts/pilot_vlgor_generator.py [--demos 200] [--steps 1500] [--seed 0] [--state-prompt]
                                            [--image-only] [--values delta|absolute]

Trains the generator (sees both first frames) and the text-only one on training-task
demonstrations, then, from the first frames of 100 held-out training tasks, samples one rollout
per frame with (a) the real instruction and (b) a counterfactual one (an unseen combination
the scene affords). Reports per generator and prompt: the fraction labelled solved by the
suite's predicate on the imagined states, the fraction that replays correctly in the true suite
(the same outcome when its chunks are executed from the real first state), the mean end-state
error of the replay, and the time to train and to sample. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.vlgor import (
    DYNAMIC,
    GeneratorConfig,
    RolloutGenerator,
    counterfactual_task,
    full_states,
    label_success,
    replay,
    rollout_arrays,
)
from nanorepro.envs.tabletop import Tabletop, sample_task, tokenize


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demos", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state-prompt", action="store_true", help="the image generator is also given s_0")
    parser.add_argument("--image-only", action="store_true", help="skip the text-only generator")
    parser.add_argument("--values", default="delta", choices=("delta", "absolute"), help="rollout token values")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    cfg = GeneratorConfig(steps=args.steps)
    data = rollout_arrays(make_demos([sample_task("train", rng) for _ in range(args.demos)], seed=args.seed,
                                     horizon=cfg.horizon), cfg.horizon, cfg.chunks)
    tasks = [sample_task("train", rng) for _ in range(100)]
    obs = Tabletop(len(tasks)).reset(tasks, np.random.default_rng(args.seed + 1))
    edited = [counterfactual_task(s, t, rng) or t for s, t in zip(obs["state"], tasks, strict=True)]
    out: dict = {"demos": args.demos, "steps": args.steps, "seed": args.seed, "state_prompt": args.state_prompt,
                 "values": args.values,
                 "counterfactual_edited": sum(e is not t for e, t in zip(edited, tasks, strict=True))}
    first = torch.as_tensor(obs["state"])
    for see_image in (True,) if args.image_only else (True, False):
        name = "image" if see_image else "text_only"
        torch.manual_seed(args.seed)
        generator = RolloutGenerator(GeneratorConfig(steps=args.steps, see_image=see_image, values=args.values,
                                                     state_prompt=see_image and args.state_prompt))
        t0 = time.time()
        curve = generator.fit(data, seed=args.seed)
        out[f"{name}_train_s"] = round(time.time() - t0, 1)
        out[f"{name}_final_loss"] = round(float(np.mean(curve[-50:])), 3)
        for prompt, prompt_tasks in (("real", tasks), ("counterfactual", edited)):
            words = torch.as_tensor(np.stack([tokenize(t.text) for t in prompt_tasks]))
            t0 = time.time()
            tokens = generator.sample(torch.as_tensor(obs["head"]), torch.as_tensor(obs["wrist"]), words,
                                      torch.Generator().manual_seed(args.seed), first_state=first[:, DYNAMIC])
            sample_s = time.time() - t0
            states, chunks = generator.decode(tokens)
            imagined = label_success(full_states(states, first), prompt_tasks).any(1).numpy()
            real = replay(obs["state"], prompt_tasks, chunks.numpy())
            end_error = np.abs(real["states"][:, -1] - states[:, -1].numpy()).mean()
            start_error = np.abs(states[:, 0].numpy() - obs["state"][:, DYNAMIC]).mean()
            out[f"{name}_{prompt}"] = {"imagined_solved": float(imagined.mean()),
                                       "replay_solved": float(real["success"].mean()),
                                       "replays_correctly": float((imagined == real["success"]).mean()),
                                       "first_state_error": round(float(start_error), 4),
                                       "end_state_error": round(float(end_error), 4),
                                       "sample_s_per_100": round(sample_s, 1)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
