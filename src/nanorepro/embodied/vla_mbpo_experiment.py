"""Experiment ``vla_mbpo``: fine-tune the chunked BC policy with chunk-level PPO in the pixel world model.

Per seed, on the Tabletop training tasks (see docs/vla_mbpo.md):

1. scripted demonstrations -> the ACT-style chunked policy by behaviour cloning (the base);
2. the multi-view pixel world model, interleaved and independent view decoding (shared VQ tokenizers);
3. for each method, ``rounds`` rounds; each round runs the current policy on a few real tasks
   (the real-step budget, the same tasks for every method), then improves it, then evaluates it on
   held-out training tasks (success vs real steps used):
   * VLA-MBPO, branch length k in {1, 2, 3}: branches start at demonstration frames and at the
     policy's own real chunk starts, grow to k chunks with MBPO's schedule, reward from the
     world model's success head, cut when its token entropy passes the 90th percentile of
     held-out real chunks; chunk-level PPO on them;
   * the same with k = 2 in the independently decoding world model (the ablation);
   * full-horizon imagination (Dreamer-like): branches from first frames for the whole episode;
   * PPO in the real suite on the round's real rollouts (the same real steps);
   * IQL on the demonstrations, extracted into the policy by advantage-weighted regression.

Every imagination method sees the same number of imagined chunks per PPO iteration. Claim
checks were fixed before the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from nanorepro.common.experiment import ClaimCheck, Experiment, Metrics, Profile, RunContext, Table
from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.experiment import _mean
from nanorepro.embodied.offline_rl import advantage_weights, demo_transitions, fit_critics
from nanorepro.embodied.pixel_world_model import PixelWorldModel, PixelWorldModelConfig, VQConfig, token_transitions
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, Pool, as_tensors, evaluate, fit_policy, train_bc
from nanorepro.embodied.vla_mbpo import (
    ImaginedPPO,
    LoopConfig,
    PPOConfig,
    branched_rollouts,
    demo_starts,
    real_rollouts,
    uncertainty_cut,
)
from nanorepro.embodied.world_model import chunk_starts, demo_chunks
from nanorepro.envs.tabletop import Tabletop, TabletopConfig, sample_task

IMAGINED = {"k1": (1, "interleaved"), "k2": (2, "interleaved"), "k3": (3, "interleaved"),
            "k2_independent": (2, "independent"), "full": (0, "interleaved")}   # 0: the whole episode
METHODS = ("bc", "k1", "k2", "k3", "full", "k2_independent", "real_ppo", "iql")
LABELS = {"bc": "BC policy (base)", "k1": "VLA-MBPO k = 1", "k2": "VLA-MBPO k = 2", "k3": "VLA-MBPO k = 3",
          "full": "full-horizon imagination", "k2_independent": "VLA-MBPO k = 2, independent views",
          "real_ppo": "PPO in the real suite", "iql": "IQL on demonstrations"}


@dataclass(frozen=True)
class VlaMbpoConfig:
    horizon: int = 8
    demos: int = 400
    held_out_demos: int = 30            # calibrate the uncertainty cut on their chunks
    policy_steps: int = 4000
    vq_steps: int = 1500
    wm_steps: int = 1200
    rounds: int = 3
    real_tasks_per_round: int = 16      # the policy's own real episodes per round (all methods but BC, IQL)
    max_steps: int = 200                # per real episode (and per evaluation episode)
    iterations_per_round: int = 60      # PPO iterations on imagined data per round
    imagined_chunks: int = 64           # per iteration, for every branch length (branches = this // k)
    full_horizon: int = 10              # chunks a full-horizon branch runs (demonstrations average ~9)
    uncertainty_quantile: float = 0.9   # cut a branch above this quantile of held-out real chunks' entropy
    own_start_fraction: float = 0.5     # branch starts from the policy's own real steps, once there are some
    retain_epochs: int = 1              # PPO is on-policy: imagined data lives one iteration
    eval_tasks: int = 150
    imagined_eval_tasks: int = 60       # the final policy imagined from these evaluation tasks' first frames
    iql_steps: int = 2000
    awr_steps: int = 500
    ppo_lr: float = 3e-5
    ppo_epochs: int = 4
    clip: float = 0.1                   # VLA-MBPO's
    kl_coef: float = 0.0                # KL to the BC policy (VLA-MBPO: none)

    def ppo(self) -> PPOConfig:
        return PPOConfig(lr=self.ppo_lr, epochs=self.ppo_epochs, clip=self.clip, kl_coef=self.kl_coef)

    def loop(self, branch_chunks: int) -> LoopConfig:
        return LoopConfig(branch_chunks, self.iterations_per_round, self.imagined_chunks, self.full_horizon,
                          self.own_start_fraction, self.retain_epochs)


def _first_frames(tasks, seed: int, view_size: int) -> dict[str, torch.Tensor]:
    sim = Tabletop(len(tasks), TabletopConfig(view_size=view_size))
    return as_tensors(sim.reset(tasks, np.random.default_rng(seed)))


def _imagined_success(policy: ChunkPolicy, wm: PixelWorldModel, starts: dict[str, torch.Tensor], chunks: int
                      ) -> float:
    """Fraction of episodes the world model calls solved when the policy's mean chunks run for ``chunks``."""
    out = branched_rollouts(policy, wm, starts, chunks, float("inf"), deterministic=True)
    return float(out["reward"].sum(0).clamp(max=1).mean())


def _iql_finetune(policy: ChunkPolicy, demos: dict[str, np.ndarray], cfg: VlaMbpoConfig, seed: int) -> dict:
    """IQL critics over (state, instruction words, flattened chunk) on demonstration chunks; AWR into the policy.

    The critics read the simulator state (object poses: asymmetric actor-critic, offline only); the
    policy reads the views. Reward 1 on the chunk after which the task is solved.
    """
    transitions = demo_transitions(demos, cfg.horizon)
    rows = chunk_starts(demos["episode"], cfg.horizon)
    instruction, chunk = transitions["instruction"], transitions["chunk"]
    gen = torch.Generator().manual_seed(seed)
    iql, info = fit_critics(transitions, cfg.iql_steps, seed, gen)
    weights = advantage_weights(iql, transitions["state"], instruction, chunk)
    obs = {**{k: torch.as_tensor(demos[k][rows]) for k in ("state", "head", "wrist")}, "instruction": instruction}
    fit_policy(policy, [Pool(obs, chunk, weights)], cfg.awr_steps, 64, 1e-4, gen, cosine=False, grad_clip=1.0)
    return {"critic_loss": info.get("critic_loss", float("nan")), "weight_mean": float(weights.mean()),
            "weight_max": float(weights.max())}


def vla_mbpo_run(cfg: VlaMbpoConfig, ctx: RunContext) -> Metrics:
    state = ctx.load_checkpoint() or {}
    results, wall = state.setdefault("results", {}), state.setdefault("wall", {})
    seed, H = ctx.seed, cfg.horizon
    bar = ctx.task(f"vla_mbpo seed {seed}", total=2 + len(METHODS))
    rng = np.random.default_rng(seed)
    demos = make_demos([sample_task("train", rng) for _ in range(cfg.demos)], seed=seed, horizon=H)
    held = make_demos([sample_task("train", rng) for _ in range(cfg.held_out_demos)], seed=seed + 10_000, horizon=H)
    task_rng = np.random.default_rng(seed + 20_000)
    eval_tasks = [sample_task("train", task_rng) for _ in range(cfg.eval_tasks)]
    round_tasks = [[sample_task("train", task_rng) for _ in range(cfg.real_tasks_per_round)]
                   for _ in range(cfg.rounds)]
    eval_seed = seed + 30_000
    view_size = demos["head"].shape[1]
    pcfg = PolicyConfig(horizon=H, view_size=view_size)

    # 1. the base: behaviour cloning on the demonstrations
    if "policy" not in state:
        t0 = time.time()
        torch.manual_seed(seed)
        policy = ChunkPolicy(pcfg)
        losses = train_bc(policy, demos, cfg.policy_steps, seed=seed, grad_clip=1.0)
        state["policy"] = policy.state_dict()
        results["bc"] = {"success": float(evaluate(policy, eval_tasks, eval_seed, cfg.max_steps).mean()),
                         "final_loss": float(np.mean(losses[-100:]))}
        results["bc"]["curve"] = [[0, results["bc"]["success"]]]
        wall["bc_s"] = time.time() - t0
        ctx.save_checkpoint(state)
    bar.advance(1)

    # 2. the pixel world models (shared tokenizers) and each one's uncertainty cut
    base = PixelWorldModelConfig(vq=VQConfig(steps=cfg.vq_steps), steps=cfg.wm_steps)
    models = {"interleaved": PixelWorldModel(view_size, H, base),
              "independent": PixelWorldModel(view_size, H, PixelWorldModelConfig(
                  vq=base.vq, steps=cfg.wm_steps, interleaved=False))}
    if "world_models" not in state:
        t0 = time.time()
        torch.manual_seed(seed)
        for v in ("head", "wrist"):
            models["interleaved"].tokenizers[v].fit(torch.as_tensor(demos[v]), seed=seed)
        models["independent"].tokenizers.load_state_dict(models["interleaved"].tokenizers.state_dict())
        transitions = token_transitions(models["interleaved"], demos, H)
        held_chunks = {k: torch.as_tensor(v) for k, v in demo_chunks(held, H).items()}
        thresholds = {}
        for name, model in models.items():
            torch.manual_seed(seed)
            model.fit(transitions, seed=seed)
            model.eval()
            thresholds[name] = uncertainty_cut(model, held_chunks, cfg.uncertainty_quantile)
        state["world_models"] = {name: m.state_dict() for name, m in models.items()}
        state["thresholds"] = thresholds
        wall["world_models_s"] = time.time() - t0
        ctx.save_checkpoint(state)
    for name, model in models.items():
        model.load_state_dict(state["world_models"][name])
        model.eval()
    bar.advance(1)

    demo_pool, demo_first = demo_starts(demos)
    imagined_starts = _first_frames(eval_tasks[: cfg.imagined_eval_tasks], eval_seed, view_size)
    episode_chunks = -(-cfg.max_steps // H)

    def fresh_policy() -> ChunkPolicy:
        policy = ChunkPolicy(pcfg)
        policy.load_state_dict(state["policy"])
        return policy.eval()

    # 3. the methods
    for method in METHODS:
        if method in results and method != "bc":
            bar.advance(1)
            continue
        t0 = time.time()
        policy = fresh_policy()
        if method == "bc":
            results["bc"]["imagined_success"] = _imagined_success(policy, models["interleaved"], imagined_starts,
                                                                  episode_chunks)
        elif method == "iql":
            info = _iql_finetune(policy, demos, cfg, seed)
            success = float(evaluate(policy, eval_tasks, eval_seed, cfg.max_steps).mean())
            results["iql"] = {"success": success, "curve": [[0, success]], **info,
                              "imagined_success": _imagined_success(policy, models["interleaved"],
                                                                    imagined_starts, episode_chunks)}
        else:
            results[method] = _finetune(method, policy, models, state["thresholds"], demo_pool, demo_first,
                                        round_tasks, eval_tasks, eval_seed, imagined_starts, results["bc"]["success"],
                                        cfg, seed)
        wall["bc_imagined_s" if method == "bc" else f"{method}_s"] = time.time() - t0
        ctx.save_checkpoint(state)
        bar.advance(1)
    bar.finish()
    return {"results": results, "thresholds": state["thresholds"], "wall": wall,
            "sizes": {"demo_steps": len(demos["state"]), "demos_solved": float(demos["success"].mean())}}


def _finetune(method, policy, models, thresholds, demo_pool, demo_first, round_tasks, eval_tasks, eval_seed,
              imagined_starts, bc_success, cfg: VlaMbpoConfig, seed: int) -> dict:
    """Rounds of (real episodes -> PPO on imagined or real chunks -> evaluation) for one method."""
    k, wm_name = IMAGINED.get(method, (None, "interleaved"))
    loop = ImaginedPPO(policy, models[wm_name], thresholds[wm_name], demo_pool, demo_first, cfg.loop(k or 0),
                       cfg.ppo(), seed)
    real_steps = 0
    curve, imagined_curve, lengths, stats = [[0, bc_success]], [], [], {}
    for r, tasks in enumerate(round_tasks):
        real = real_rollouts(policy, tasks, seed + 40_000 + r, cfg.max_steps, loop.generator)
        real_steps += real["real_steps"]
        if method == "real_ppo":
            stats = loop.ppo.update(loop.ppo.transitions(real))
        else:
            loop.add_real(real)
            info = loop.improve()
            imagined_curve.append(info["branch_success"])
            lengths += info["lengths"]
            stats = info["stats"]
        success = float(evaluate(policy, eval_tasks, eval_seed, cfg.max_steps).mean())
        curve.append([real_steps, success])
    episode_chunks = -(-cfg.max_steps // cfg.horizon)
    return {"success": curve[-1][1], "curve": curve, "real_steps": real_steps, "branch_success": imagined_curve,
            "mean_branch_chunks": float(np.mean(lengths)) if lengths else None, "last_update": stats,
            "imagined_success": _imagined_success(policy, models["interleaved"], imagined_starts, episode_chunks)}


# --------------------------------------------------------------------------- claim checks (fixed before the run)

def _success(runs: list[Metrics], method: str, key: str = "success") -> float | None:
    return _mean([r["results"][method][key] for r in runs])


def _gain(runs: list[Metrics]) -> float | None:
    a, b = _success(runs, "k2"), _success(runs, "bc")
    return None if a is None or b is None else a - b


def _branch_margin(runs: list[Metrics]) -> float | None:
    """max(k = 2, k = 3) - max(k = 1, full horizon): > 0 when a 2-3 chunk branch beats both."""
    values = {m: _success(runs, m) for m in ("k1", "k2", "k3", "full")}
    if any(v is None for v in values.values()):
        return None
    return max(values["k2"], values["k3"]) - max(values["k1"], values["full"])


VLA_MBPO_CHECKS = (
    ClaimCheck("V1", "VLA-MBPO (k = 2) real-suite success minus the BC policy's, 150 held-out training tasks "
                     "(the paper: +9.1 points on LIBERO)", _gain, ">=", 0.08),
    ClaimCheck("V2", "Branch length 2-3 beats both 1 and the full horizon: max(k=2, k=3) - max(k=1, full), "
                     "real-suite success", _branch_margin, ">=", 0.01),
    ClaimCheck("R1", "VLA-MBPO (k = 2) imagined success (final policy, world model, 60 tasks' first frames)",
               lambda r: _success(r, "k2", "imagined_success")),
    ClaimCheck("R2", "VLA-MBPO (k = 2) real success", lambda r: _success(r, "k2")),
    ClaimCheck("R3", "PPO in the real suite, same real steps: success", lambda r: _success(r, "real_ppo")),
    ClaimCheck("R4", "IQL on demonstrations: success", lambda r: _success(r, "iql")),
    ClaimCheck("R5", "Ablation: independent minus interleaved view decoding (k = 2), real success",
               lambda r: None if _success(r, "k2") is None else _success(r, "k2_independent") - _success(r, "k2")),
)


def vla_mbpo_tables(runs: list[Metrics]) -> list[Table]:
    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    rows = []
    for m in METHODS:
        steps = _mean([r["results"][m].get("real_steps", 0) for r in runs])
        rows.append([LABELS[m], fmt(_success(runs, m)), fmt(_success(runs, m, "imagined_success")),
                     f"{steps:.0f}", fmt(_mean([r["results"][m].get("mean_branch_chunks") for r in runs]))])
    main = Table(f"Real-suite and imagined success (mean of {len(runs)} seeds; real: 150 held-out training tasks; "
                 "imagined: the final policy's mean chunks in the interleaved world model from 60 of their first "
                 "frames)", ["method", "real success", "imagined success", "real steps used",
                             "mean branch length (chunks)"], rows)
    curve_rows = []
    for m in METHODS[1:-1]:
        points = list(zip(*[r["results"][m]["curve"] for r in runs], strict=True))
        curve_rows.append([LABELS[m], *(f"{np.mean([p[1] for p in pt]):.3f} @ {np.mean([p[0] for p in pt]):.0f}"
                                        for pt in points)])
    n = len(runs[0]["results"]["k2"]["curve"])
    curve = Table("Success after each round @ real steps used (mean of seeds)", ["method", *map(str, range(n))],
                  curve_rows)
    return [main, curve]


def vla_mbpo_plot(runs: list[Metrics]) -> dict:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for m in METHODS[1:-1]:
        points = list(zip(*[r["results"][m]["curve"] for r in runs], strict=True))
        axes[0].plot([np.mean([p[0] for p in pt]) for pt in points], [np.mean([p[1] for p in pt]) for pt in points],
                     marker="o", label=LABELS[m])
    for m in ("bc", "iql"):
        axes[0].axhline(_success(runs, m), ls="--", lw=1, color="grey" if m == "bc" else "black", label=LABELS[m])
    axes[0].set_xlabel("real control steps used")
    axes[0].set_ylabel("real-suite success")
    axes[0].legend(fontsize=7)
    x = np.arange(len(METHODS))
    axes[1].bar(x - 0.2, [_success(runs, m) for m in METHODS], 0.4, label="real")
    axes[1].bar(x + 0.2, [_success(runs, m, "imagined_success") for m in METHODS], 0.4, label="imagined")
    axes[1].set_xticks(x, [LABELS[m] for m in METHODS], rotation=60, ha="right", fontsize=7)
    axes[1].set_ylabel("success")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return {"success": fig}


EXPERIMENT = Experiment(
    name="vla_mbpo",
    system="vla_mbpo",
    summary="Chunk-level PPO on branched rollouts in the two-view pixel world model fine-tunes the chunked BC "
            "policy; against full-horizon imagination, real-suite PPO at the same real steps and IQL",
    profiles={
        "smoke": Profile(VlaMbpoConfig(demos=6, held_out_demos=3, policy_steps=4, vq_steps=3, wm_steps=3, rounds=1,
                                       real_tasks_per_round=2, max_steps=16, iterations_per_round=2,
                                       imagined_chunks=6, full_horizon=2, eval_tasks=3, imagined_eval_tasks=2,
                                       iql_steps=3, awr_steps=2), seeds=1),
        "quick": Profile(VlaMbpoConfig(demos=60, held_out_demos=10, policy_steps=400, vq_steps=200, wm_steps=200,
                                       rounds=2, real_tasks_per_round=8, iterations_per_round=6, eval_tasks=30,
                                       imagined_eval_tasks=15, iql_steps=400, awr_steps=80), seeds=1),
        "full": Profile(VlaMbpoConfig(), seeds=3),
    },
    run=vla_mbpo_run, checks=VLA_MBPO_CHECKS, plot=vla_mbpo_plot, tables=vla_mbpo_tables, threads=1, device="cpu",
)
