"""Experiment ``dual_qdm_cliff``: the mechanism behind Dual Q-DM on the tabular reset cliff.

The paper (arXiv 2603.22713) claims that IQ-Learn reduces to BC, with an imitation gap
that grows quadratically in the horizon H because it pushes Q down uniformly over all
actions on states the demonstrations do not cover, and that Bellman constraints (Dual
Q-DM) carry high Q-values to those states, recover the expert action there and match
adversarial imitation (AIL). Here, for each seed and each H, five learners see the
same N expert trajectories of the reset cliff (``nanorepro.envs.tabular``):

    bc     behaviour cloning (uniform where (h, s) was not demonstrated)
    iq_e   IQ-Learn, chi^2 on expert samples
    iq_m   IQ-Learn, chi^2 on the expert/learner mixture (the official MuJoCo recipe)
    dqdm   Dual Q-DM, squared-hinge box constraint on r = Q - P V under the mixture
    ail    TV-AIL, projected reward ascent against a soft-optimal policy

and we compute their exact imitation gaps H - V(pi) (greedy and stochastic policy) and
their mean pi(a*|s) over undemonstrated (h, s). BC's gap is also averaged over many
extra datasets per seed and compared with its closed form (``expected_bc_gap``).
Losses and their finite-horizon form: ``nanorepro.imitation.tabular`` and docs/dual_qdm.md.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from nanorepro.common.experiment import ClaimCheck, Experiment, Metrics, Profile, RunContext, Table
from nanorepro.common.seeding import rng_stream
from nanorepro.envs.tabular import deterministic_policy, policy_value, reset_cliff, sample_trajectories
from nanorepro.imitation.tabular import (
    AILConfig,
    Demonstrations,
    Fit,
    QLearnerConfig,
    behaviour_cloning,
    dual_qdm_loss,
    fit_q_learner,
    fit_tv_ail,
    iq_learn_loss,
)

LEARNERS = ("bc", "iq_e", "iq_m", "dqdm", "ail")
LEARNER_LABELS = {
    "bc": "BC",
    "iq_e": "IQ-E (IQ-Learn, chi2 on expert)",
    "iq_m": "IQ-M (IQ-Learn, chi2 on mixture)",
    "dqdm": "Dual Q-DM",
    "ail": "TV-AIL",
}
SHORT_LABELS = {"bc": "BC", "iq_e": "IQ-E", "iq_m": "IQ-M", "dqdm": "Dual Q-DM", "ail": "TV-AIL"}


@dataclass(frozen=True)
class CliffConfig:
    n_states: int = 10  # S good states (plus one absorbing bad state)
    n_actions: int = 2  # A; the expert action a*(s) is drawn per seed
    n_demos: int = 50  # N expert trajectories, each of length H
    horizons: tuple[int, ...] = (10, 20, 40, 80)
    temperature: float = 0.1  # alpha of every soft policy, fixed
    q_lr: float = 0.1  # Adam on the Q table (IQ-Learn, Dual Q-DM)
    q_steps: int = 1500  # the critics' greedy policies settle within ~500 steps at H = 80
    chi2_c: float = 0.5  # IQ-Learn's chi^2 alpha: phi(r) = r - r^2 / (4 c)
    box_low: float = -1.0  # Dual Q-DM's Bellman box l <= Q - P V <= u
    box_high: float = 1.0
    hinge_weight: float = 0.5  # lambda on the squared hinge
    value_term: Literal["v0", "mix"] = "v0"  # (1/H) E_p0[V_0], or its telescoped mixture form
    ail_lr: float = 1.0  # TV-AIL reward ascent step
    ail_steps: int = 500
    ail_reward_bound: float = 1.0
    bc_datasets: int = 1000  # extra datasets per seed for BC's gap-growth figure
    tie_tol: float = 1e-6  # greedy ties within this are broken uniformly
    checkpoint_every: int = 250  # critic steps between checkpoints

    def validate(self) -> None:
        if self.n_states < 1 or self.n_actions < 2 or self.n_demos < 1:
            raise ValueError("need n_states >= 1, n_actions >= 2, n_demos >= 1")
        if not self.horizons or min(self.horizons) < 1 or list(self.horizons) != sorted(set(self.horizons)):
            raise ValueError(f"horizons must be distinct, increasing and >= 1, got {self.horizons}")
        if self.temperature <= 0 or self.q_lr <= 0 or self.ail_lr <= 0 or self.chi2_c <= 0:
            raise ValueError("temperature, learning rates and chi2_c must be > 0")
        if self.box_low >= self.box_high:
            raise ValueError(f"box_low must be < box_high, got [{self.box_low}, {self.box_high}]")
        if min(self.q_steps, self.ail_steps, self.checkpoint_every) < 1 or self.bc_datasets < 0:
            raise ValueError("step counts must be >= 1 and bc_datasets >= 0")


def expected_bc_gap(horizon: int, n_states: int, n_actions: int, n_demos: int) -> float:
    """Closed-form E[H - V(BC)] over datasets on the reset cliff.

    Each step's states are i.i.d. uniform (the expert resets uniformly), so (h, s) is
    undemonstrated with probability q = (1 - 1/S)^N independently across h, and BC picks
    a* there with probability 1/A. A living learner is uniform over good states, so it
    survives step h with probability m_h = mean_s pi_h(a*|s), E[m_h] = 1 - (1 - 1/A) q,
    and E[V] = sum_{h=1..H} E[m]^h by independence across steps.
    """
    q = (1.0 - 1.0 / n_states) ** n_demos
    m = 1.0 - (1.0 - 1.0 / n_actions) * q
    return horizon - sum(m**h for h in range(1, horizon + 1))


def bc_gap_over_datasets(cfg: CliffConfig, horizon: int, n_datasets: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy-BC gap on ``n_datasets`` fresh expert datasets, vectorised over datasets."""
    a_star = rng.integers(0, cfg.n_actions, cfg.n_states)
    mdp = reset_cliff(cfg.n_states, cfg.n_actions, a_star)
    # Expert states are i.i.d. uniform per step: sample visits directly, (D, N, H).
    states = rng.integers(0, cfg.n_states, (n_datasets, cfg.n_demos, horizon))
    covered = np.zeros((n_datasets, horizon, cfg.n_states + 1), dtype=bool)
    d_idx, _, h_idx = np.indices(states.shape)
    covered[d_idx, h_idx, states] = True
    expert = deterministic_policy(np.append(a_star, 0), horizon, cfg.n_actions).numpy()
    uniform = np.full_like(expert, 1.0 / cfg.n_actions)
    pi = np.where(covered[..., None], expert[None], uniform[None])
    return horizon - policy_value(mdp, torch.from_numpy(pi)).numpy()


def _fit(learner: str, cfg: CliffConfig, mdp, demos: Demonstrations, *, resume, checkpoint, on_step) -> Fit:
    q_cfg = QLearnerConfig(alpha=cfg.temperature, lr=cfg.q_lr, steps=cfg.q_steps, tie_tol=cfg.tie_tol,
                           checkpoint_every=cfg.checkpoint_every)
    common = dict(resume=resume, checkpoint=checkpoint, on_step=on_step, value=cfg.value_term)
    if learner == "bc":
        return behaviour_cloning(demos)
    if learner == "iq_e":
        return fit_q_learner(iq_learn_loss, mdp, demos, q_cfg, uses_learner_data=False,
                             chi2_c=cfg.chi2_c, chi2_on="expert", **common)
    if learner == "iq_m":
        return fit_q_learner(iq_learn_loss, mdp, demos, q_cfg, uses_learner_data=True,
                             chi2_c=cfg.chi2_c, chi2_on="mix", **common)
    if learner == "dqdm":
        return fit_q_learner(dual_qdm_loss, mdp, demos, q_cfg, uses_learner_data=True,
                             box=(cfg.box_low, cfg.box_high), hinge_weight=cfg.hinge_weight, **common)
    ail_cfg = AILConfig(alpha=cfg.temperature, lr=cfg.ail_lr, steps=cfg.ail_steps,
                        reward_bound=cfg.ail_reward_bound, tie_tol=cfg.tie_tol)
    return fit_tv_ail(mdp, demos, ail_cfg, on_step=on_step)


def _learner_metrics(fit: Fit, bc: Fit, mdp, a_star: np.ndarray, uncovered_HS: torch.Tensor) -> dict:
    """Gaps, pi(a*) summed over undemonstrated good (h, s), and distance to BC's greedy policy."""
    H, S = uncovered_HS.shape
    a_star_HS = torch.as_tensor(a_star).expand(H, S)

    def pi_star(pi_HSA: torch.Tensor) -> torch.Tensor:
        return pi_HSA[:, :S].gather(-1, a_star_HS.unsqueeze(-1)).squeeze(-1)

    return {
        "gap_greedy": H - policy_value(mdp, fit.greedy_HSA).item(),
        "gap_stochastic": H - policy_value(mdp, fit.policy_HSA).item(),
        "uncovered_pi_star_sum": pi_star(fit.policy_HSA)[uncovered_HS].sum().item(),
        "uncovered_greedy_pi_star_sum": pi_star(fit.greedy_HSA)[uncovered_HS].sum().item(),
        "greedy_dist_to_bc": (fit.greedy_HSA[:, :S] - bc.greedy_HSA[:, :S]).abs().max().item(),
        "curve": [{k: v for k, v in p.items() if k != "value_greedy"} | {"gap_greedy": H - p["value_greedy"]}
                  for p in fit.curve],
    }


def run(cfg: CliffConfig, ctx: RunContext) -> Metrics:
    state = ctx.load_checkpoint() or {"done": {}, "partial": None}
    done: dict = state["done"]
    cost = {"bc": 0, "iq_e": cfg.q_steps, "iq_m": cfg.q_steps, "dqdm": cfg.q_steps, "ail": cfg.ail_steps}
    bar = ctx.task(f"dual_qdm_cliff seed {ctx.seed}",
                   total=sum(cost[name] * H for H in cfg.horizons for name in LEARNERS) + len(cfg.horizons))
    per_h: dict[str, dict] = {}
    for H in cfg.horizons:
        rng = rng_stream(ctx.seed, "instance", H)
        a_star = rng.integers(0, cfg.n_actions, cfg.n_states)
        mdp = reset_cliff(cfg.n_states, cfg.n_actions, a_star)
        expert = deterministic_policy(np.append(a_star, 0), H, cfg.n_actions)  # bad state: any action
        states, actions, _ = sample_trajectories(mdp, expert, cfg.n_demos, rng)
        demos = Demonstrations.from_trajectories(states, actions, cfg.n_states + 1, cfg.n_actions)
        uncovered = ~demos.covered_HS[:, : cfg.n_states]
        bc = behaviour_cloning(demos)
        for name in LEARNERS:
            key = f"{H}/{name}"
            if key in done:
                bar.advance(cost[name] * H)
                continue
            partial = state["partial"]
            resume = partial["learner"] if partial is not None and partial["key"] == key else None
            if resume is not None:
                bar.advance(resume["step"] * H)

            def checkpoint(learner_state: dict, key=key) -> None:
                ctx.save_checkpoint({"done": done, "partial": {"key": key, "learner": learner_state}})

            fit = _fit(name, cfg, mdp, demos, resume=resume, checkpoint=checkpoint,
                       on_step=lambda _step, H=H: bar.advance(H))
            done[key] = _learner_metrics(fit, bc, mdp, a_star, uncovered)
            state["partial"] = None
            ctx.save_checkpoint({"done": done, "partial": None})
        bc_gaps = bc_gap_over_datasets(cfg, H, cfg.bc_datasets, rng_stream(ctx.seed, "bc_growth", H))
        per_h[str(H)] = {
            "n_uncovered": int(uncovered.sum()),
            "learners": {name: done[f"{H}/{name}"] for name in LEARNERS},
            "bc_datasets_gap_sum": float(bc_gaps.sum()),
            "bc_datasets": int(bc_gaps.size),
            "bc_gap_expected": expected_bc_gap(H, cfg.n_states, cfg.n_actions, cfg.n_demos),
        }
        bar.advance(1)
    bar.finish()
    return {"horizons": list(cfg.horizons), "per_horizon": per_h}


# --------------------------------------------------------------------------- claim checks


def _mean_gap(runs: list[Metrics], learner: str, H: str, kind: str = "gap_greedy") -> float:
    return statistics.fmean(r["per_horizon"][H]["learners"][learner][kind] for r in runs)


def _pooled_pi_star(runs: list[Metrics], learner: str, key: str = "uncovered_pi_star_sum") -> float | None:
    """pi(a*) averaged over every undemonstrated (h, s) of every seed and horizon."""
    total = sum(h["learners"][learner][key] for r in runs for h in r["per_horizon"].values())
    count = sum(h["n_uncovered"] for r in runs for h in r["per_horizon"].values())
    return total / count if count else None


def _extreme_horizons(runs: list[Metrics]) -> tuple[str, str]:
    horizons = runs[0]["horizons"]
    return str(horizons[0]), str(horizons[-1])


def bc_datasets_mean_gap(runs: list[Metrics], H: str) -> float:
    """BC's greedy gap averaged over every extra dataset of every seed."""
    total = sum(r["per_horizon"][H]["bc_datasets_gap_sum"] for r in runs)
    return total / max(1, sum(r["per_horizon"][H]["bc_datasets"] for r in runs))


def iq_e_matches_bc(runs: list[Metrics]) -> float:
    pairs = [h["learners"]["iq_e"]["greedy_dist_to_bc"] <= 1e-3 for r in runs for h in r["per_horizon"].values()]
    return sum(pairs) / len(pairs)


def bc_gap_growth(runs: list[Metrics]) -> float | None:
    lo, hi = _extreme_horizons(runs)
    low = bc_datasets_mean_gap(runs, lo)
    return bc_datasets_mean_gap(runs, hi) / low if low > 0 else None


def worst_mean_gap(learner: str, kind: str = "gap_greedy"):
    def measure(runs: list[Metrics]) -> float:
        return max(_mean_gap(runs, learner, H, kind) for H in runs[0]["per_horizon"])
    return measure


def dqdm_ail_difference(runs: list[Metrics]) -> float:
    return max(abs(_mean_gap(runs, "dqdm", H) - _mean_gap(runs, "ail", H)) for H in runs[0]["per_horizon"])


def stochastic_gap_growth(learner: str):
    def measure(runs: list[Metrics]) -> float | None:
        lo, hi = _extreme_horizons(runs)
        low = _mean_gap(runs, learner, lo, "gap_stochastic")
        return _mean_gap(runs, learner, hi, "gap_stochastic") / low if low > 1e-12 else None
    return measure


def bc_monte_carlo_vs_closed_form(runs: list[Metrics]) -> float:
    _, hi = _extreme_horizons(runs)
    return bc_datasets_mean_gap(runs, hi) / runs[0]["per_horizon"][hi]["bc_gap_expected"]


CHECKS = (
    ClaimCheck("A1a", "IQ-Learn (chi2 on expert) has BC's greedy policy: share of (seed, H) pairs",
               iq_e_matches_bc, ">=", 0.9),
    ClaimCheck("A1b", "IQ-Learn (chi2 on expert) pi(a*) on undemonstrated states is 1/A = 0.5 (pooled)",
               lambda runs: _pooled_pi_star(runs, "iq_e"), "in", (0.45, 0.55)),
    ClaimCheck("A2", "BC's greedy gap grows from the smallest to the largest H (10 -> 80) by a factor",
               bc_gap_growth, ">=", 40.0),
    ClaimCheck("A3a", "Dual Q-DM greedy gap, worst over H of the seed mean", worst_mean_gap("dqdm"), "<=", 0.05),
    ClaimCheck("A3b", "Dual Q-DM pi(a*) on undemonstrated states (pooled)",
               lambda runs: _pooled_pi_star(runs, "dqdm"), ">=", 0.95),
    ClaimCheck("A4", "|Dual Q-DM - TV-AIL| greedy gap, worst over H of the seed means",
               dqdm_ail_difference, "<=", 0.05),
    ClaimCheck("R1", "IQ-Learn (chi2 on mixture) greedy gap, worst over H of the seed mean",
               worst_mean_gap("iq_m")),
    ClaimCheck("R2", "IQ-Learn (chi2 on mixture) pi(a*) on undemonstrated states (pooled)",
               lambda runs: _pooled_pi_star(runs, "iq_m")),
    ClaimCheck("R3", "TV-AIL greedy gap, worst over H of the seed mean", worst_mean_gap("ail")),
    ClaimCheck("R4", "Dual Q-DM stochastic-policy gap growth, smallest to largest H (ratio of seed means)",
               stochastic_gap_growth("dqdm"), seed_spread=False),
    ClaimCheck("R5", "BC gap at the largest H: Monte Carlo over datasets / closed form",
               bc_monte_carlo_vs_closed_form),
)


# --------------------------------------------------------------------------- report


def _gap_text(gap: float) -> str:
    return f"{0.0 if abs(gap) < 5e-4 else gap:.3f}"  # exact gaps carry -1e-15 float dust


def tables(runs: list[Metrics]) -> list[Table]:
    """Seed-mean gaps by horizon (greedy / stochastic), with BC over the extra datasets."""
    keys = [str(H) for H in runs[0]["horizons"]]
    rows = []
    for H in keys:
        cells = [f"{_gap_text(_mean_gap(runs, n, H))} / {_gap_text(_mean_gap(runs, n, H, 'gap_stochastic'))}"
                 for n in LEARNERS]
        n_datasets = sum(r["per_horizon"][H]["bc_datasets"] for r in runs)
        rows.append([H, *cells, f"{bc_datasets_mean_gap(runs, H):.3f} ({n_datasets})",
                     f"{runs[0]['per_horizon'][H]['bc_gap_expected']:.3f}",
                     str(sum(r["per_horizon"][H]["n_uncovered"] for r in runs))])
    columns = ["H", *(SHORT_LABELS[n] for n in LEARNERS), "BC over datasets (n)", "BC closed form",
               "undemonstrated (h, s)"]
    return [Table(f"Imitation gap H - V(pi), greedy / stochastic, mean of {len(runs)} seeds", columns, rows)]



def plot(runs: list[Metrics]) -> dict:
    """Gaps against H (greedy, stochastic), pi(a*) off the data, learning curves at the largest H."""
    from matplotlib.figure import Figure

    horizons = runs[0]["horizons"]
    keys = [str(H) for H in horizons]
    fig = Figure(figsize=(18, 4.2), layout="tight")
    axes = fig.subplots(1, 4)
    for ax, kind, title in ((axes[0], "gap_greedy", "greedy policy"), (axes[1], "gap_stochastic", "stochastic policy")):
        for name in LEARNERS:
            values = np.array([[r["per_horizon"][H]["learners"][name][kind] for H in keys] for r in runs])
            style = dict(ls="--", mfc="none", ms=9) if name == "iq_e" else {}  # IQ-E lies on BC's line
            ax.errorbar(horizons, values.mean(0), yerr=values.std(0), marker="o", capsize=3,
                        label=LEARNER_LABELS[name], **style)
        if kind == "gap_greedy":
            bc_many = [bc_datasets_mean_gap(runs, H) for H in keys]
            n = sum(r["per_horizon"][keys[0]]["bc_datasets"] for r in runs)
            ax.plot(horizons, bc_many, "k--", label=f"BC, mean of {n} datasets")
            ax.plot(horizons, [runs[0]["per_horizon"][H]["bc_gap_expected"] for H in keys], "k:",
                    label="BC, closed form")
        ax.set_xscale("log")
        ax.set_xticks(horizons, [str(H) for H in horizons])
        ax.minorticks_off()
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("horizon H")
        ax.set_ylabel("imitation gap H - V(pi)")
        ax.set_title(f"Imitation gap, {title} (mean ± std, {len(runs)} seeds)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)

    pooled = [_pooled_pi_star(runs, name) for name in LEARNERS]
    axes[2].bar([SHORT_LABELS[n] for n in LEARNERS], [p or 0.0 for p in pooled],
                color=[f"C{i}" for i in range(len(LEARNERS))])
    axes[2].axhline(1.0 / 2, color="grey", ls=":")
    axes[2].set_ylim(0, 1.05)
    axes[2].set_title("pi(a*) on undemonstrated states (pooled)")

    H = keys[-1]
    for name in ("iq_e", "iq_m", "dqdm", "ail"):
        curves = [r["per_horizon"][H]["learners"][name]["curve"] for r in runs]
        if curves and curves[0]:
            steps = [p["step"] for p in curves[0]]
            mean = np.mean([[p["gap_greedy"] for p in c] for c in curves], axis=0)
            axes[3].plot(steps, mean, label=LEARNER_LABELS[name], color=f"C{LEARNERS.index(name)}")
    axes[3].set_yscale("symlog", linthresh=0.01)
    axes[3].set_ylim(bottom=0)
    axes[3].set_xlabel("optimisation step (critic) / reward update (AIL)")
    axes[3].set_ylabel("greedy gap")
    axes[3].set_title(f"Learning curves at H = {H} (seed mean)")
    axes[3].grid(alpha=0.3)
    axes[3].legend(fontsize=7)
    return {"overview": fig}


EXPERIMENT = Experiment(
    name="dual_qdm_cliff",
    system="dual_qdm",
    summary="Tabular reset cliff: IQ-Learn reduces to BC; Bellman constraints (Dual Q-DM) match AIL.",
    profiles={
        "smoke": Profile(CliffConfig(horizons=(5, 10), n_demos=10, q_steps=150, ail_steps=60, bc_datasets=50,
                                     checkpoint_every=50), seeds=2),
        "quick": Profile(CliffConfig(q_steps=1000, ail_steps=300, bc_datasets=250), seeds=4),
        "full": Profile(CliffConfig(), seeds=12),
    },
    run=run,
    checks=CHECKS,
    plot=plot,
    tables=tables,
    threads=1,  # tables of a few hundred entries: one thread is faster (benchmarks/bench_cliff.py)
    device="cpu",
)
