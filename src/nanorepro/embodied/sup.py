"""SuP's pieces (arXiv 2603.20658): chunk downsampling and an offline Lagrangian CMDP for the rate k.

Confirmed (``../shared/papers/embodied.md`` §1.3): a frozen base policy; per chunk, a light
scheduler picks a downsampling rate k and keeps every k-th action; a constrained MDP
maximises speed subject to a world-model-predicted state-deviation cost; trained offline.
**Our reconstruction** (the paper's k set, cost and solver are not known to us):

    k in {1, 2, 3, 4};  execute waypoints 0, k, 2k, ... and always the last
    r = 1 - 1/k                                        (the share of control steps saved)
    c = || WM(s, A downsampled by k) - WM(s, A) ||      (predicted end-state deviation)
    max_pi E[sum r]  s.t.  E[sum c] <= d
    Lagrangian fitted-Q on r - lambda c;  lambda <- max(0, lambda + eta (J_c - d))   (dual ascent)

or a PID Lagrangian multiplier (Stooke et al. 2020) in place of the dual ascent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nanorepro.nn.mlp import mlp

RATES = (1, 2, 3, 4)


def downsample_indices(horizon: int, k: int) -> list[int]:
    """Waypoints kept at rate k: 0, k, 2k, ... and always the last (H - 1)."""
    if k < 1:
        raise ValueError(f"the downsampling rate must be at least 1, got {k}")
    kept = list(range(0, horizon, k))
    return kept if kept[-1] == horizon - 1 else kept + [horizon - 1]


def downsample(chunk_BHD: torch.Tensor, k: int) -> torch.Tensor:
    """(B, len(kept), D): the waypoints executed at rate k."""
    return chunk_BHD[:, downsample_indices(chunk_BHD.shape[1], k)]


def hold_padded(chunk_BHD: torch.Tensor, k: int) -> torch.Tensor:
    """(B, H, D): the rate-k waypoints, then the last one held to length H — how a fixed-length chunk world
    model sees a downsampled chunk (it predicts where the gripper settles, not when)."""
    kept = downsample(chunk_BHD, k)
    pad = chunk_BHD.shape[1] - kept.shape[1]
    return torch.cat([kept, kept[:, -1:].expand(-1, pad, -1)], 1)


def deviation_costs(predict_end, chunk_BHD: torch.Tensor, rates: tuple[int, ...] = RATES) -> torch.Tensor:
    """(B, len(rates)) c_k = || predict_end(hold_padded(A, k)) - predict_end(A) ||, with ``predict_end``
    mapping a (B, H, D) chunk to (B, S) predicted end states (a world model bound to its states)."""
    full = predict_end(chunk_BHD)
    return torch.stack([(predict_end(hold_padded(chunk_BHD, k)) - full).norm(dim=-1) for k in rates], 1)


def rewards(rates: tuple[int, ...] = RATES) -> torch.Tensor:
    """r_k = 1 - 1/k, the nominal share of control steps saved (keeping the last waypoint, the realised
    share at H = 8 is 3/8, 1/2, 5/8 for k = 2, 3, 4: report control steps, not this reward)."""
    return torch.tensor([1.0 - 1.0 / k for k in rates])


def dual_ascent(lam: float, cost: float, budget: float, lr: float) -> float:
    """lambda <- max(0, lambda + eta (J_c - d)): raise the price while the cost exceeds the budget."""
    return max(0.0, lam + lr * (cost - budget))


@dataclass
class PIDLagrangian:
    """lambda = max(0, Kp e + Ki sum(e) + Kd de), e = J_c - d (Stooke et al. 2020); the integral never goes
    negative, so a long stretch under budget does not bank credit."""

    kp: float = 0.1
    ki: float = 0.01
    kd: float = 0.0
    integral: float = 0.0
    previous: float = 0.0

    def update(self, cost: float, budget: float) -> float:
        error = cost - budget
        self.integral = max(0.0, self.integral + error)
        derivative = error - self.previous
        self.previous = error
        return max(0.0, self.kp * error + self.ki * self.integral + self.kd * derivative)


class RateQ(nn.Module):
    """Q(features, k) for every rate: the scheduler picks argmax_k Q (only rates in ``RATES`` exist)."""

    def __init__(self, in_dim: int, hidden: int = 128, rates: tuple[int, ...] = RATES):
        super().__init__()
        self.rates = rates
        self.net = mlp(in_dim, hidden, len(rates), layers=2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    @torch.no_grad()
    def choose(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) the chosen rates (values from ``rates``)."""
        return torch.tensor(self.rates)[self(features).argmax(-1)]


def fitted_q_loss(q: RateQ, target: RateQ, batch: dict[str, torch.Tensor], lam: float,
                  gamma: float = 0.9) -> torch.Tensor:
    """Squared TD error of Q(s, k) against r_k - lambda c_k + gamma (1 - done) max_k' Q_target(s', k').

    ``batch``: features (B, F), rate_index (B,), reward (B,), cost (B,), next_features (B, F), done (B,).
    """
    with torch.no_grad():
        bootstrap = target(batch["next_features"]).max(-1).values * (1.0 - batch["done"].float())
        y = batch["reward"] - lam * batch["cost"] + gamma * bootstrap
    chosen = q(batch["features"]).gather(1, batch["rate_index"][:, None]).squeeze(1)
    return ((chosen - y) ** 2).mean()
