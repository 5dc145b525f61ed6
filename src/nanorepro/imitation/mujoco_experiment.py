"""Experiment ``dual_qdm_mujoco``: BC, GAIL (DAC), IQ-E, IQ-M and Dual Q-DM on HalfCheetah-v5 and Hopper-v5.

Each learner sees one expert trajectory of the bundled demonstrations (``imitation/data``,
made by ``nanorepro imitation make-experts``), subsampled every 20th step from a random
offset (the GAIL/DAC protocol; with whole trajectories BC nearly matches the expert).
All online learners get the same number of env steps and gradient updates; BC never
steps the env and is evaluated as often along its own gradient steps. Metric:
normalised return (R - R_random) / (R_expert - R_random) averaged over the last
``last_evals`` evaluations (10 deterministic episodes each).

Per-env hyperparameters of the Q-based learners (box, lambda, temperature, actor lr,
value term) are those of Dual Q-DM's launch script; IQ-E and IQ-M share everything but
the regulariser, so each comparison changes one thing. Networks are 128 wide (the
paper's 256 cost 2.3x per update here; benchmarks/bench_imitation.py) and a learner
updates every 2nd env step (the paper: 500k updates); docs/dual_qdm.md lists what is
our reconstruction.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nanorepro.common.experiment import ClaimCheck, Experiment, Metrics, Profile, RunContext, Table
from nanorepro.imitation.demos import bundled_demos_path, load_demos
from nanorepro.imitation.learners import ImitationConfig, make_learner
from nanorepro.rl.online import Budget, make_env

LEARNERS = ("bc", "gail", "iq_e", "iq_m", "dqdm")
LABELS = {"bc": "BC", "gail": "GAIL (DAC)", "iq_e": "IQ-E", "iq_m": "IQ-M", "dqdm": "Dual Q-DM"}


@dataclass(frozen=True)
class EnvSettings:
    """Dual Q-DM's per-env settings (scripts/run_mujoco.sh of its code), shared by IQ-E and IQ-M."""

    env: str
    box_low: float
    box_high: float
    hinge_weight: float
    temperature: float
    actor_lr: float
    value_term: Literal["mix", "v0"]


DEFAULT_SETTINGS = (
    EnvSettings("HalfCheetah-v5", -1.0, 1.0, 0.5, 1e-3, 3e-4, "mix"),
    EnvSettings("Hopper-v5", -2.0, 2.0, 0.5, 1.0, 2e-5, "v0"),
)


@dataclass(frozen=True)
class MujocoILConfig:
    settings: tuple[EnvSettings, ...] = DEFAULT_SETTINGS  # one entry per env, in run order
    learners: tuple[str, ...] = LEARNERS
    env_steps: int = 100_000
    start_steps: int = 2_000
    update_every: int = 2  # env steps per gradient update
    eval_every: int = 5_000
    eval_episodes: int = 10
    eval_max_steps: int | None = None
    last_evals: int = 5  # the metric averages the last 5 evaluations
    hidden: int = 128
    batch_size: int = 128  # per source (expert and replay)
    demo_episodes: int = 1
    subsample: int = 20
    bc_steps: int = 10_000

    def validate(self) -> None:
        unknown = set(self.learners) - set(LEARNERS)
        if unknown:
            raise ValueError(f"unknown learners {sorted(unknown)} (known: {', '.join(LEARNERS)})")
        if not 1 <= self.last_evals <= self.env_steps // self.eval_every:
            raise ValueError("last_evals must be between 1 and the number of evaluations")
        self.budget().validate()

    def budget(self) -> Budget:
        return Budget(env_steps=self.env_steps, start_steps=self.start_steps, update_every=self.update_every,
                      eval_every=self.eval_every, eval_episodes=self.eval_episodes,
                      eval_max_steps=self.eval_max_steps)

    def learner_config(self, s: EnvSettings) -> ImitationConfig:
        return ImitationConfig(hidden=self.hidden, batch_size=self.batch_size, temperature=s.temperature,
                               actor_lr=s.actor_lr, value_term=s.value_term, box_low=s.box_low,
                               box_high=s.box_high, hinge_weight=s.hinge_weight, demo_episodes=self.demo_episodes,
                               subsample=self.subsample, bc_steps=self.bc_steps)


def normalise(ret: float, expert: float, random: float) -> float:
    return (ret - random) / (expert - random)


def mujoco_il_run(cfg: MujocoILConfig, ctx: RunContext) -> Metrics:
    budget = cfg.budget()
    saved = ctx.load_checkpoint() or {"finished": {}, "partial": None}
    done, partial = saved["finished"], saved["partial"]  # partial: {"key", "loop"} of an interrupted learner
    total = len(cfg.settings) * len(cfg.learners) * cfg.env_steps
    task = ctx.task(f"dual_qdm_mujoco seed {ctx.seed}", total)
    metrics: Metrics = {"envs": {}}
    for s in cfg.settings:
        demos = load_demos(bundled_demos_path(s.env), make_env(s.env))
        expert, random = demos.meta["expert_return"], demos.meta["random_return"]
        rows = metrics["envs"][s.env] = {"expert_return": expert, "random_return": random, "learners": {}}
        for name in cfg.learners:
            key = f"{s.env}/{name}"
            if key in done:
                rows["learners"][name] = done[key]
                task.advance(cfg.env_steps)
                continue
            learner = make_learner(name, cfg.learner_config(s))
            resumed = partial if partial is not None and partial["key"] == key else None
            start = time.perf_counter() - (resumed["wall_s"] if resumed else 0.0)  # wall_s counts both parts
            checkpointing = {}
            if hasattr(learner, "training_state"):  # online learners resume mid-run; BC takes seconds

                def save(loop: dict, key: str = key, start: float = start) -> None:
                    ctx.save_checkpoint({"finished": done, "partial": {"key": key, "loop": loop,
                                                                        "wall_s": time.perf_counter() - start}})

                if resumed is not None:
                    ctx.board.log(f"  {s.env} {LABELS[name]}: resuming at env step {resumed['loop']['step']}")
                checkpointing = {"save": save, "resume": resumed["loop"] if resumed else None}
            fit = learner.fit(s.env, demos, budget, seed=ctx.seed, advance=task.advance, **checkpointing)
            curve = [{"env_step": r["env_step"], "return": r["return_mean"],
                      "normalised": normalise(r["return_mean"], expert, random)} for r in fit.curve]
            last = [r["normalised"] for r in curve[-cfg.last_evals:]]
            result = {"curve": curve, "normalised": float(np.mean(last)),
                      "return": float(np.mean([r["return"] for r in curve[-cfg.last_evals:]])),
                      "wall_s": time.perf_counter() - start}
            rows["learners"][name] = done[key] = result
            ctx.board.log(f"  {s.env} {LABELS[name]}: normalised {result['normalised']:.3f} "
                          f"(return {result['return']:.0f}) in {result['wall_s']:.0f} s")
            ctx.save_checkpoint({"finished": done, "partial": None})
    task.finish()
    return metrics


# --------------------------------------------------------------------------- checks, tables, plots


def _score(run: Metrics, env: str, learner: str) -> float | None:
    try:
        return run["envs"][env]["learners"][learner]["normalised"]
    except KeyError:
        return None


def margin(env: str, a: str, b: str):
    """Mean over seeds of normalised(a) - normalised(b) on ``env``."""
    def measure(runs: list[Metrics]) -> float | None:
        diffs = [(_score(r, env, a), _score(r, env, b)) for r in runs]
        diffs = [x - y for x, y in diffs if x is not None and y is not None]
        return statistics.fmean(diffs) if diffs else None
    return measure


def _checks() -> tuple[ClaimCheck, ...]:
    checks = []
    for tag, env in (("C", "HalfCheetah-v5"), ("H", "Hopper-v5")):
        checks += [
            ClaimCheck(f"{tag}1", f"{env}: Dual Q-DM's normalised return exceeds BC's by >= 0.15",
                       margin(env, "dqdm", "bc"), ">=", 0.15),
            ClaimCheck(f"{tag}2", f"{env}: Dual Q-DM's normalised return exceeds IQ-E's (chi^2 on expert) by >= 0.10",
                       margin(env, "dqdm", "iq_e"), ">=", 0.10),
            ClaimCheck(f"{tag}3", f"{env}: Dual Q-DM minus IQ-M (chi^2 on the mixture), normalised (reported)",
                       margin(env, "dqdm", "iq_m")),
            ClaimCheck(f"{tag}4", f"{env}: Dual Q-DM minus GAIL (DAC), normalised (reported)",
                       margin(env, "dqdm", "gail")),
        ]
    return tuple(checks)


CHECKS = _checks()


def _envs(runs: list[Metrics]) -> list[str]:
    return list(runs[0]["envs"]) if runs else []


def mujoco_il_tables(runs: list[Metrics]) -> list[Table]:
    envs = _envs(runs)

    def cell(env, name, key, fmt):
        values = [r["envs"][env]["learners"][name][key] for r in runs if name in r["envs"][env]["learners"]]
        if not values:
            return "-"
        spread = f" ± {statistics.stdev(values):{fmt}}" if len(values) > 1 else ""
        return f"{statistics.fmean(values):{fmt}}{spread}"

    learners = [n for n in LEARNERS if any(n in r["envs"][e]["learners"] for r in runs for e in envs)]
    rows = [[LABELS[n]] + [cell(e, n, "normalised", ".3f") for e in envs] + [cell(e, n, "return", ".0f") for e in envs]
            + [cell(e, n, "wall_s", ".0f") for e in envs] for n in learners]
    rows.append(["expert / random (raw)", *["1 / 0"] * len(envs),
                 *[f"{runs[0]['envs'][e]['expert_return']:.0f} / {runs[0]['envs'][e]['random_return']:.0f}"
                   for e in envs], *["-"] * len(envs)])
    columns = (["learner"] + [f"{e} normalised" for e in envs] + [f"{e} return" for e in envs]
               + [f"{e} wall s" for e in envs])
    return [Table(f"Normalised return, mean of the last evaluations (mean ± std over {len(runs)} seeds)",
                  columns, rows)]


def mujoco_il_plot(runs: list[Metrics]) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = _envs(runs)
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for name in LEARNERS:
            curves = [r["envs"][env]["learners"][name]["curve"] for r in runs if name in r["envs"][env]["learners"]]
            if not curves:
                continue
            steps = [row["env_step"] for row in curves[0]]
            values = np.array([[row["normalised"] for row in c] for c in curves])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, label=LABELS[name])
            ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set(title=env, xlabel="env steps (BC: gradient steps, rescaled)", ylabel="normalised return")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return {"learning_curves": fig}


EXPERIMENT = Experiment(
    name="dual_qdm_mujoco",
    system="dual_qdm",
    summary="BC, off-policy GAIL, IQ-Learn (chi^2 on expert / on mixture) and Dual Q-DM from one subsampled "
            "expert trajectory on HalfCheetah-v5 and Hopper-v5",
    profiles={
        "smoke": Profile(MujocoILConfig(env_steps=300, start_steps=100, update_every=1, eval_every=150,
                                        eval_episodes=2, eval_max_steps=40, last_evals=2, hidden=32,
                                        batch_size=32, bc_steps=40), seeds=1),
        "quick": Profile(MujocoILConfig(env_steps=20_000, last_evals=2), seeds=1),
        "full": Profile(MujocoILConfig(), seeds=3),
    },
    # one thread: 128-wide MLPs at batch 256 run faster on one core each, seeds side by side
    run=mujoco_il_run, checks=CHECKS, plot=mujoco_il_plot, tables=mujoco_il_tables, threads=1, device="cpu",
)
