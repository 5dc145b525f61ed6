"""SIGMA's three-step generation: prefix beams, in-bucket candidates, adaptive probabilistic fusion (APF).

    P(v_i | T) = P(c^k | T) * P(id_i | T, c^k),   P(id_i | T, c^k) ∝ exp(cos(h_k, v_i) * s / tau)

over the items v_i whose semantic prefix is c^k, for the K best prefixes. The sharpness s
follows how peaked the prefix distribution is; its form is the least certain detail of the
paper (our reconstruction keeps it pluggable):

* ``"std"``: s = std(phi_1 .. phi_K) of the prefix log-probabilities (the summaries' form;
  with K = 1 it is 0 and the bucket is flat, so top-1 decoding uses ``"constant"``);
* ``"constant"``: s = 1 (plain product fusion);
* ``"entropy"``: s = log K - H(softmax(phi)), the prefix distribution's distance from uniform.

Items outside the K buckets get probability 0, so generation never emits an invalid item:
every output is a catalogue item reached through a real prefix.
"""

from __future__ import annotations

import math

import torch

SHARPNESS = ("std", "constant", "entropy")


def sharpness(prefix_logp: torch.Tensor, form: str) -> torch.Tensor:
    """s per example from the K beams' log-probabilities (N, K)."""
    if form == "std":
        return prefix_logp.std(1, unbiased=False)
    if form == "constant":
        return torch.ones(prefix_logp.shape[0], dtype=prefix_logp.dtype)
    if form == "entropy":
        p = prefix_logp.softmax(1)
        return math.log(prefix_logp.shape[1]) + (p * p.clamp_min(1e-30).log()).sum(1)
    raise ValueError(f"unknown sharpness '{form}' (choose from {', '.join(SHARPNESS)})")


def fuse(prefix_logp: torch.Tensor, prefix_codes: torch.Tensor, item_prefix: torch.Tensor,
         item_cosine: torch.Tensor, tau: float = 0.1, form: str = "std") -> torch.Tensor:
    """log P(item) (N, I): -inf outside the K beams' buckets.

    prefix_logp (N, K) and prefix_codes (N, K): the beams; item_prefix (I,): each item's
    prefix code (a single integer per item: combine multi-level prefixes into one id first);
    item_cosine (N, I): cos(h, v_i) between the model's ID query and every item's ID vector.
    """
    s = sharpness(prefix_logp, form)
    logits = item_cosine * (s / tau)[:, None]
    out = torch.full_like(item_cosine, -torch.inf)
    for k in range(prefix_codes.shape[1]):
        in_bucket = item_prefix[None, :] == prefix_codes[:, k, None]          # (N, I)
        masked = logits.masked_fill(~in_bucket, -torch.inf)
        within = masked - masked.logsumexp(1, keepdim=True)                   # log P(id | c^k); -inf elsewhere
        out = torch.where(in_bucket, prefix_logp[:, k, None] + within, out)
    return out
