"""The practitioner's path: imitate demonstrations on any Gymnasium env, save the policy, evaluate it.

    nanorepro imitation make-experts Pendulum-v1 --steps 20000 --out pendulum.npz
    nanorepro imitation train Pendulum-v1 --demos pendulum.npz --learner dqdm --steps 30000 --out policy.safetensors
    nanorepro imitation evaluate Pendulum-v1 --policy policy.safetensors --demos pendulum.npz

``train`` runs one learner of ``imitation.learners`` (BC, GAIL, IQ-E, IQ-M, Dual Q-DM) with
the ``ImitationConfig`` defaults, or, on an env of the ``dual_qdm_mujoco`` experiment, that
experiment's per-env settings; ``--set key=value`` overrides any field. Unlike the
experiment's protocol (one episode, every 20th transition), the command learns from every
demonstrated transition unless told otherwise (``--demo-episodes``, ``--subsample``). Online learners are
resumable: the loop's state is checkpointed after every evaluation to
``<out>.ckpt.safetensors`` and the same command continues from it (the file is removed
when the policy is written).

A policy file is a nanorepro checkpoint (safetensors; no pickle): the actor's weights, its
action box, the learner, the env id and the learning curve. Next to it, ``<out>.curve.png``.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from nanorepro.common.checkpoint import load_checkpoint, load_owned_checkpoint, save_checkpoint
from nanorepro.common.config import apply_overrides
from nanorepro.common.errors import UserError
from nanorepro.common.io import atomic_write_bytes, file_digest
from nanorepro.imitation.demos import Demos, load_demos
from nanorepro.imitation.learners import LEARNERS, ImitationConfig, make_learner
from nanorepro.imitation.mujoco_experiment import DEFAULT_SETTINGS, MujocoILConfig, normalise
from nanorepro.rl.online import Budget, env_id, evaluate, make_env
from nanorepro.rl.sac import TanhGaussianActor

POLICY_FORMAT = "nanorepro.imitation.policy/1"


def learner_config(env: str, overrides: list[str] | tuple[str, ...] = ()) -> ImitationConfig:
    """The dual_qdm_mujoco experiment's settings for its envs, ImitationConfig's defaults elsewhere; then overrides."""
    known = {s.env: s for s in DEFAULT_SETTINGS}
    base = MujocoILConfig().learner_config(known[env]) if env in known else ImitationConfig()
    return apply_overrides(base, list(overrides))


def normalised_return(ret: float, demos_meta: dict) -> float | None:
    """(R - R_random) / (R_expert - R_random) when the demo sidecar records both returns."""
    expert, random = demos_meta.get("expert_return"), demos_meta.get("random_return")
    if expert is None or random is None or expert == random:
        return None
    return normalise(ret, expert, random)


def train(env: str, demos_path: Path, learner: str, out: Path, cfg: ImitationConfig, budget: Budget,
          seed: int, board, all_episodes: bool = False) -> dict:
    """Fit ``learner`` on the demonstrations, write the policy file and its curve plot; return a summary.

    ``all_episodes``: learn from every episode in the file (else ``cfg.demo_episodes``).
    """
    if learner not in LEARNERS:
        raise UserError(f"unknown learner '{learner}' (known: {', '.join(LEARNERS)})")
    budget.validate()
    demos = load_demos(demos_path, make_env(env))
    if all_episodes:
        cfg = dataclasses.replace(cfg, demo_episodes=demos.n_episodes)
    if cfg.demo_episodes > demos.n_episodes:  # before any progress bar is drawn
        raise UserError(f"asked for {cfg.demo_episodes} demonstration episodes; the file has {demos.n_episodes}")
    if learner == "bc":
        cfg = dataclasses.replace(cfg, bc_steps=budget.env_steps)  # BC: --steps counts gradient steps
    fitter = make_learner(learner, cfg)
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    owner = {"env_id": env, "learner": learner, "config": dataclasses.asdict(cfg),
             "budget": dataclasses.asdict(budget), "seed": seed, "demos": file_digest(demos_path)}
    kwargs: dict = {}
    if hasattr(fitter, "training_state"):  # online learners checkpoint; BC never steps the env
        saved = load_owned_checkpoint(ckpt, owner, board.log)
        resume = saved["loop"] if saved else None
        if resume is not None:
            board.log(f"resuming from {ckpt} at env step {resume['step']}")
        kwargs = {"save": lambda loop: save_checkpoint(ckpt, {**owner, "loop": loop}), "resume": resume}
    bar = board.task(f"{learner} on {env}", budget.env_steps)
    fit = fitter.fit(env, demos, budget, seed=seed, advance=bar.advance, **kwargs)
    bar.finish()
    curve = [{"step": r["env_step"], "return": r["return_mean"], "return_std": r["return_std"],
              "normalised": normalised_return(r["return_mean"], demos.meta)} for r in fit.curve]
    actor = fit.actor
    save_checkpoint(out, {
        "format": POLICY_FORMAT, "env_id": env, "learner": learner, "seed": seed, "absorbing": fit.absorbing,
        "obs_dim": demos.observations.shape[1] + int(fit.absorbing), "act_dim": demos.actions.shape[1],
        "hidden": cfg.hidden, "layers": cfg.layers, "weights": actor.state_dict(),
        "config": dataclasses.asdict(cfg), "budget": dataclasses.asdict(budget), "curve": curve,
    })
    ckpt.unlink(missing_ok=True)
    plot_path = out.with_name(out.name + ".curve.png")
    atomic_write_bytes(plot_path, _curve_png(curve, f"{learner} on {env}", demos))
    last = curve[-1] if curve else {"return": float("nan"), "normalised": None}
    return {"policy": str(out), "plot": str(plot_path), "final_return": last["return"],
            "final_normalised": last["normalised"], "evaluations": len(curve)}


def load_policy(path: Path) -> tuple[TanhGaussianActor, dict]:
    """The saved actor (deterministic use: ``actor.deterministic``) and the file's other fields."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != POLICY_FORMAT:
        raise UserError(f"{path} is not a nanorepro imitation policy (format {POLICY_FORMAT})")
    weights = state["weights"]
    actor = TanhGaussianActor(state["obs_dim"], state["act_dim"], weights["centre"] - weights["scale"],
                              weights["centre"] + weights["scale"], state["hidden"], state["layers"])
    actor.load_state_dict(weights)
    return actor.eval().requires_grad_(False), state


def evaluate_policy(policy_path: Path, env: str, episodes: int, seed: int, demos_path: Path | None = None) -> dict:
    """Returns of ``episodes`` deterministic episodes (and their normalised mean, given the demo file)."""
    actor, state = load_policy(policy_path)
    probe = make_env(env)
    obs_dim = probe.observation_space.shape[0] + int(state["absorbing"])
    act_dim = probe.action_space.shape[0]
    probe.close()
    if (obs_dim, act_dim) != (state["obs_dim"], state["act_dim"]):
        raise UserError(f"{policy_path} was trained on {state['env_id']} (observations {state['obs_dim']}, actions "
                        f"{state['act_dim']}); {env} has {obs_dim} and {act_dim}")
    returns = evaluate(actor.deterministic, env, episodes, seed, absorbing=state["absorbing"])
    summary = {"env_id": env_id(env), "episodes": episodes, "return_mean": float(returns.mean()),
               "return_std": float(returns.std()), "normalised": None}
    if demos_path is not None:
        summary["normalised"] = normalised_return(summary["return_mean"], load_demos(demos_path).meta)
    return summary


def _curve_png(curve: list[dict], title: str, demos: Demos) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps = np.array([r["step"] for r in curve])
    mean, std = np.array([r["return"] for r in curve]), np.array([r["return_std"] for r in curve])
    ax.plot(steps, mean, "o-", label=title)
    ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    for key, label, style in (("expert_return", "expert", "--"), ("random_return", "random policy", ":")):
        if key in demos.meta:
            ax.axhline(demos.meta[key], color="grey", linestyle=style, label=label)
    ax.set_xlabel("gradient steps (BC)" if title.startswith("bc ") else "env steps")
    ax.set_ylabel("return (deterministic policy)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


__all__ = ["train", "load_policy", "evaluate_policy", "learner_config", "POLICY_FORMAT"]
