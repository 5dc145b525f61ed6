"""GRPO and its variants (policy-gradient baselines), with token masks for START.

Notation: G completions o_i per prompt with rewards r_i; per token, ratio
rho = pi_theta / pi_old and psi = min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A).

    grpo     A_i = (r_i - mean r) / std r;   J = mean_i (1/|o_i|) sum_t psi      (DeepSeekMath)
    dr_grpo  A_i = r_i - mean r;             J = sum_i sum_t psi / (N L_max)     (Dr. GRPO)
    dapo     A_i as grpo, eps_high = 0.28;   J = sum_i sum_t psi / sum_i |o_i|   (DAPO, token-level)
    rloo     A_i = r_i - mean_{j != i} r_j;  J normalised as dr_grpo

``mu`` epochs reuse each rollout batch (PPO-style; pi_old is the sampling policy). No KL
term (beta = 0, TRL's default). A token mask restricts the loss to some tokens: START's
phase 1 trains only the thinking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from nanorepro.llm_rl.policy import completion_logits, token_logprobs

Variant = Literal["grpo", "dr_grpo", "dapo", "rloo"]


@dataclass(frozen=True)
class GRPOConfig:
    variant: Variant = "dr_grpo"
    mu: int = 1  # optimisation epochs per rollout batch
    lr: float = 1e-4
    eps_low: float = 0.2
    eps_high: float | None = None  # None: eps_low, except 0.28 for dapo (clip-higher)
    grad_clip: float = 1.0

    def clip_high(self) -> float:
        return self.eps_high if self.eps_high is not None else 0.28 if self.variant == "dapo" else self.eps_low


def advantages(rewards_PG: torch.Tensor, variant: Variant) -> torch.Tensor:
    """Per-completion advantages within each group of G (they sum to zero per group)."""
    mean = rewards_PG.mean(-1, keepdim=True)
    if variant in ("grpo", "dapo"):
        return (rewards_PG - mean) / (rewards_PG.std(-1, unbiased=False, keepdim=True) + 1e-6)
    if variant == "dr_grpo":
        return rewards_PG - mean
    G = rewards_PG.shape[-1]
    return rewards_PG - (rewards_PG.sum(-1, keepdim=True) - rewards_PG) / (G - 1)


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                cfg: GRPOConfig) -> torch.Tensor:
    """Minus the clipped surrogate J of the chosen variant; logp/old_logp/mask are (N, L), adv (N,)."""
    ratio = torch.exp(logp - old_logp)
    a = adv[:, None]
    psi = torch.minimum(ratio * a, ratio.clamp(1 - cfg.eps_low, 1 + cfg.clip_high()) * a) * mask
    if cfg.variant == "grpo":
        objective = (psi.sum(1) / mask.sum(1).clamp_min(1)).mean()
    elif cfg.variant == "dapo":
        objective = psi.sum() / mask.sum().clamp_min(1)
    else:  # dr_grpo, rloo: a constant denominator
        objective = psi.sum() / (mask.shape[0] * mask.shape[1])
    return -objective


def grpo_update(policy, opt, prompts, completions, mask, rewards_PG, old_logp, cfg: GRPOConfig) -> dict:
    """``mu`` gradient steps on one rollout batch; returns the last loss and the mean |A|."""
    adv = advantages(rewards_PG, cfg.variant).reshape(-1)
    for _ in range(cfg.mu):
        logp = token_logprobs(completion_logits(policy, prompts, completions), completions)
        loss = policy_loss(logp, old_logp, adv, mask, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        opt.step()
    return {"loss": loss.item(), "abs_adv": adv.abs().mean().item()}
