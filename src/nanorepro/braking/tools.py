"""The practitioner's path: make logs, train a ReinVBC policy on any logs, evaluate it on any surface.

    nanorepro braking make-data --out logs.npz
    nanorepro braking train --data logs.npz --out policy.safetensors
    nanorepro braking evaluate --policy policy.safetensors --surface '{"c1": 1.2, "c2": 25, "c3": 0.5}'

A policy file is a nanorepro checkpoint (safetensors; no pickle): the selected actor's
weights, the policy-input standardisation and the config it was trained with.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import numpy as np

from nanorepro.braking import data as logs
from nanorepro.braking.controllers import ABSGrid, ABSParams, NoisyABS, RuleBasedABS
from nanorepro.braking.evaluation import run_many, tune_abs
from nanorepro.braking.reinvbc import LearnedController, PolicyInput, ReinVBCConfig, controller, fit_from_logs
from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.common.seeding import rng_stream
from nanorepro.envs.braking import SURFACES, Road
from nanorepro.rl.sac import SACConfig

POLICY_FORMAT = "nanorepro.braking.policy/1"
TRAINING_SURFACES = ("dry_asphalt", "wet_asphalt", "snow")


@lru_cache(maxsize=4)
def tuned_abs(seed: int = 0, grid: str = "full", speeds: int = 3) -> tuple[ABSParams, float]:
    """The grid-tuned rule-based ABS on the standard training surfaces (cached per process).

    ``grid="small"`` tries one setting per threshold (the grid's first values): for tests.
    """
    roads = [Road(SURFACES[n]) for n in TRAINING_SURFACES]
    candidates = ABSGrid() if grid == "full" else ABSGrid(*(v[:1] for v in dataclasses.astuple(ABSGrid())))
    best, table = tune_abs(candidates, roads, np.linspace(15, 30, speeds), rng_stream(seed, "abs"))
    return best, table[0][1]


def make_data(out: Path, stops: int, seed: int, board, grid: str = "full") -> dict:
    board.log("tuning the rule-based ABS on dry asphalt, wet asphalt and snow (grid search)...")
    abs_params, score = tuned_abs(seed, grid)
    roads = [Road(SURFACES[n]) for n in TRAINING_SURFACES]
    ds = logs.generate(NoisyABS(abs_params), roads, stops, rng_stream(seed, "data"))
    logs.save(out, ds)
    return {"stops": ds.n_episodes, "transitions": len(ds.obs), "abs_score": score,
            "mean_distance": {s: float(ds.distance[ds.surface == s].mean()) for s in TRAINING_SURFACES}}


def train(data: Path, out: Path, cfg: ReinVBCConfig, seed: int, board) -> dict:
    """ReinVBC on the logs in ``data`` (resumable through ``<out>.ckpt.safetensors``)."""
    ds = logs.load(data)
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    state = load_checkpoint(ckpt) if ckpt.exists() else {}
    if state:
        board.log(f"resuming from {ckpt}")
    bar = board.task("braking train", total=2 * cfg.model_steps + cfg.updates + 500)
    trained = fit_from_logs(ds, cfg, seed, state=state, save=lambda: save_checkpoint(ckpt, state),
                            on_step=lambda _s: bar.advance(1), baselines=False)
    policy: LearnedController = trained.policies["reinvbc"]
    save_checkpoint(out, {
        "format": POLICY_FORMAT,
        "actor": state["policy_reinvbc"]["result"]["best_actor"],
        "inputs": policy.inputs.state_dict(),
        "history": cfg.history,
        "sac_hidden": cfg.sac_hidden,
        "config": dataclasses.asdict(cfg),
        "gate": trained.report["gate"],
    })
    ckpt.unlink(missing_ok=True)
    return {"policy": str(out), "gate": trained.report["gate"],
            "selected_update": trained.report["policies"]["reinvbc"]["best_update"]}


def load_policy(path: Path) -> LearnedController:
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != POLICY_FORMAT:
        raise UserError(f"{path} is not a nanorepro braking policy (format {POLICY_FORMAT})")
    inputs = PolicyInput(state["history"])
    inputs.load_state_dict(state["inputs"])
    return controller(state["actor"], inputs, SACConfig(hidden=state["sac_hidden"]))


def evaluate(policy_path: Path, roads: list[Road], speeds: np.ndarray, seed: int, grid: str = "full") -> list[dict]:
    """The policy and the tuned rule-based ABS on every (road, speed); one summary row per road."""
    policy = load_policy(policy_path)
    abs_params, _ = tuned_abs(0, grid)
    results = run_many({"policy": policy, "abs": RuleBasedABS(abs_params)}, roads, speeds,
                       rng_stream(seed, "evaluate"))
    rows = []
    for road, idx in results["policy"].by_road().items():
        p, a = results["policy"], results["abs"]
        rows.append({"road": road, "policy_m": float(p.distance[idx].mean()), "abs_m": float(a.distance[idx].mean()),
                     "ratio": float(p.distance[idx].mean() / a.distance[idx].mean()),
                     "policy_lock": float(p.lock_fraction[idx].mean()), "abs_lock": float(a.lock_fraction[idx].mean()),
                     "stopped": float(p.stopped[idx].mean())})
    return rows
