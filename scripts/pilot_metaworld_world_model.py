"""Pilot: the Tabletop state world model on Meta-World through the adapter (not a claim check).

    pip install metaworld && python scripts/pilot_metaworld_world_model.py [--task push-v3]

Meta-World's scripted policy with Gaussian action noise (std 0.3, so that episodes differ
and some fail) makes 40 training episodes (the last 5 for early stopping) and 10 held-out episodes of
150 steps; the state world model (5 members, 3 x 256, squared error) learns chunks of
H = 8 actions. Reports the
held-out end-of-chunk state error against predicting no change and the success head's
AUROC on the held-out chunks.
"""

from __future__ import annotations

import argparse
import time

import torch

from nanorepro.embodied.world_model import StateWorldModel, WorldModelConfig, auroc, chunk_starts, chunk_transitions
from nanorepro.envs.metaworld import make_metaworld_demos
from nanorepro.rl.ensemble import EnsembleConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="push-v3")
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.time()
    train = make_metaworld_demos(args.task, episodes=40, seed=0, action_noise=0.3)
    held = make_metaworld_demos(args.task, episodes=10, seed=1000, action_noise=0.3)
    print(f"{args.task}: {len(train['state'])} + {len(held['state'])} steps, episodes solved "
          f"{train['success'].mean():.0%} / {held['success'].mean():.0%} ({time.time() - t0:.0f} s)")
    train_t, held_t = chunk_transitions(train, 8), chunk_transitions(held, 8)
    episode = torch.as_tensor(train["episode"])[torch.as_tensor(chunk_starts(train["episode"], 8))]
    valid_t = {k: v[episode >= 35] for k, v in train_t.items()}       # the last 5 training episodes
    train_t = {k: v[episode < 35] for k, v in train_t.items()}
    model = StateWorldModel(39, 8, WorldModelConfig(ensemble=EnsembleConfig(
        members=5, elites=5, hidden=256, layers=3, max_steps=args.steps, eval_every=250)), action_dim=4)
    t0 = time.time()
    model.fit(train_t, valid_t, seed=0)
    predicted, logit, _ = model.predict(held_t["state"], held_t["instruction"], held_t["chunk"])
    error = float(((predicted - held_t["state"] - held_t["delta"]) ** 2).mean())
    no_change = float((held_t["delta"] ** 2).mean())
    solved = held_t["solved"].numpy() > 0.5
    print(f"held-out state error {error:.5f} vs no change {no_change:.5f} (ratio {error / no_change:.2f}); "
          f"success AUROC {auroc(logit.numpy(), solved):.3f} on {len(solved)} chunks ({solved.sum()} positive); "
          f"fit {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
