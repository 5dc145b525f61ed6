"""DAgger from a privileged teacher: a camera policy that learns where behaviour cloning stalls.

Behaviour cloning of the camera policy on the demonstrations stays near 10% success on
Tabletop (``docs/tabletop.md``, T1), while the object-token policy, which reads the object
poses, solves ~80% of training tasks. DAgger (Ross, Gordon & Bagnell 2011) with that policy
as the expert — the privileged-teacher recipe of "Learning by Cheating" (Chen et al. 2019) —
trains the camera student on the states *it* visits, labelled with the teacher's chunk:

    pi_0 = BC on the demonstrations
    for round i = 1..N:
        run pi_{i-1} on fresh training tasks; at every chunk start record (views, state, instruction)
        D <- D + {(obs, teacher(obs))}                       (grip labels thresholded at 0.5)
        pi_i <- pi_{i-1} trained on batches half demonstrations, half D    (our choice of mixture)

No beta-mixture of teacher and student actions (beta = 0 from round 1: the student always
drives). The teacher must read the state (``encoder="objects"``); the student anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from nanorepro.embodied.policy import ChunkPolicy, Pool, demo_tensors, fit_policy, rollout
from nanorepro.envs.tabletop import TabletopConfig, sample_tasks, scene_seed

VIEW_KEYS = ("state", "head", "wrist", "instruction")


@dataclass(frozen=True)
class DAggerConfig:
    bc_steps: int = 1000          # behaviour cloning on the demonstrations before the first round
    rounds: int = 16             # the pilot's student took off after round 8 (docs/tabletop.md)
    round_steps: int = 1000       # gradient steps per round
    round_tasks: int = 200        # fresh training tasks the student runs per round
    demo_fraction: float = 0.5    # share of each batch drawn from the demonstrations
    batch: int = 64
    lr: float = 1e-3
    max_steps: int = 300          # control steps per rollout


def teacher_labels(teacher: ChunkPolicy, visits: dict[str, np.ndarray]) -> np.ndarray:
    """(n, H, 3) the teacher's chunk at each visited state: its mean waypoints, grips as 0/1."""
    label = teacher.act({k: visits[k] for k in ("state", "instruction")})
    label[..., 2] = label[..., 2] > 0.5
    return label.astype(np.float32)


def dagger(student: ChunkPolicy, teacher: ChunkPolicy, demos: dict[str, np.ndarray], cfg: DAggerConfig, seed: int,
           suite: TabletopConfig = TabletopConfig(), state: dict | None = None, save=None, on_round=None
           ) -> list[dict]:
    """Train ``student`` in place (BC, then ``cfg.rounds`` DAgger rounds); returns one row per round: the
    labelled visits so far and the success of the student's own rollouts that round (before training on them).

    Resumable at round boundaries: after each round the student, the sampler, the labelled visits and the
    history go into ``state`` and ``save()`` is called; given that ``state``, training continues from there.
    """
    if teacher.cfg.encoder != "objects":
        raise ValueError(f"the teacher must read the object poses (encoder 'objects'), not '{teacher.cfg.encoder}'")
    if teacher.cfg.horizon != student.cfg.horizon:
        raise ValueError(f"teacher chunks of {teacher.cfg.horizon} waypoints, student chunks of {student.cfg.horizon}")
    state = {} if state is None else state
    suite = dataclasses.replace(suite, view_size=student.cfg.view_size)   # the cameras the student reads
    obs, chunks = demo_tensors(demos, student.cfg.horizon)
    demo_pool = Pool(obs, chunks)
    generator = torch.Generator().manual_seed(seed)
    fractions = [cfg.demo_fraction, 1.0 - cfg.demo_fraction]
    if "round" in state:
        student.load_state_dict(state["student"])
        generator.set_state(state["generator"])
        done, history, visits = state["round"], list(state["history"]), dict(state["visits"])
    else:
        fit_policy(student, [demo_pool], cfg.bc_steps, cfg.batch, cfg.lr, generator)
        done, history, visits = 0, [], {}
    for r in range(done, cfg.rounds):
        round_seed = scene_seed(seed, f"dagger round {r}")
        seen = rollout(student, sample_tasks("train", cfg.round_tasks, round_seed), round_seed, cfg.max_steps,
                       suite, record=True)
        new = {k: torch.as_tensor(seen[k]) for k in VIEW_KEYS}
        new["chunk"] = torch.as_tensor(teacher_labels(teacher, seen))
        visits = {k: torch.cat([visits[k], v]) if visits else v for k, v in new.items()}
        pool = Pool({k: visits[k] for k in VIEW_KEYS}, visits["chunk"])
        fit_policy(student, [demo_pool, pool], cfg.round_steps, cfg.batch, cfg.lr, generator, fractions=fractions)
        history.append({"round": r + 1, "visits": len(pool), "rollout_success": float(seen["success"].mean())})
        if on_round:
            on_round(history[-1])
        if save is not None:
            state.update(round=r + 1, student=student.state_dict(), generator=generator.get_state(),
                         visits=visits, history=history)
            save()
    student.eval()
    return history
