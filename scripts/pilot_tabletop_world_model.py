"""Pilot: the state world model's regression loss, squared error vs Gaussian NLL (not a claim check).

    python scripts/pilot_tabletop_world_model.py

25 demonstrations (24 training tasks + one place task), chunks of 4; a 3-member ensemble
(2 elites, 2 x 64) trained 1,000 steps with each loss; state error of the predicted
end-of-chunk state against predicting no change, and the success head's AUROC (on the
training chunks: a probe of fitting, not of generalisation).
"""

from __future__ import annotations

import numpy as np
import torch

from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.world_model import StateWorldModel, WorldModelConfig, auroc, chunk_transitions
from nanorepro.envs.tabletop import Task, sample_task
from nanorepro.rl.ensemble import EnsembleConfig


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    tasks = [sample_task("train", rng) for _ in range(24)] + [Task("place", 1, zone="top left")]
    data = chunk_transitions(make_demos(tasks, seed=0), horizon=4)
    no_change = float((data["delta"] ** 2).mean())
    for loss in ("mse", "nll"):
        torch.manual_seed(0)
        cfg = WorldModelConfig(EnsembleConfig(members=3, elites=2, hidden=64, layers=2, max_steps=1000,
                                              eval_every=100, patience=50), loss=loss)
        model = StateWorldModel(30, 4, cfg)
        model.fit(data, data, seed=0)
        predicted, logit, _ = model.predict(data["state"], data["instruction"], data["chunk"])
        error = float(((predicted - data["state"] - data["delta"]) ** 2).mean())
        print(f"{loss}: state error {error:.5f} (no change {no_change:.5f}, ratio {error / no_change:.2f}); "
              f"success AUROC {auroc(logit.numpy(), data['solved'].numpy() > 0.5):.3f}")


if __name__ == "__main__":
    main()
