"""Experiment ``vlgor``: imagined rollouts with counterfactual prompts for offline RL on unseen tasks.

Per seed, on Tabletop (see docs/vlgor.md; everything beyond VLGOR's abstract is our reconstruction):

1. scripted demonstrations of training tasks, and held-out ones;
2. the chunk-level state world model (the filter), and its thresholds: a quantile of its ensemble
   disagreement and prediction error on held-out real rollouts, passed through the generator's token
   layout (what a perfect generator would emit);
3. two rollout generators trained on the demonstrations with KALM's auxiliary tasks: one sees both
   first frames and the instruction and is given the first state (``state_prompt``: read off the
   first frame exactly; ours), the other sees only the instruction (the text-only baseline);
4. three imagined sets from real first frames of the demonstrations: VLGOR (image generator,
   counterfactual prompts: an unseen (colour, relation | zone) the scene affords), paraphrases only
   (image generator, the demonstrated task in other words), text-only (counterfactual prompts);
   rewards from the suite's success predicate on imagined states; rollouts the world model doubts
   are dropped; every rollout is also replayed in the true suite (the diagnostic, never used for training);
5. offline RL: IQL critics on real + kept imagined chunk transitions, advantage-weighted regression
   into the object-token chunked policy (``encoder="objects"``); BC and IQL on real data only as
   baselines; every policy starts from the same initialisation and gets the same updates;
6. real-suite success on the training, unseen-combination, paraphrase and novel-behaviour splits.

Claim checks were fixed before the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from nanorepro.common.experiment import ClaimCheck, Experiment, Metrics, Profile, RunContext, Table
from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.experiment import _mean
from nanorepro.embodied.offline_rl import awr_pools, demo_transitions
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, Pool, demo_tensors, evaluate, fit_policy
from nanorepro.embodied.vlgor import (
    GeneratorConfig,
    RolloutGenerator,
    filter_thresholds,
    filter_world_model,
    imagine,
    plot_rollouts,
    prompt_tasks,
    rollout_arrays,
)
from nanorepro.embodied.world_model import chunk_transitions
from nanorepro.envs.tabletop import SPLITS, sample_task
from nanorepro.rl.iql import IQLConfig

IMAGINED = {"vlgor": ("image", "counterfactual"), "paraphrase": ("image", "paraphrase"),
            "text_only": ("text", "counterfactual")}
METHODS = ("bc", "real_rl", "vlgor", "paraphrase", "text_only")
LABELS = {"bc": "BC (real demonstrations)", "real_rl": "IQL, real data only", "vlgor": "VLGOR (IQL, real + imagined)",
          "paraphrase": "IQL + imagined, paraphrase prompts only", "text_only": "IQL + imagined, text-only generator"}


@dataclass(frozen=True)
class VlgorConfig:
    horizon: int = 8
    chunks: int = 10                 # imagined rollout length in chunks
    demos: int = 400
    held_out_demos: int = 50
    wm_steps: int = 1500
    generator_steps: int = 2500
    generator_batch: int = 16
    d_model: int = 96
    layers: int = 2
    state_prompt: bool = True        # the image generator is also given s_0 (read off the first frame); ours
    imagined: int = 1024             # rollouts per imagined set
    temperature: float = 1.0
    filter_quantile: float = 0.9     # keep a rollout within this quantile of held-out real rollouts' doubt
    iql_steps: int = 2000
    expectile: float = 0.7
    beta: float = 3.0
    policy_steps: int = 2500
    policy_batch: int = 128
    policy_lr: float = 1e-3
    imagined_fraction: float = 0.5   # of every policy batch, where imagined rows exist
    eval_tasks: int = 300            # per split
    max_steps: int = 300
    examples: int = 6                # imagined-vs-replayed rollouts kept for the figure

    def validate(self) -> None:
        if min(self.demos, self.held_out_demos, self.imagined, self.eval_tasks, self.chunks) < 1:
            raise ValueError("demos, held_out_demos, imagined, eval_tasks and chunks must be >= 1")
        if not 0.0 < self.filter_quantile <= 1.0 or not 0.0 <= self.imagined_fraction < 1.0:
            raise ValueError("filter_quantile must be in (0, 1] and imagined_fraction in [0, 1)")


def vlgor_run(cfg: VlgorConfig, ctx: RunContext) -> Metrics:
    state = ctx.load_checkpoint() or {}
    imagined, results, wall = (state.setdefault(k, {}) for k in ("imagined", "results", "wall"))
    seed, H, K = ctx.seed, cfg.horizon, cfg.chunks
    bar = ctx.task(f"vlgor seed {seed}", total=3 + len(IMAGINED) + len(METHODS))
    rng = np.random.default_rng(seed)
    tasks = [sample_task("train", rng) for _ in range(cfg.demos)]
    demos = make_demos(tasks, seed=seed, horizon=H)
    held = make_demos([sample_task("train", rng) for _ in range(cfg.held_out_demos)], seed=seed + 10_000, horizon=H)
    data, held_data = rollout_arrays(demos, H, K), rollout_arrays(held, H, K)

    # 1. The filter: the chunk-level state world model.
    world_model = filter_world_model(H, cfg.wm_steps)
    if "world_model" in state:
        world_model.load_state_dict(state["world_model"])
    else:
        t0 = time.time()
        torch.manual_seed(seed)
        world_model.fit(chunk_transitions(demos, H), chunk_transitions(held, H), seed)
        state["world_model"], wall["world_model_s"] = world_model.state_dict(), time.time() - t0
        ctx.save_checkpoint(state)
    world_model.eval()
    bar.advance(1)

    # 2. The generators: image + instruction, and instruction only.
    generators = {}
    for name in ("image", "text"):
        gcfg = GeneratorConfig(horizon=H, chunks=K, d_model=cfg.d_model, layers=cfg.layers, see_image=name == "image",
                               state_prompt=cfg.state_prompt and name == "image", steps=cfg.generator_steps,
                               batch_size=cfg.generator_batch)
        torch.manual_seed(seed)
        generator = RolloutGenerator(gcfg)
        if f"generator_{name}" in state:
            generator.load_state_dict(state[f"generator_{name}"])
        else:
            t0 = time.time()
            curve = generator.fit(data, seed)
            state[f"generator_{name}"] = generator.state_dict()
            wall[f"generator_{name}_s"] = time.time() - t0
            state[f"generator_{name}_loss"] = float(np.mean(curve[-50:]))
            ctx.save_checkpoint(state)
        generators[name] = generator.eval()
        bar.advance(1)

    # Thresholds: held-out real rollouts as a perfect generator would emit them (same token layout).
    thresholds = filter_thresholds(generators["image"], world_model, held_data, cfg.filter_quantile)
    bar.advance(1)

    # 3. Imagined sets.
    for i, (method, (generator_name, prompt_kind)) in enumerate(IMAGINED.items()):
        if method not in imagined:
            t0 = time.time()
            rows, prompts = prompt_tasks(prompt_kind, data["first_state"], tasks, cfg.imagined,
                                         np.random.default_rng([seed, 30_000, i]))
            imagined[method] = imagine(generators[generator_name], world_model, data, rows, prompts, thresholds,
                                       seed + 50_000 + i, cfg.temperature, cfg.examples)
            wall[f"imagine_{method}_s"] = time.time() - t0
            ctx.save_checkpoint(state)
        bar.advance(1)

    # 4. Policies: BC, IQL on real data, IQL on real + each imagined set; then the real suite.
    real = demo_transitions(demos, H)
    obs, targets = demo_tensors(demos, H)
    real_obs = {k: obs[k] for k in ("state", "instruction")}
    eval_rng = np.random.default_rng(seed + 20_000)
    eval_tasks = {split: [sample_task(split, eval_rng) for _ in range(cfg.eval_tasks)] for split in SPLITS}
    for method in METHODS:
        if method not in results:
            t0 = time.time()
            torch.manual_seed(seed)
            policy = ChunkPolicy(PolicyConfig(horizon=H, encoder="objects"))
            gen = torch.Generator().manual_seed(seed)
            out: dict = {}
            if method == "bc":
                pools, fractions = [Pool(real_obs, targets)], None
            else:
                extra = imagined[method]["transitions"] if method in imagined else None
                pools, fractions, critics = awr_pools(real, real_obs, targets, extra, cfg.iql_steps, seed, gen,
                                                      IQLConfig(expectile=cfg.expectile, beta=cfg.beta),
                                                      cfg.imagined_fraction)
                out.update(critics)
            fit_policy(policy, pools, cfg.policy_steps, cfg.policy_batch, cfg.policy_lr, gen, fractions)
            for j, split in enumerate(SPLITS):
                out[split] = float(evaluate(policy, eval_tasks[split], seed + 40_000 + j, cfg.max_steps).mean())
            results[method] = out
            wall[f"{method}_s"] = time.time() - t0
            ctx.save_checkpoint(state)
        bar.advance(1)
    bar.finish()
    return {"results": results, "imagined": {m: {"stats": v["stats"], "examples": v["examples"]}
                                             for m, v in imagined.items()},
            "thresholds": {"disagreement": thresholds[0], "error": thresholds[1]},
            "generator_loss": {n: state[f"generator_{n}_loss"] for n in ("image", "text")}, "wall_s": wall}


# --------------------------------------------------------------------------- checks, tables, figures


def _success(runs: list[Metrics], method: str, split: str) -> float | None:
    return _mean([r["results"][method][split] for r in runs])


def _gain(method: str, baseline: str, split: str):
    def measure(runs: list[Metrics]) -> float | None:
        a, b = _success(runs, method, split), _success(runs, baseline, split)
        return None if a is None or b is None else a - b
    return measure


def _stat(method: str, key: str):
    return lambda runs: _mean([r["imagined"][method]["stats"][key] for r in runs])


VLGOR_CHECKS = (
    ClaimCheck("V1", "Unseen-combination success: VLGOR minus IQL on real data only",
               _gain("vlgor", "real_rl", "unseen"), ">=", 0.10),
    ClaimCheck("V2", "Unseen-combination success: counterfactual minus paraphrase-only prompts",
               _gain("vlgor", "paraphrase", "unseen"), ">=", 0.05),
    ClaimCheck("V3", "Training-task success drop: IQL on real data minus VLGOR", _gain("real_rl", "vlgor", "train"),
               "<=", 0.03),
    ClaimCheck("R1", "Unseen success: VLGOR minus the text-only generator", _gain("vlgor", "text_only", "unseen")),
    ClaimCheck("R2", "Unseen success: VLGOR minus BC", _gain("vlgor", "bc", "unseen")),
    ClaimCheck("R3", "Novel-behaviour success of VLGOR", lambda runs: _success(runs, "vlgor", "novel")),
    ClaimCheck("R4", "Kept VLGOR rollouts whose imagined success matches their replay in the true suite",
               _stat("vlgor", "agreement_kept")),
    ClaimCheck("R5", "Fraction of VLGOR rollouts the world-model filter keeps", _stat("vlgor", "kept")),
)


def vlgor_tables(runs: list[Metrics]) -> list[Table]:
    def cell(values: list) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "—"
        return f"{np.mean(values):.3f}" + (f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")

    success = Table(f"Real-suite success per split (mean ± sd over {len(runs)} seeds)", ["method", *SPLITS],
                    [[LABELS[m], *[cell([r["results"][m][s] for r in runs]) for s in SPLITS]] for m in METHODS])
    keys = ("kept", "transitions", "imagined_success_kept", "replay_success_kept", "agreement_kept", "precision_kept",
            "agreement")
    data = Table("Imagined sets: filter, imagined vs replayed success (mean over seeds; 'kept' = after the filter)",
                 ["set", "kept", "transitions", "imagined success", "replayed success", "agreement",
                  "replayed | imagined success", "agreement, all"],
                 [[m, *[cell([r["imagined"][m]["stats"][k] for r in runs]) for k in keys]] for m in IMAGINED])
    return [success, data]


def vlgor_plot(runs: list[Metrics]) -> dict:
    import matplotlib.pyplot as plt

    grid = plot_rollouts(runs[0]["imagined"]["vlgor"]["examples"],
                         "VLGOR rollouts (seed 0): imagined (top) vs replayed in the true suite (bottom)\n"
                         "gripper in black, objects in their colours")
    bars, ax = plt.subplots(figsize=(8, 3.4))
    x = np.arange(len(SPLITS))
    for i, m in enumerate(METHODS):
        ax.bar(x + (i - 2) * 0.16, [_success(runs, m, s) for s in SPLITS], 0.16, label=LABELS[m])
    ax.set_xticks(x, SPLITS)
    ax.set_ylabel("real-suite success")
    ax.legend(fontsize=7)
    bars.tight_layout()
    return {"rollouts": grid, "success": bars}


EXPERIMENT = Experiment(
    name="vlgor",
    system="vlgor",
    summary="Counterfactual imagined rollouts from (first frames, instruction) for instruction-conditioned IQL; "
            "against real-data-only IQL, BC, paraphrase-only prompts and a text-only generator",
    profiles={
        "smoke": Profile(VlgorConfig(chunks=3, demos=12, held_out_demos=6, wm_steps=6, generator_steps=3,
                                     generator_batch=4, d_model=32, layers=1, imagined=12, iql_steps=4,
                                     policy_steps=4, policy_batch=16, eval_tasks=4, max_steps=24, examples=2),
                         seeds=1),
        "quick": Profile(VlgorConfig(demos=200, held_out_demos=30, wm_steps=400, generator_steps=300, imagined=256,
                                     iql_steps=400, policy_steps=1200, eval_tasks=100), seeds=1),
        "full": Profile(VlgorConfig(), seeds=3),
    },
    run=vlgor_run, checks=VLGOR_CHECKS, plot=vlgor_plot, tables=vlgor_tables, threads=1, device="cpu",
)
