"""Mixture-of-experts layers of Nemotron-H: the sigmoid top-K router, relu2 experts, LatentMoE.

Shape legend: n tokens, d model width, l latent width, m expert width, E experts, K top-k.
Names follow HF ``NemotronHMoE`` (gate.weight, gate.e_score_correction_bias, experts.up_proj,
experts.down_proj, fc1_latent_proj, fc2_latent_proj, shared_experts.up_proj/down_proj).

LatentMoE, per token x (Nemotron 3 Super; LatentMoE, arXiv 2601.18089):

    s = sigmoid(W_g x)                      router at full width, fp32
    I = topK(s + b)                         b steers selection only (updated outside autograd)
    w_i = scale * s_i / sum_{j in I} s_j
    u = W_down x                            fc1_latent_proj, d -> l
    y = W_up sum_{i in I} w_i V_i relu2(U_i u) + Shared(x)      experts in the latent space

A standard MoE is the same with l = d and no projections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def relu2(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()


class MLP(nn.Module):
    """Non-gated relu2 MLP: down(relu2(up(x))) (HF NemotronHMLP; also the shared expert)."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(relu2(self.up_proj(x)))


class TopKRouter(nn.Module):
    def __init__(self, d_model: int, n_experts: int, top_k: int, scaling: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_experts, d_model))
        nn.init.normal_(self.weight, std=0.02)
        self.register_buffer("e_score_correction_bias", torch.zeros(n_experts))
        self.top_k, self.scaling = top_k, scaling

    def forward(self, x_nd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> expert indices (n, K), combine weights (n, K), scores (n, E); routing in (at least) fp32."""
        dtype = torch.promote_types(x_nd.dtype, torch.float32)
        scores = torch.sigmoid(F.linear(x_nd.to(dtype), self.weight.to(dtype)))
        chosen = torch.topk(scores + self.e_score_correction_bias, self.top_k, dim=-1).indices
        weights = scores.gather(-1, chosen)
        weights = self.scaling * weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return chosen, weights, scores


class Experts(nn.Module):
    """E relu2 experts in one tensor pair: up_proj (E, m, width), down_proj (E, width, m).

    ``recipe`` (an ``NVFP4Recipe``) runs the fast path's batched GEMMs in emulated NVFP4.
    """

    def __init__(self, n_experts: int, width: int, hidden: int):
        super().__init__()
        self.up_proj = nn.Parameter(torch.randn(n_experts, hidden, width) * 0.02)
        self.down_proj = nn.Parameter(torch.randn(n_experts, width, hidden) * 0.02)
        self.recipe = None

    def _bmm(self, x_ebk: torch.Tensor, w_eok: torch.Tensor) -> torch.Tensor:
        if self.recipe is None:
            return torch.bmm(x_ebk, w_eok.transpose(1, 2))
        from nanorepro.nn.nvfp4 import nvfp4_linear

        return nvfp4_linear(x_ebk, w_eok, self.recipe)

    def forward_loop(self, x_nl: torch.Tensor, idx_nk: torch.Tensor, w_nk: torch.Tensor) -> torch.Tensor:
        """Reference: one expert at a time over the tokens routed to it."""
        out = torch.zeros_like(x_nl)
        for e in range(self.up_proj.shape[0]):
            token, slot = torch.where(idx_nk == e)
            if len(token):
                h = relu2(x_nl[token] @ self.up_proj[e].T) @ self.down_proj[e].T
                out.index_add_(0, token, h * w_nk[token, slot, None].to(h.dtype))
        return out

    def forward(self, x_nl: torch.Tensor, idx_nk: torch.Tensor, w_nk: torch.Tensor) -> torch.Tensor:
        """Fast path: tokens sorted by expert into an (E, capacity, width) buffer, two batched matmuls."""
        n, K = idx_nk.shape
        E = self.up_proj.shape[0]
        flat = idx_nk.reshape(-1)
        order = torch.argsort(flat, stable=True)
        expert = flat[order]
        counts = torch.bincount(flat, minlength=E)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(n * K, device=x_nl.device) - starts[expert]
        token = order // K
        buffer = x_nl.new_zeros(E, int(counts.max()), x_nl.shape[-1])
        buffer[expert, slot] = x_nl[token]
        h = self._bmm(relu2(self._bmm(buffer, self.up_proj)), self.down_proj)
        weighted = h[expert, slot] * w_nk.reshape(-1)[order, None].to(h.dtype)
        return torch.zeros_like(x_nl).index_add_(0, token, weighted)


class MoE(nn.Module):
    """Routed relu2 experts (in a latent space when ``latent`` is set) plus a full-width shared expert."""

    def __init__(self, d_model: int, n_experts: int, top_k: int, expert_hidden: int, shared_hidden: int,
                 latent: int | None = None, scaling: float = 2.5, aux_coef: float = 1e-4):
        super().__init__()
        self.gate = TopKRouter(d_model, n_experts, top_k, scaling)
        width = d_model if latent is None else latent
        self.experts = Experts(n_experts, width, expert_hidden)
        if latent is not None:
            self.fc1_latent_proj = nn.Linear(d_model, latent, bias=False)
            self.fc2_latent_proj = nn.Linear(latent, d_model, bias=False)
        self.shared_experts = MLP(d_model, shared_hidden)
        self.latent, self.aux_coef, self.use_loop = latent, aux_coef, False
        self.register_buffer("last_load", torch.zeros(n_experts), persistent=False)
        self.aux_losses: list[torch.Tensor] = []  # one per training forward; the model collects them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x_nd = x.reshape(-1, shape[-1])
        idx, w, scores = self.gate(x_nd)
        h = self.fc1_latent_proj(x_nd) if self.latent is not None else x_nd
        h = (self.experts.forward_loop if self.use_loop else self.experts)(h, idx, w)
        if self.latent is not None:
            h = self.fc2_latent_proj(h)
        load = torch.bincount(idx.reshape(-1), minlength=scores.shape[-1]).float()
        self.last_load = load.detach()
        if self.training and self.aux_coef > 0:
            self.aux_losses.append(self.aux_coef * balance_loss(scores, load, idx.shape[-1]))
        return h.reshape(shape) + self.shared_experts(x)

    @torch.no_grad()
    def update_bias(self, rate: float = 1e-3) -> None:
        """Aux-loss-free balancing: b_i += rate * sign(mean load - load_i), from the last forward."""
        load = self.last_load
        self.gate.e_score_correction_bias += rate * torch.sign(load.mean() - load)


def balance_loss(scores_ne: torch.Tensor, load_e: torch.Tensor, top_k: int) -> torch.Tensor:
    """sum_i f_i P_i with f_i = E load_i / (K n) and P_i the mean normalised score (DeepSeek-V3 style)."""
    n, E = scores_ne.shape
    f = E * load_e / (top_k * n)
    p = (scores_ne / scores_ne.sum(-1, keepdim=True)).mean(0)
    return (f * p).sum()


def max_violation(load_e: torch.Tensor) -> float:
    """MaxVio = max load / mean load - 1 (0 when perfectly balanced)."""
    return float(load_e.max() / load_e.mean() - 1)
