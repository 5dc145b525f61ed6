"""Pilot: how often the scripted demonstrator solves each task kind, and its pacing (not a claim check).

    python scripts/pilot_tabletop_demos.py

100 training tasks and 100 novel tasks (task seed 0, scene seed 1, at most 400 steps).
"""

from __future__ import annotations

import numpy as np

from nanorepro.embodied.demos import make_demos
from nanorepro.envs.tabletop import sample_task


def main() -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "novel"):
        tasks = [sample_task(split, rng) for _ in range(100)]
        data = make_demos(tasks, seed=1, max_steps=400)
        kinds = sorted({t.kind for t in tasks})
        solved = {k: (sum(bool(s) for t, s in zip(tasks, data["success"], strict=True) if t.kind == k),
                      sum(t.kind == k for t in tasks)) for k in kinds}
        lengths = np.bincount(data["episode"])
        print(f"{split}: " + ", ".join(f"{k} {a}/{n}" for k, (a, n) in solved.items())
              + f"; mean length {lengths.mean():.0f} steps (max {lengths.max()}); "
              f"precise steps {data['precise'].mean():.0%}")


if __name__ == "__main__":
    main()
