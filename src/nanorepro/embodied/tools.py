"""The practitioner's path on the Tabletop suite: demonstrations, a chunked policy, SuP's scheduler, VLA-MBPO.

    nanorepro embodied make-demos --out demos.npz --episodes 300
    nanorepro embodied train-policy --demos demos.npz --out teacher.safetensors --encoder objects
    nanorepro embodied distill --teacher teacher.safetensors --demos demos.npz --out policy.safetensors
    nanorepro embodied sup --policy policy.safetensors --out scheduler.safetensors      # or --policy scripted
    nanorepro embodied evaluate --policy policy.safetensors --scheduler scheduler.safetensors
    nanorepro embodied vla-mbpo --policy policy.safetensors --demos demos.npz --out tuned.safetensors
    nanorepro embodied vlgor --demos demos.npz --out vlgor.safetensors

``sup`` is SuP's offline pipeline (``embodied.sup``; the ``sup`` experiment runs the same
steps): log rollouts of the frozen policy with a random rate per chunk, fit the chunk world
model on the log, price every logged chunk at every rate, and solve the Lagrangian CMDP
(fitted-Q with dual ascent on lambda) for each budget d; the budget kept is the fastest
whose success on validation episodes stays within ``tolerance`` of the base policy's. The
frozen policy is a ``train-policy`` file or ``scripted`` (the demonstrator's open-loop plan).
``evaluate`` runs the base policy (k = 1) and the scheduler (or a fixed rate) on the same
scenes: success, control steps, the speed-up on the episodes both solve and the one-sided
95% lower bound of the success difference.

The suite defaults to SuP's (a grasp closing faster than 0.15 table/s grasps nothing), so
that speed can cost success; ``grasp_max_speed=inf`` is the suite of the other experiments.
``distill`` trains a camera policy by DAgger from an ``objects`` policy (which reads the object
poses) as the teacher (``embodied.distill``): behaviour cloning of the camera policy alone
stays near 10% success here. Files are nanorepro checkpoints (safetensors; no pickle).
``vla-mbpo`` fine-tunes a camera policy by VLA-MBPO's loop (``embodied.vla_mbpo.ImaginedPPO``):
the two-view pixel world model on the demonstrations, then rounds of real episodes and PPO on
k-chunk branches imagined from them. ``vlgor`` trains an object-token policy offline on the
demonstrations plus counterfactual rollouts imagined from their first frames (``train_vlgor``;
the ``vlgor`` experiment's VLGOR arm), against the same offline RL on real data alone.
``train-policy``, ``distill``, ``sup``, ``vla-mbpo`` and ``vlgor`` resume from
``<out>.ckpt.safetensors`` when the same command is run again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nanorepro.common.checkpoint import load_checkpoint, load_owned_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.common.io import file_digest, write_curve_png, write_figure_png
from nanorepro.common.seeding import seed_everything
from nanorepro.embodied.demos import load_demos, make_demos, save_demos, select_episodes
from nanorepro.embodied.distill import DAggerConfig, dagger
from nanorepro.embodied.offline_rl import awr_pools, demo_transitions
from nanorepro.embodied.pixel_world_model import PixelWorldModel, PixelWorldModelConfig, VQConfig, token_transitions
from nanorepro.embodied.policy import ENCODERS, ChunkPolicy, PolicyConfig, demo_tensors, fit_policy, train_bc
from nanorepro.embodied.policy import evaluate as evaluate_policy
from nanorepro.embodied.sup import (
    RATES,
    PolicyChunks,
    RateQ,
    SchedulerConfig,
    ScriptedChunks,
    TrainedScheduler,
    execute,
    fixed_rate,
    paired,
    price_logged_chunks,
    random_rates,
    train_scheduler,
)
from nanorepro.embodied.vla_mbpo import (
    REWARDS,
    ImaginedPPO,
    LoopConfig,
    PPOConfig,
    demo_starts,
    real_rollouts,
    uncertainty_cut,
)
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
from nanorepro.embodied.world_model import chunk_transitions, demo_chunks
from nanorepro.envs.tabletop import TabletopConfig, parse_instruction, sample_tasks, scene_seed
from nanorepro.rl.iql import IQLConfig

POLICY_FORMAT = "nanorepro.embodied.policy/1"
SCHEDULER_FORMAT = "nanorepro.embodied.sup_scheduler/1"
SCRIPTED = "scripted"
SUP_GRASP_MAX_SPEED = 0.15   # table/s: the sup experiment's suite


def suite(grasp_max_speed: float = SUP_GRASP_MAX_SPEED, view_size: int = 32) -> TabletopConfig:
    cfg = TabletopConfig(view_size=view_size, grasp_max_speed=grasp_max_speed)
    cfg.validate()
    return cfg


# --------------------------------------------------------------------------- demonstrations and a chunked policy

def make_demo_file(out: Path, episodes: int, split: str, seed: int, horizon: int = 8,
                   grasp_max_speed: float = SUP_GRASP_MAX_SPEED, view_size: int = 32) -> dict:
    """One scripted demonstration per sampled task of ``split``, written in ``demos``' file format."""
    if horizon < 1:
        raise UserError(f"--horizon must be at least 1, got {horizon}")
    data = make_demos(sample_tasks(split, episodes, seed), seed, horizon, suite(grasp_max_speed, view_size))
    save_demos(out, data)
    return {"episodes": episodes, "steps": len(data["state"]), "success": float(data["success"].mean())}


@dataclass(frozen=True)
class BCConfig:
    steps: int = 3000
    batch: int = 64
    lr: float = 1e-3
    grad_clip: float | None = None


def train_policy(demos_path: Path, out: Path, policy_cfg: PolicyConfig, bc: BCConfig, seed: int, board) -> dict:
    """Behaviour cloning of a ``ChunkPolicy`` on the demonstrations (the chunk length and view size are the
    file's); resumable through ``<out>.ckpt.safetensors`` (saved every 250 steps)."""
    if policy_cfg.encoder not in ENCODERS:
        raise UserError(f"unknown encoder '{policy_cfg.encoder}' (choose from {', '.join(ENCODERS)})")
    if bc.steps < 1 or bc.batch < 1:
        raise UserError("--steps and --batch must be at least 1")
    data = load_demos(demos_path)
    cfg = dataclasses.replace(policy_cfg, horizon=int(data["chunk"]), view_size=int(data["head"].shape[1]))
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    owner = {"policy_config": dataclasses.asdict(cfg), "bc": dataclasses.asdict(bc), "seed": seed,
             "demos": file_digest(demos_path)}
    state = load_owned_checkpoint(ckpt, owner, board.log) or dict(owner)
    if "step" in state:
        board.log(f"resuming from {ckpt} at step {state['step']}")
    seed_everything(seed)
    policy = ChunkPolicy(cfg)
    bar = board.task(f"behaviour cloning ({cfg.encoder})", total=bc.steps - state.get("step", 0))
    curve = train_bc(policy, data, bc.steps, bc.batch, bc.lr, seed, on_step=lambda _s: bar.advance(1),
                     grad_clip=bc.grad_clip, state=state, save=lambda: save_checkpoint(ckpt, state), save_every=250)
    bar.finish()
    save_checkpoint(out, {"format": POLICY_FORMAT, "config": dataclasses.asdict(cfg), "weights": policy.state_dict(),
                          "bc": dataclasses.asdict(bc), "seed": seed, "curve": curve})
    ckpt.unlink(missing_ok=True)
    plot = write_curve_png(out, f"behaviour cloning ({cfg.encoder}) on {demos_path.name}",
                           {"training loss": (np.arange(1, len(curve) + 1), np.array(curve))}, "step", "loss")
    return {"policy": str(out), "plot": str(plot), "demos": int(len(data["success"])), "rows": len(data["state"]),
            "final_loss": float(np.mean(curve[-50:])), "parameters": sum(p.numel() for p in policy.parameters())}


def distill(teacher_path: Path, demos_path: Path, out: Path, policy_cfg: PolicyConfig, cfg: DAggerConfig, seed: int,
            board, grasp_max_speed: float = SUP_GRASP_MAX_SPEED) -> dict:
    """DAgger from a privileged ``--encoder objects`` policy into a camera policy (``embodied.distill``), then its
    success on 100 fresh training tasks; resumable at round boundaries through ``<out>.ckpt.safetensors``."""
    teacher = load_policy(teacher_path)
    if teacher.cfg.encoder != "objects":
        raise UserError(f"{teacher_path} reads '{teacher.cfg.encoder}'; the teacher must read the object poses "
                        "(train-policy --encoder objects)")
    if policy_cfg.encoder not in ENCODERS:
        raise UserError(f"unknown encoder '{policy_cfg.encoder}' (choose from {', '.join(ENCODERS)})")
    if cfg.rounds < 1 or cfg.round_tasks < 1 or not 0.0 <= cfg.demo_fraction < 1.0:
        raise UserError("need at least one round and one task a round, and a demonstration share in [0, 1)")
    data = load_demos(demos_path)
    student_cfg = dataclasses.replace(policy_cfg, horizon=int(data["chunk"]), view_size=int(data["head"].shape[1]))
    if student_cfg.horizon != teacher.cfg.horizon:
        raise UserError(f"{demos_path} has chunks of {student_cfg.horizon} waypoints, the teacher's have "
                        f"{teacher.cfg.horizon}")
    suite_cfg = suite(grasp_max_speed, student_cfg.view_size)
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    owner = {"policy_config": dataclasses.asdict(student_cfg), "dagger": dataclasses.asdict(cfg), "seed": seed,
             "teacher": file_digest(teacher_path), "demos": file_digest(demos_path), "grasp_max_speed": grasp_max_speed}
    state = _load_dagger_checkpoint(ckpt, owner, board.log)
    if "round" in state:
        board.log(f"resuming from {ckpt} after round {state['round']}")
    seed_everything(seed)
    student = ChunkPolicy(student_cfg)
    bar = board.task(f"DAgger ({student_cfg.encoder} student)", total=cfg.rounds - state.get("round", 0))

    def on_round(row: dict) -> None:
        board.log(f"round {row['round']}: the student solved {row['rollout_success']:.2f} of its "
                  f"{cfg.round_tasks} rollouts; {row['visits']} labelled visits")
        bar.advance(1)

    history = dagger(student, teacher, data, cfg, seed, suite_cfg, state=state,
                     save=lambda: _save_dagger_checkpoint(ckpt, state), on_round=on_round)
    bar.finish()
    final_seed = scene_seed(seed, "dagger final")
    final = float(evaluate_policy(student, sample_tasks("train", 100, final_seed), final_seed, cfg.max_steps,
                                  suite_cfg).mean())
    save_checkpoint(out, {"format": POLICY_FORMAT, "config": dataclasses.asdict(student_cfg),
                          "weights": student.state_dict(), "dagger": dataclasses.asdict(cfg), "seed": seed,
                          "teacher": owner["teacher"], "history": history, "final_success": final})
    ckpt.unlink(missing_ok=True)
    for r in range(1, cfg.rounds + 1):
        _visits_shard(ckpt, r).unlink(missing_ok=True)
    rounds = np.array([row["round"] for row in history])
    plot = write_curve_png(out, f"DAgger from {teacher_path.name}", {
        "student's own rollouts (before the round's training)": (rounds, np.array([r["rollout_success"]
                                                                                   for r in history]))},
        "round", "success")
    return {"policy": str(out), "plot": str(plot), "history": history, "final_success": final}


def _visits_shard(ckpt: Path, round_: int) -> Path:
    return ckpt.with_name(f"{ckpt.name}.visits-{round_}.safetensors")


def _save_dagger_checkpoint(ckpt: Path, state: dict) -> None:
    """The round's new labelled visits go to their own shard, then everything else to ``ckpt``: a round
    writes its own images once (the aggregate reached ~650 MB by round 16 when rewritten whole)."""
    history = state["history"]
    before = history[-2]["visits"] if len(history) > 1 else 0
    save_checkpoint(_visits_shard(ckpt, state["round"]), {k: v[before:] for k, v in state["visits"].items()})
    save_checkpoint(ckpt, {k: v for k, v in state.items() if k != "visits"})


def _load_dagger_checkpoint(ckpt: Path, owner: dict, log) -> dict:
    state = load_owned_checkpoint(ckpt, owner, log)
    if state is None:
        return dict(owner)
    shards = [_visits_shard(ckpt, r) for r in range(1, state["round"] + 1)]
    missing = [p for p in shards if not p.exists()]
    if missing:
        log(f"ignoring {ckpt}: its visits shard {missing[0]} is missing; starting over")
        return dict(owner)
    parts = [load_checkpoint(p) for p in shards]
    state["visits"] = {k: torch.cat([part[k] for part in parts]) for k in parts[0]}
    return state


def load_policy(path: Path) -> ChunkPolicy:
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != POLICY_FORMAT:
        raise UserError(f"{path} is not a nanorepro Tabletop policy (format {POLICY_FORMAT})")
    try:
        policy = ChunkPolicy(PolicyConfig(**state["config"]))
        policy.load_state_dict(state["weights"])
    except (TypeError, RuntimeError) as exc:
        raise UserError(f"{path} does not fit this version's ChunkPolicy: {exc}") from None
    return policy.eval().requires_grad_(False)


def frozen_policy(spec: str | Path, horizon: int = 8):
    """(factory for ``sup.execute``, its chunk length, whether it reads the cameras, view size) of
    ``scripted`` or a ``train-policy`` file."""
    if str(spec) == SCRIPTED:
        return ScriptedChunks, horizon, False, 32
    path = Path(spec)
    if not path.exists():
        raise UserError(f"policy file not found: {path} (or pass '{SCRIPTED}' for the demonstrator)")
    policy = load_policy(path)

    def factory(sim, horizon):
        return PolicyChunks(policy)

    return factory, policy.cfg.horizon, policy.cfg.encoder != "objects", policy.cfg.view_size


# --------------------------------------------------------------------------- SuP's scheduler, offline

@dataclass(frozen=True)
class SupToolConfig:
    budgets: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)  # fractions of the mean predicted k = 4 cost
    log_episodes: int = 300
    valid_episodes: int = 100
    tolerance: float = 0.01        # validation success may drop this much below the base policy's
    wm_steps: int = 2000
    dual_iterations: int = 12
    q_steps: int = 400
    max_steps: int = 300
    grasp_max_speed: float = SUP_GRASP_MAX_SPEED


def _scheduler_state(s: TrainedScheduler) -> dict:
    return {"q": s.q.state_dict(), "mean": s.mean, "std": s.std, "lam": s.lam, "cost": s.cost, "lambdas": s.lambdas}


def _scheduler_from(state: dict, in_dim: int, hidden: int) -> TrainedScheduler:
    q = RateQ(in_dim, hidden)
    q.load_state_dict(state["q"])
    return TrainedScheduler(q.eval(), state["mean"], state["std"], state["lam"], state["cost"], state["lambdas"])


def _as_tensors(rows: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in rows.items()}


def fit_sup(policy_spec: str | Path, out: Path, cfg: SupToolConfig, seed: int, board) -> dict:
    """SuP for one frozen policy: log -> world-model costs -> one scheduler per budget -> the budget chosen on
    validation episodes -> ``out``. Resumable at each stage through ``<out>.ckpt.safetensors``."""
    if not cfg.budgets or min(cfg.budgets) <= 0:
        raise UserError(f"budgets must be positive fractions of the mean k = 4 cost, got {cfg.budgets}")
    if cfg.log_episodes < 2 or cfg.valid_episodes < 1:
        raise UserError("need at least 2 logged and 1 validation episode")
    factory, horizon, views, view_size = frozen_policy(policy_spec)
    run = dict(max_steps=cfg.max_steps, horizon=horizon, config=suite(cfg.grasp_max_speed, view_size))
    sched_cfg = SchedulerConfig(dual_iterations=cfg.dual_iterations, q_steps=cfg.q_steps)
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    owner = {"sup": dataclasses.asdict(cfg), "seed": seed,
             "policy": SCRIPTED if str(policy_spec) == SCRIPTED else file_digest(policy_spec)}
    state = load_owned_checkpoint(ckpt, owner, board.log) or dict(owner)
    if "rows" in state:
        board.log(f"resuming from {ckpt}")
    bar = board.task("sup: log, price, schedulers, validation", total=3 + len(cfg.budgets))
    if "rows" not in state:   # 1. logged rollouts (the only simulator calls the scheduler's training sees)
        seed_everything(seed)
        log_seed = scene_seed(seed, "log")
        log = execute(factory, sample_tasks("train", cfg.log_episodes, log_seed), log_seed, random_rates(seed),
                      record=True, views=views, **run)
        rows = log["rows"]
        _, costs, scale, wm_info = price_logged_chunks(rows, log["success"], horizon, cfg.wm_steps, seed)  # 2.
        state.update(rows=_as_tensors(rows), costs=torch.as_tensor(costs), scale=scale,
                     log_success=float(log["success"].mean()), wm_valid_error=wm_info["best_val_error"],
                     schedulers={})
        save_checkpoint(ckpt, state)
    bar.advance(2)
    rows = {k: v.numpy() for k, v in state["rows"].items()}
    costs, scale = state["costs"].numpy(), state["scale"]
    in_dim, trained = rows["state"].shape[1] + horizon * 3, {}
    for f in cfg.budgets:   # 3. the Lagrangian CMDP at each budget, offline
        key = f"{f:g}"
        if key not in state["schedulers"]:
            state["schedulers"][key] = _scheduler_state(train_scheduler(rows, costs / scale, f, sched_cfg, seed))
            save_checkpoint(ckpt, state)
        trained[f] = _scheduler_from(state["schedulers"][key], in_dim, sched_cfg.hidden)
        bar.advance(1)
    valid_seed = scene_seed(seed, "validation")   # 4. validation
    valid_tasks = sample_tasks("train", cfg.valid_episodes, valid_seed)
    base = execute(factory, valid_tasks, valid_seed, fixed_rate(1), views=views, **run)
    valid = {f: paired(base, execute(factory, valid_tasks, valid_seed, s, views=views, **run))
             for f, s in trained.items()}
    eligible = [f for f, v in valid.items() if v["success"] >= v["base_success"] - cfg.tolerance]
    chosen = max(eligible, key=lambda f: valid[f]["speedup"] or 0.0) if eligible else min(cfg.budgets)
    bar.advance(1)
    bar.finish()
    save_checkpoint(out, {
        "format": SCHEDULER_FORMAT, "policy": owner["policy"], "horizon": horizon, "rates": list(RATES),
        "hidden": sched_cfg.hidden, "in_dim": in_dim, "budget": chosen, "scale": scale,
        "grasp_max_speed": cfg.grasp_max_speed, "scheduler": state["schedulers"][f"{chosen:g}"],
        "validation": {f"{f:g}": v for f, v in valid.items()}, "sup": dataclasses.asdict(cfg), "seed": seed,
    })
    ckpt.unlink(missing_ok=True)
    return {"scheduler": str(out), "budget": chosen, "eligible": bool(eligible), "validation": valid,
            "log_success": state["log_success"], "logged_chunks": len(rows["state"]),
            "wm_valid_error": state["wm_valid_error"], "valid_base_success": float(base["success"].mean())}


def load_scheduler(path: Path) -> tuple[TrainedScheduler, dict]:
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != SCHEDULER_FORMAT:
        raise UserError(f"{path} is not a nanorepro SuP scheduler (format {SCHEDULER_FORMAT})")
    if tuple(state["rates"]) != RATES:
        raise UserError(f"{path} chooses among rates {state['rates']}; this version has {list(RATES)}")
    return _scheduler_from(state["scheduler"], state["in_dim"], state["hidden"]), state


def evaluate(policy_spec: str | Path, episodes: int, split: str, seed: int, scheduler_path: Path | None = None,
             rate: int | None = None, max_steps: int = 300, grasp_max_speed: float | None = None) -> dict:
    """The frozen policy at full rate and with the scheduler (or a fixed ``rate``) on the same scenes."""
    if (scheduler_path is None) == (rate is None):
        raise UserError("give exactly one of --scheduler and --rate")
    if rate is not None and rate not in RATES:
        raise UserError(f"--rate must be one of {', '.join(map(str, RATES))}, got {rate}")
    factory, horizon, views, view_size = frozen_policy(policy_spec)
    if scheduler_path is not None:
        scheduler, saved = load_scheduler(scheduler_path)
        if saved["horizon"] != horizon:
            raise UserError(f"{scheduler_path} schedules chunks of {saved['horizon']} waypoints; the policy's have "
                            f"{horizon}")
        grasp_max_speed = saved["grasp_max_speed"] if grasp_max_speed is None else grasp_max_speed
        name = f"SuP (budget {saved['budget']:g})"
    else:
        scheduler, name = fixed_rate(rate), f"fixed k = {rate}"
    run = dict(max_steps=max_steps, horizon=horizon, views=views,
               config=suite(SUP_GRASP_MAX_SPEED if grasp_max_speed is None else grasp_max_speed, view_size))
    tasks = sample_tasks(split, episodes, seed)
    base = execute(factory, tasks, seed, fixed_rate(1), **run)
    outcome = paired(base, execute(factory, tasks, seed, scheduler, **run))
    outcome["base_steps"] = float(base["steps"][base["success"]].mean()) if base["success"].any() else None
    return {"scheduler": name, **outcome}


# --------------------------------------------------------------------------- VLA-MBPO: fine-tune in a world model

@dataclass(frozen=True)
class VlaMbpoToolConfig:
    rounds: int = 3
    real_tasks: int = 16            # real episodes per round (the real-step budget)
    branch_chunks: int = 2          # k (the paper: 2-3)
    iterations: int = 60            # PPO iterations on imagined branches per round
    imagined_chunks: int = 64       # per iteration
    own_start_fraction: float = 0.5
    held_out_demos: int = 30        # fresh scripted demonstrations that calibrate the uncertainty cut
    uncertainty_quantile: float = 0.9
    vq_steps: int = 1500
    wm_steps: int = 1200
    ppo_lr: float = 3e-5
    ppo_epochs: int = 4
    clip: float = 0.1
    kl_coef: float = 0.0
    eval_tasks: int = 100
    max_steps: int = 300
    grasp_max_speed: float = SUP_GRASP_MAX_SPEED
    refit_steps: int = 0            # ours, off: world-model steps on the policy's real chunks after each round
    refit_real_share: float = 0.5
    reward: str = "threshold"       # or "probability" (ours): the head's probability of a first success


def fine_tune_vla_mbpo(policy_path: Path, demos_path: Path, out: Path, cfg: VlaMbpoToolConfig, seed: int,
                       board) -> dict:
    """VLA-MBPO for a camera policy: the two-view pixel world model on the demonstrations, then ``rounds`` of
    (real episodes -> PPO on k-chunk imagined branches -> success on the same held-out tasks). Resumable after
    the world model and after every round through ``<out>.ckpt.safetensors``."""
    policy = load_policy(policy_path).requires_grad_(True)
    if policy.cfg.encoder == "objects" or policy.cfg.privileged_state:
        raise UserError(f"{policy_path} reads the object poses, which imagination has no way to predict: "
                        "fine-tune a camera policy (train-policy or distill)")
    if cfg.rounds < 1 or cfg.real_tasks < 1 or cfg.iterations < 1 or cfg.branch_chunks < 1 or cfg.eval_tasks < 1:
        raise UserError("rounds, real_tasks, iterations, branch_chunks and eval_tasks must be at least 1")
    if not 0.0 <= cfg.own_start_fraction <= 1.0 or not 0.0 < cfg.uncertainty_quantile <= 1.0:
        raise UserError("own_start_fraction must lie in [0, 1] and uncertainty_quantile in (0, 1]")
    if cfg.refit_steps < 0 or not 0.0 <= cfg.refit_real_share <= 1.0:
        raise UserError("refit_steps must be at least 0 and refit_real_share in [0, 1]")
    if cfg.reward not in REWARDS:
        raise UserError(f"unknown reward '{cfg.reward}' (choose from {', '.join(REWARDS)})")
    data = load_demos(demos_path)
    H, view_size = policy.cfg.horizon, policy.cfg.view_size
    if int(data["chunk"]) != H or int(data["head"].shape[1]) != view_size:
        raise UserError(f"{demos_path} has chunks of {int(data['chunk'])} and {int(data['head'].shape[1])} px views; "
                        f"the policy's are {H} and {view_size} px")
    config = suite(cfg.grasp_max_speed, view_size)
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    owner = {"vla_mbpo": dataclasses.asdict(cfg), "seed": seed, "policy": file_digest(policy_path),
             "demos": file_digest(demos_path)}
    state = load_owned_checkpoint(ckpt, owner, board.log) or dict(owner)
    if "round" in state:
        board.log(f"resuming from {ckpt} after round {state['round']}")
    bar = board.task("vla-mbpo: world model, base, rounds", total=2 + cfg.rounds)
    seed_everything(seed)
    wm = PixelWorldModel(view_size, H, PixelWorldModelConfig(vq=VQConfig(steps=cfg.vq_steps), steps=cfg.wm_steps))
    eval_seed = scene_seed(seed, "vla-mbpo evaluation")
    eval_tasks = sample_tasks("train", cfg.eval_tasks, eval_seed)
    if "world_model" not in state:   # 1. the world model and its uncertainty cut; 2. the base policy's success
        wm_bar = board.task("world model: VQ tokenizers, dynamics", total=2 * cfg.vq_steps + cfg.wm_steps)
        for view in ("head", "wrist"):
            wm.tokenizers[view].fit(torch.as_tensor(data[view]), seed=seed, on_step=lambda _s: wm_bar.advance(1))
        wm.fit(token_transitions(wm, data, H), seed=seed, on_step=lambda _s: wm_bar.advance(1))
        wm_bar.finish()
        wm.eval()
        held_seed = scene_seed(seed, "vla-mbpo held-out demonstrations")
        held = make_demos(sample_tasks("train", cfg.held_out_demos, held_seed), held_seed, H, config)
        held_chunks = {k: torch.as_tensor(v) for k, v in demo_chunks(held, H).items()}
        base = float(evaluate_policy(policy, eval_tasks, eval_seed, cfg.max_steps, config).mean())
        threshold = uncertainty_cut(wm, held_chunks, cfg.uncertainty_quantile)
        state.update(world_model={k: v.clone() for k, v in wm.state_dict().items()}, threshold=threshold,
                     base_success=base, round=0, real_steps=0, curve=[[0, base]], branch_success=[])
        save_checkpoint(ckpt, state)
        board.log(f"world model trained; the base policy solves {base:.3f} of {cfg.eval_tasks} training tasks")
    wm.load_state_dict(state["world_model"])
    wm.eval()
    bar.advance(2)
    loop_cfg = LoopConfig(cfg.branch_chunks, cfg.iterations, cfg.imagined_chunks,
                          own_start_fraction=cfg.own_start_fraction, refit_steps=cfg.refit_steps,
                          refit_real_share=cfg.refit_real_share, reward=cfg.reward)
    ppo_cfg = PPOConfig(lr=cfg.ppo_lr, epochs=cfg.ppo_epochs, clip=cfg.clip, kl_coef=cfg.kl_coef)
    loop = ImaginedPPO(policy, wm, state["threshold"], *demo_starts(data), loop_cfg, ppo_cfg, seed,
                       token_transitions(wm, data, H) if cfg.refit_steps else None)
    if "loop" in state:
        loop.load_state_dict(state["loop"])
    bar.advance(state["round"])
    for r in range(state["round"], cfg.rounds):   # 3. the rounds
        round_seed = scene_seed(seed, f"vla-mbpo round {r}")
        real = real_rollouts(policy, sample_tasks("train", cfg.real_tasks, round_seed), round_seed, cfg.max_steps,
                             loop.generator, config)
        loop.add_real(real)
        info = loop.improve()
        success = float(evaluate_policy(policy, eval_tasks, eval_seed, cfg.max_steps, config).mean())
        state["real_steps"] += real["real_steps"]
        state["curve"].append([state["real_steps"], success])
        state["branch_success"].append(info["branch_success"])
        state.update(round=r + 1, loop=loop.state_dict())
        save_checkpoint(ckpt, state)
        board.log(f"round {r + 1}: {real['real_steps']} real steps; imagined branch reward "
                  f"{info['branch_success']:.2f}; success {success:.3f} (base {state['base_success']:.3f})")
        bar.advance(1)
    bar.finish()
    save_checkpoint(out, {"format": POLICY_FORMAT, "config": dataclasses.asdict(policy.cfg),
                          "weights": policy.state_dict(), "vla_mbpo": dataclasses.asdict(cfg), "seed": seed,
                          "base_policy": owner["policy"], "curve": state["curve"]})
    ckpt.unlink(missing_ok=True)
    curve = np.array(state["curve"], dtype=float)
    plot = write_curve_png(out, f"VLA-MBPO (k = {cfg.branch_chunks}) from {policy_path.name}",
                           {f"success on {cfg.eval_tasks} training tasks": (curve[:, 0], curve[:, 1])},
                           "real control steps used", "success")
    return {"policy": str(out), "plot": str(plot), "base_success": state["base_success"],
            "success": state["curve"][-1][1], "curve": state["curve"], "real_steps": state["real_steps"],
            "branch_success": state["branch_success"], "threshold": state["threshold"]}


# --------------------------------------------------------------------------- VLGOR: offline RL on imagined rollouts

@dataclass(frozen=True)
class VlgorToolConfig:
    chunks: int = 10                 # imagined rollout length in chunks
    held_out_fraction: float = 0.1   # of the episodes: the filter's validation data and its thresholds
    wm_steps: int = 1500
    generator_steps: int = 2500
    generator_batch: int = 16
    d_model: int = 96
    layers: int = 2
    imagined: int = 1024             # counterfactual rollouts imagined
    temperature: float = 1.0
    filter_quantile: float = 0.9
    iql_steps: int = 2000
    expectile: float = 0.7
    beta: float = 3.0
    policy_steps: int = 2500
    policy_batch: int = 128
    policy_lr: float = 1e-3
    imagined_fraction: float = 0.5   # of every policy batch (mix="fixed", the experiment's)
    mix: str = "fixed"               # or "proportional" (ours): imagined rows as likely as each demonstration row
    compare: bool = True             # also IQL on the real demonstrations only, from the same initialisation
    eval_tasks: int = 100            # per split (train, unseen); 0: no evaluation
    max_steps: int = 300
    grasp_max_speed: float = SUP_GRASP_MAX_SPEED


MIXES = ("fixed", "proportional")
IMAGINED_FORMAT = "nanorepro.embodied.vlgor_imagined/1"


def _check_vlgor(cfg: VlgorToolConfig) -> None:
    if min(cfg.chunks, cfg.imagined, cfg.wm_steps, cfg.generator_steps, cfg.iql_steps, cfg.policy_steps) < 1:
        raise UserError("chunks, imagined, wm_steps, generator_steps, iql_steps and policy_steps must be at least 1")
    if cfg.eval_tasks < 0 or cfg.max_steps < 1:
        raise UserError("eval_tasks must be at least 0 and max_steps at least 1")
    if not 0.0 < cfg.held_out_fraction < 1.0 or not 0.0 < cfg.filter_quantile <= 1.0:
        raise UserError("held_out_fraction must lie in (0, 1) and filter_quantile in (0, 1]")
    if not 0.0 <= cfg.imagined_fraction < 1.0 or cfg.temperature <= 0:
        raise UserError("imagined_fraction must lie in [0, 1) and temperature be positive")
    if cfg.mix not in MIXES:
        raise UserError(f"unknown mix '{cfg.mix}' (choose from {', '.join(MIXES)})")


def train_vlgor(demos_path: Path, out: Path, cfg: VlgorToolConfig, seed: int, board) -> dict:
    """VLGOR on a demonstration file (``embodied.vlgor``): the filter's state world model and the rollout generator
    (first frames + instruction + first state) on the demonstrations; counterfactual rollouts from their first
    frames, prompted with unseen (colour, relation | zone) combinations the scene affords, labelled by the suite's
    success predicate and filtered by the world model (the kept chunk transitions ->
    ``<out>.imagined.safetensors``); IQL critics on real + kept imagined chunks and AWR into an object-token
    policy -> ``out``. With ``compare``, the same offline RL on the real demonstrations alone; both are evaluated
    on the same training and unseen tasks. Resumable after every stage through ``<out>.ckpt.safetensors``."""
    _check_vlgor(cfg)
    data = load_demos(demos_path)
    H, view_size, episodes = int(data["chunk"]), int(data["head"].shape[1]), len(data["instruction"])
    if view_size % GeneratorConfig.patch:
        raise UserError(f"{demos_path} has {view_size} px views; the generator's 8 px patches need a multiple of 8")
    tasks = [parse_instruction(ids) for ids in data["instruction"]]
    held_count = max(1, round(cfg.held_out_fraction * episodes))
    if episodes - held_count < 1:
        raise UserError(f"{demos_path} has {episodes} episode(s): too few to hold {held_count} out for the filter")
    if not any(t.kind in ("push", "place") for t in tasks):
        raise UserError(f"{demos_path} has no push or place demonstration: counterfactual prompts edit their slots")
    config = suite(cfg.grasp_max_speed, view_size)
    order = np.random.default_rng(scene_seed(seed, "vlgor held-out episodes")).permutation(episodes)
    fit_part, held_part = select_episodes(data, order[held_count:]), select_episodes(data, order[:held_count])
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    owner = {"vlgor": dataclasses.asdict(cfg), "seed": seed, "demos": file_digest(demos_path)}
    state = load_owned_checkpoint(ckpt, owner, board.log) or dict(owner)
    methods = ("vlgor", "real_rl") if cfg.compare else ("vlgor",)
    bar = board.task("vlgor: world model, generator, imagination, policies", total=3 + len(methods))
    done = [k for k in ("world_model", "generator", "imagined", *(f"policy_{m}" for m in methods)) if k in state]
    if done:
        board.log(f"resuming from {ckpt} after: {', '.join(done)}")

    seed_everything(seed)   # 1. the filter
    world_model = filter_world_model(H, cfg.wm_steps)
    if "world_model" not in state:
        wm_bar = board.task("filter world model (at most)", total=cfg.wm_steps)
        world_model.fit(chunk_transitions(fit_part, H), chunk_transitions(held_part, H), seed,
                        on_step=lambda *_: wm_bar.advance(1))
        wm_bar.finish()
        state["world_model"] = world_model.state_dict()
        save_checkpoint(ckpt, state)
    world_model.load_state_dict(state["world_model"])
    world_model.eval()
    bar.advance(1)

    seed_everything(seed)   # 2. the generator
    generator = RolloutGenerator(GeneratorConfig(horizon=H, chunks=cfg.chunks, view_size=view_size,
                                                 d_model=cfg.d_model, layers=cfg.layers, state_prompt=True,
                                                 steps=cfg.generator_steps, batch_size=cfg.generator_batch))
    rollouts = rollout_arrays(data, H, cfg.chunks)
    if "generator" not in state:
        gen_bar = board.task("rollout generator", total=cfg.generator_steps)
        curve = generator.fit(rollouts, seed, on_step=lambda _s: gen_bar.advance(1))
        gen_bar.finish()
        state.update(generator=generator.state_dict(), generator_loss=float(np.mean(curve[-50:])))
        save_checkpoint(ckpt, state)
        board.log(f"generator trained: final loss {state['generator_loss']:.3f}")
    generator.load_state_dict(state["generator"])
    generator.eval()
    bar.advance(1)

    if "imagined" not in state:   # 3. imagine, label, filter (and replay: the diagnostic)
        thresholds = filter_thresholds(generator, world_model, rollout_arrays(held_part, H, cfg.chunks),
                                       cfg.filter_quantile)
        rows, prompts = prompt_tasks("counterfactual", rollouts["first_state"], tasks, cfg.imagined,
                                     np.random.default_rng(scene_seed(seed, "vlgor prompts")))
        state["imagined"] = imagine(generator, world_model, rollouts, rows, prompts, thresholds,
                                    scene_seed(seed, "vlgor imagination"), cfg.temperature, config=config)
        state["thresholds"] = list(thresholds)
        save_checkpoint(ckpt, state)
        stats = state["imagined"]["stats"]
        board.log(f"imagined {stats['rollouts']} rollouts; the filter kept {stats['kept']:.2f}; "
                  f"{stats['transitions']} transitions")
    imagined = state["imagined"]
    bar.advance(1)

    real = demo_transitions(data, H)   # 4. offline RL: real (+ imagined) -> policies from one initialisation
    obs, targets = demo_tensors(data, H)
    real_obs = {k: obs[k] for k in ("state", "instruction")}
    scenes = {split: scene_seed(seed, f"vlgor evaluation {split}") for split in ("train", "unseen") if cfg.eval_tasks}
    policy_cfg = PolicyConfig(horizon=H, view_size=view_size, encoder="objects")
    policies = {}
    for method in methods:
        seed_everything(seed)
        policy = ChunkPolicy(policy_cfg)
        if f"policy_{method}" not in state:
            gen = torch.Generator().manual_seed(seed)
            extra = imagined["transitions"] if method == "vlgor" else None
            share = cfg.imagined_fraction if cfg.mix == "fixed" or extra is None else \
                len(extra["chunk"]) / (len(extra["chunk"]) + len(targets))
            pools, fractions, critics = awr_pools(real, real_obs, targets, extra, cfg.iql_steps, seed, gen,
                                                  IQLConfig(expectile=cfg.expectile, beta=cfg.beta), share)
            fit_bar = board.task(f"policy ({method})", total=cfg.policy_steps)
            fit_policy(policy, pools, cfg.policy_steps, cfg.policy_batch, cfg.policy_lr, gen, fractions,
                       on_step=lambda _s, bar_=fit_bar: bar_.advance(1))
            fit_bar.finish()
            success = {split: float(evaluate_policy(policy, sample_tasks(split, cfg.eval_tasks, scene), scene,
                                                    cfg.max_steps, config).mean()) for split, scene in scenes.items()}
            state[f"policy_{method}"] = {"weights": policy.state_dict(), "critics": critics, "success": success}
            save_checkpoint(ckpt, state)
            board.log(f"{method}: " + ", ".join(f"{s} {v:.3f}" for s, v in success.items()))
        policy.load_state_dict(state[f"policy_{method}"]["weights"])
        policies[method] = policy
        bar.advance(1)
    bar.finish()

    success = {m: state[f"policy_{m}"]["success"] for m in methods}
    save_checkpoint(out, {"format": POLICY_FORMAT, "config": dataclasses.asdict(policy_cfg),
                          "weights": policies["vlgor"].state_dict(), "vlgor": dataclasses.asdict(cfg), "seed": seed,
                          "demos": owner["demos"], "imagined": imagined["stats"], "success": success})
    imagined_file = save_checkpoint(out.with_name(out.name + ".imagined.safetensors"), {
        "format": IMAGINED_FORMAT, "transitions": imagined["transitions"], "stats": imagined["stats"],
        "thresholds": state["thresholds"], "demos": owner["demos"], "seed": seed})
    ckpt.unlink(missing_ok=True)
    plot = write_figure_png(out.with_name(out.name + ".rollouts.png"), plot_rollouts(
        imagined["examples"], f"VLGOR on {demos_path.name}: imagined (top) vs replayed in the true suite (bottom)"))
    return {"policy": str(out), "plot": str(plot), "imagined_file": str(imagined_file), "imagined": imagined["stats"],
            "success": success, "thresholds": state["thresholds"], "generator_loss": state["generator_loss"],
            "episodes": episodes, "held_out": held_count}


__all__ = ["make_demo_file", "train_policy", "distill", "load_policy", "fit_sup", "load_scheduler", "evaluate",
           "fine_tune_vla_mbpo", "train_vlgor", "BCConfig", "DAggerConfig", "SupToolConfig", "VlaMbpoToolConfig",
           "VlgorToolConfig", "POLICY_FORMAT",
           "SCHEDULER_FORMAT", "SCRIPTED"]
