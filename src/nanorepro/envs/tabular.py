"""Finite-horizon tabular MDPs with exact occupancy measures.

Shapes (one convention for the file): H horizon, S states, A actions, N trajectories.
Policies are time-indexed, ``pi_HSA[h, s, a] = pi_h(a | s)``; leading batch dimensions
are allowed everywhere a policy appears.

The "reset cliff" is the compounding-error instance of Rajaraman et al. (2020) and
Xu et al. (2020): S good states plus one absorbing bad state. In a good state the
expert action ``a*(s)`` earns reward 1 and resets to a uniformly random good state;
every other action drops into the bad state, which earns 0 for ever after. The
expert's value is H; an imitator that errs with probability e per step loses
about e * H^2 / 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nanorepro.common.errors import UserError


@dataclass(frozen=True)
class TabularMDP:
    """Known dynamics: ``P_SAS[s, a, s'] = P(s' | s, a)``, reward ``R_SA``, initial ``p0_S``."""

    P_SAS: torch.Tensor
    R_SA: torch.Tensor
    p0_S: torch.Tensor

    def __post_init__(self) -> None:
        S, A, S2 = self.P_SAS.shape
        if S != S2 or self.R_SA.shape != (S, A) or self.p0_S.shape != (S,):
            raise UserError(
                f"inconsistent MDP shapes: P {tuple(self.P_SAS.shape)}, "
                f"R {tuple(self.R_SA.shape)}, p0 {tuple(self.p0_S.shape)}"
            )
        if not torch.allclose(self.P_SAS.sum(-1), torch.ones(S, A, dtype=self.P_SAS.dtype)):
            raise UserError("transition probabilities must sum to 1 over next states")
        if not torch.isclose(self.p0_S.sum(), torch.ones((), dtype=self.p0_S.dtype)):
            raise UserError("initial distribution must sum to 1")

    @property
    def n_states(self) -> int:
        return self.P_SAS.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P_SAS.shape[1]


def reset_cliff(n_good: int, n_actions: int, expert_action_S: np.ndarray) -> TabularMDP:
    """The reset-cliff MDP; state ``n_good`` is the absorbing bad state."""
    if n_good < 1 or n_actions < 2:
        raise UserError(f"reset cliff needs >= 1 good state and >= 2 actions, got {n_good}, {n_actions}")
    S = n_good + 1
    bad = n_good
    P = torch.zeros(S, n_actions, S, dtype=torch.float64)
    R = torch.zeros(S, n_actions, dtype=torch.float64)
    P[:n_good, :, bad] = 1.0  # every non-expert action falls off the cliff
    for s, a_star in enumerate(expert_action_S):
        P[s, a_star] = 0.0
        P[s, a_star, :n_good] = 1.0 / n_good  # the expert action resets uniformly
        R[s, a_star] = 1.0
    P[bad, :, bad] = 1.0
    p0 = torch.zeros(S, dtype=torch.float64)
    p0[:n_good] = 1.0 / n_good
    return TabularMDP(P, R, p0)


def deterministic_policy(action_S: np.ndarray, horizon: int, n_actions: int) -> torch.Tensor:
    """A stationary deterministic policy as a one-hot ``pi_HSA``."""
    pi_SA = torch.nn.functional.one_hot(torch.as_tensor(action_S), n_actions).to(torch.float64)
    return pi_SA.expand(horizon, -1, -1).clone()


def state_action_occupancy(mdp: TabularMDP, pi_HSA: torch.Tensor) -> torch.Tensor:
    """Exact ``d_h(s, a) = Pr(s_h = s, a_h = a)``: rho_0 = p0, rho_{h+1}(s') = sum_{s,a} d_h(s,a) P(s'|s,a)."""
    P_flat = mdp.P_SAS.reshape(-1, mdp.n_states)  # (S*A, S): one matmul per step, ~4x faster than einsum
    rho_S = mdp.p0_S.expand(*pi_HSA.shape[:-3], -1)
    d = []
    for h in range(pi_HSA.shape[-3]):
        d_SA = rho_S.unsqueeze(-1) * pi_HSA[..., h, :, :]
        d.append(d_SA)
        rho_S = d_SA.flatten(-2) @ P_flat
    return torch.stack(d, dim=-3)


def policy_value(mdp: TabularMDP, pi_HSA: torch.Tensor) -> torch.Tensor:
    """Exact expected return ``sum_h E_{d_h}[R]`` of a time-indexed policy."""
    d_HSA = state_action_occupancy(mdp, pi_HSA)
    return (d_HSA * mdp.R_SA).sum(dim=(-3, -2, -1))


def sample_trajectories(
    mdp: TabularMDP, pi_HSA: torch.Tensor, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll out ``n`` trajectories; returns states ``(N, H)``, actions ``(N, H)``, rewards ``(N, H)``.

    Vectorised over trajectories: one inverse-CDF draw per step for all N at once.
    """
    H = pi_HSA.shape[0]
    P = mdp.P_SAS.numpy()
    pi = pi_HSA.numpy()
    R = mdp.R_SA.numpy()
    states = np.empty((n, H), dtype=np.int64)
    actions = np.empty((n, H), dtype=np.int64)
    s = _draw(np.broadcast_to(mdp.p0_S.numpy(), (n, mdp.n_states)), rng)
    for h in range(H):
        a = _draw(pi[h, s], rng)
        states[:, h], actions[:, h] = s, a
        s = _draw(P[s, a], rng)
    return states, actions, R[states, actions]


def _draw(probs_NK: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row."""
    cdf = np.cumsum(probs_NK, axis=-1)
    u = rng.random(probs_NK.shape[0]) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=-1), probs_NK.shape[-1] - 1)
