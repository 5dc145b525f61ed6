"""Tabular imitation learners on a known finite-horizon MDP: BC, IQ-Learn, Dual Q-DM, TV-AIL.

Papers: Xu et al., "Non-Adversarial Imitation Learning Provably Free of Compounding
Errors: The Role of Bellman Constraints" (Dual Q-DM, arXiv 2603.22713); Garg et al.,
"IQ-Learn: Inverse soft-Q Learning for Imitation" (NeurIPS 2021); Ho & Ermon (2016)
and Xu et al. (2020) for adversarial imitation with a total-variation dual.

Every learner sees the same N expert trajectories (their empirical occupancy d_E).
Known dynamics stand in for online interaction: where an online learner samples its
own replay, we use the exact occupancy d_pi of its current policy, with no gradient
through it (none flows through sampled data either). Expectations over next states
use the known P rather than the sampled s' (exactness over sampling noise).

Notation (finite horizon, undiscounted, time-indexed, V_H = 0), shapes H, S, A:

    V_h(s)    = alpha * logsumexp_a Q_h(s, a) / alpha     soft value of pi = softmax(Q / alpha)
    r_h(s, a) = Q_h(s, a) - sum_s' P(s' | s, a) V_{h+1}(s')   IQ-Learn's inverse soft Bellman map
    E_d[f]    = (1 / H) sum_h sum_{s,a} d_h(s, a) f_h(s, a)   normalised occupancy expectation

Critic losses, minimised with Adam over the table Q (the finite-horizon form of the
losses in ../docs/dual_qdm.md; the (1 - gamma) E_p0[V(s_0)] term becomes (1/H) E_p0[V_0]):

    IQ-Learn, chi^2 (phi(r) = r - r^2 / (4 c)):
        L = -E_dE[r] + (1/H) E_p0[V_0] + 1/(4 c) * E_d[r^2]        d = d_E ("IQ-E") or mix ("IQ-M")
    Dual Q-DM, Bellman (box) constraint l <= r <= u under the mixture, as a squared hinge:
        L = -E_dE[r] + (1/H) E_p0[V_0] + lambda * E_mix[relu(l - r)^2 + relu(r - u)^2]

    where mix = (d_E + d_pi) / 2. TV-AIL ascends max_{|r| <= R} E_dE[r] - E_dpi[r] by
    projected gradient steps against pi = the soft-optimal policy for r.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from nanorepro.envs.tabular import TabularMDP, policy_value, state_action_occupancy

ValueTerm = Literal["v0", "mix"]
Checkpoint = Callable[[dict], None]


@dataclass(frozen=True)
class Demonstrations:
    """Expert data as the learners see it: per-step visit counts ``N_h(s, a)`` of N trajectories."""

    counts_HSA: torch.Tensor
    n_trajectories: int

    @classmethod
    def from_trajectories(cls, states_NH: np.ndarray, actions_NH: np.ndarray, n_states: int, n_actions: int):
        N, H = states_NH.shape
        counts = np.zeros((H, n_states, n_actions))
        np.add.at(counts, (np.arange(H)[None, :].repeat(N, 0), states_NH, actions_NH), 1.0)
        return cls(torch.from_numpy(counts), N)

    @property
    def occupancy_HSA(self) -> torch.Tensor:
        """Empirical d_E: each step's counts divided by N (sums to 1 per step)."""
        return self.counts_HSA / self.n_trajectories

    @property
    def covered_HS(self) -> torch.Tensor:
        return self.counts_HSA.sum(-1) > 0


@dataclass(frozen=True)
class Fit:
    """A learner's result: its stochastic policy, its greedy policy, and a learning curve."""

    policy_HSA: torch.Tensor
    greedy_HSA: torch.Tensor
    curve: list[dict]


# --------------------------------------------------------------------------- shared math


def expect(d_HSA: torch.Tensor, f_HSA: torch.Tensor) -> torch.Tensor:
    """E_d[f] = (1/H) sum_h sum_{s,a} d_h(s,a) f_h(s,a)."""
    return (d_HSA * f_HSA).sum() / d_HSA.shape[0]


def soft_value(Q_HSA: torch.Tensor, alpha: float) -> torch.Tensor:
    """V_h(s) = alpha logsumexp_a Q_h(s,a)/alpha = E_pi[Q - alpha log pi] for pi = softmax(Q/alpha)."""
    return alpha * torch.logsumexp(Q_HSA / alpha, dim=-1)


def next_value(V_HS: torch.Tensor, P_SAS: torch.Tensor) -> torch.Tensor:
    """(P V)_h(s,a) = sum_s' P(s'|s,a) V_{h+1}(s'), with V_H = 0."""
    V_next_HS = torch.cat([V_HS[1:], torch.zeros_like(V_HS[:1])])
    return torch.einsum("sap,hp->hsa", P_SAS, V_next_HS)


def implied_reward(Q_HSA: torch.Tensor, mdp: TabularMDP, alpha: float) -> torch.Tensor:
    """IQ-Learn's inverse soft Bellman operator: r_h(s,a) = Q_h(s,a) - (P V)_h(s,a)."""
    return Q_HSA - next_value(soft_value(Q_HSA, alpha), mdp.P_SAS)


def value_term(Q_HSA: torch.Tensor, mdp: TabularMDP, alpha: float, d_mix_HSA: torch.Tensor, kind: ValueTerm):
    """The initial-state term (1/H) E_p0[V_0] ("v0"), or its telescoped form over the mixture ("mix").

    With exact occupancies the two agree for the learner half of the mixture (the sum over
    h telescopes); for the empirical expert half they differ by sampling noise.
    """
    V_HS = soft_value(Q_HSA, alpha)
    if kind == "v0":
        return (mdp.p0_S * V_HS[0]).sum() / Q_HSA.shape[0]
    return expect(d_mix_HSA, V_HS.unsqueeze(-1) - next_value(V_HS, mdp.P_SAS))


def softmax_policy(Q_HSA: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.softmax(Q_HSA / alpha, dim=-1)


def greedy_policy(Q_HSA: torch.Tensor, tie_tol: float) -> torch.Tensor:
    """Argmax policy; actions within ``tie_tol`` of the best share the mass uniformly."""
    best = (Q_HSA >= Q_HSA.max(dim=-1, keepdim=True).values - tie_tol).to(Q_HSA.dtype)
    return best / best.sum(-1, keepdim=True)


# --------------------------------------------------------------------------- learners


def behaviour_cloning(demos: Demonstrations) -> Fit:
    """BC: pi_h(a|s) = N_h(s,a) / N_h(s) where (h, s) was demonstrated, uniform elsewhere."""
    counts = demos.counts_HSA
    n_actions = counts.shape[-1]
    totals = counts.sum(-1, keepdim=True)
    pi = torch.where(totals > 0, counts / totals.clamp_min(1), torch.full_like(counts, 1.0 / n_actions))
    return Fit(pi, greedy_policy(pi, tie_tol=0.0), curve=[])


def iq_learn_loss(Q_HSA, mdp: TabularMDP, demos: Demonstrations, d_pi_HSA, *, alpha: float,
                  chi2_c: float, chi2_on: Literal["expert", "mix"], value: ValueTerm) -> torch.Tensor:
    """IQ-Learn with chi^2: -E_dE[r] + (1/H)E_p0[V_0] + 1/(4c) E_d[r^2], d = d_E or the mixture."""
    d_E = demos.occupancy_HSA
    d_mix = 0.5 * (d_E + d_pi_HSA)
    r = implied_reward(Q_HSA, mdp, alpha)
    d_reg = d_E if chi2_on == "expert" else d_mix
    return -expect(d_E, r) + value_term(Q_HSA, mdp, alpha, d_mix, value) + expect(d_reg, r**2) / (4 * chi2_c)


def dual_qdm_loss(Q_HSA, mdp: TabularMDP, demos: Demonstrations, d_pi_HSA, *, alpha: float,
                  box: tuple[float, float], hinge_weight: float, value: ValueTerm) -> torch.Tensor:
    """Dual Q-DM: -E_dE[r] + (1/H)E_p0[V_0] + lambda E_mix[relu(l - r)^2 + relu(r - u)^2].

    The squared hinge is the Bellman constraint l <= Q - P V <= u, enforced where the
    learner goes as well as where the expert went: it is what carries high Q-values from
    demonstrated states to undemonstrated ones (the paper's key mechanism).
    """
    d_E = demos.occupancy_HSA
    d_mix = 0.5 * (d_E + d_pi_HSA)
    r = implied_reward(Q_HSA, mdp, alpha)
    lower, upper = box
    violation = F.relu(lower - r) ** 2 + F.relu(r - upper) ** 2
    return -expect(d_E, r) + value_term(Q_HSA, mdp, alpha, d_mix, value) + hinge_weight * expect(d_mix, violation)


@dataclass(frozen=True)
class QLearnerConfig:
    alpha: float = 0.1  # soft-policy temperature, fixed (learning it destabilises IQ-Learn)
    lr: float = 0.1  # Adam on the Q table
    steps: int = 3000
    tie_tol: float = 1e-6  # greedy ties are broken uniformly within this tolerance
    curve_every: int = 100
    checkpoint_every: int = 500


def fit_q_learner(
    loss_fn: Callable[..., torch.Tensor],
    mdp: TabularMDP,
    demos: Demonstrations,
    cfg: QLearnerConfig,
    *,
    uses_learner_data: bool,
    resume: dict | None = None,
    checkpoint: Checkpoint | None = None,
    on_step: Callable[[int], None] | None = None,
    **loss_kwargs,
) -> Fit:
    """Minimise a critic loss over the Q table with Adam; pi = softmax(Q / alpha) throughout.

    Each step recomputes the exact occupancy of the current policy when the loss uses
    learner data (the idealised online replay). Resumable: ``checkpoint`` receives the
    full optimiser state every ``cfg.checkpoint_every`` steps; pass it back as ``resume``.
    """
    H, S, A = demos.counts_HSA.shape
    Q = torch.zeros(H, S, A, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([Q], lr=cfg.lr)
    step, curve = 0, []
    if resume is not None:
        with torch.no_grad():
            Q.copy_(resume["Q"])
        opt.load_state_dict(resume["optimizer"])
        step, curve = resume["step"], list(resume["curve"])
    d_pi = torch.zeros_like(Q)
    while step < cfg.steps:
        pi = softmax_policy(Q.detach(), cfg.alpha)
        if uses_learner_data:
            d_pi = state_action_occupancy(mdp, pi)
        loss = loss_fn(Q, mdp, demos, d_pi, alpha=cfg.alpha, **loss_kwargs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % cfg.curve_every == 0 or step == cfg.steps:
            greedy = greedy_policy(Q.detach(), cfg.tie_tol)
            curve.append({"step": step, "loss": loss.item(), "value_greedy": policy_value(mdp, greedy).item()})
        if on_step is not None:
            on_step(step)
        if checkpoint is not None and step % cfg.checkpoint_every == 0 and step < cfg.steps:
            # A snapshot: state_dict() shares the live moment tensors, which the next step mutates.
            checkpoint(copy.deepcopy({"Q": Q.detach(), "optimizer": opt.state_dict(), "step": step, "curve": curve}))
    Q = Q.detach()
    return Fit(softmax_policy(Q, cfg.alpha), greedy_policy(Q, cfg.tie_tol), curve)


def soft_optimal_q(mdp: TabularMDP, r_HSA: torch.Tensor, alpha: float) -> torch.Tensor:
    """Soft value iteration, backwards: Q_h = r_h + P V_{h+1}, V_h = alpha logsumexp(Q_h / alpha)."""
    H = r_HSA.shape[0]
    Q = torch.empty_like(r_HSA)
    V_next = torch.zeros(r_HSA.shape[1], dtype=r_HSA.dtype)
    for h in reversed(range(H)):
        Q[h] = r_HSA[h] + mdp.P_SAS @ V_next
        V_next = soft_value(Q[h], alpha)
    return Q


@dataclass(frozen=True)
class AILConfig:
    alpha: float = 0.1  # temperature of the soft-optimal policy
    lr: float = 1.0  # reward ascent step on each step's occupancy difference d_E,h - d_pi,h
    steps: int = 1000
    reward_bound: float = 1.0  # R in |r| <= R, the TV dual's box
    tie_tol: float = 1e-6
    curve_every: int = 50


def fit_tv_ail(mdp: TabularMDP, demos: Demonstrations, cfg: AILConfig,
               on_step: Callable[[int], None] | None = None) -> Fit:
    """TV-AIL: projected ascent on max_{|r|<=R} E_dE[r] - E_dpi[r], pi soft-optimal for r.

    The per-step gradient of the (unnormalised) objective in r_h is d_E,h - d_pi,h; the
    iterate is clipped back into the box. The returned policy is the last iterate's.
    """
    d_E = demos.occupancy_HSA
    r = torch.zeros_like(d_E)
    curve = []
    for step in range(1, cfg.steps + 1):
        Q = soft_optimal_q(mdp, r, cfg.alpha)
        d_pi = state_action_occupancy(mdp, softmax_policy(Q, cfg.alpha))
        if step % cfg.curve_every == 0 or step == cfg.steps:
            tv = 0.5 * (d_E - d_pi).abs().sum().item() / d_E.shape[0]
            value = policy_value(mdp, greedy_policy(Q, cfg.tie_tol)).item()
            curve.append({"step": step, "tv": tv, "value_greedy": value})
        r = (r + cfg.lr * (d_E - d_pi)).clamp(-cfg.reward_bound, cfg.reward_bound)
        if on_step is not None:
            on_step(step)
    Q = soft_optimal_q(mdp, r, cfg.alpha)
    return Fit(softmax_policy(Q, cfg.alpha), greedy_policy(Q, cfg.tie_tol), curve)
