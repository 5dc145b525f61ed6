"""Greedy decoding, and self-speculative decoding that drafts with the MTP block (batch 1).

Each round drafts ``depths`` tokens with the MTP block, verifies them together with one
forward of the main model over [last token, drafts], keeps the longest prefix the main
model agrees with plus its own next token, and rolls every cache back to it: attention
KV caches are truncated; Mamba conv and SSM states return to the state after the last
accepted token (kept per position during the verify step). Output equals plain greedy
decoding token for token (in exact arithmetic; tests run in float64). Not so under NVFP4 with
the recipe's per-tensor activation scales, where the verify pass quantizes its three tokens
together: decode with ``NVFP4Recipe(activation_scale="token")`` (``nn.nvfp4.replace_recipe``).

The MTP block has an attention layer, so each depth keeps its own KV cache over positions:
depth 1 at position i reads (h_i, x_{i+1}), depth 2 reads (g1_i, x_{i+2}). Positions are
added to those caches lazily, at the next draft, once their tokens are settled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from nanorepro.lm.model import HybridLM
from nanorepro.nn.attention import KVCache


@torch.no_grad()
def greedy_decode(model: HybridLM, prompt: torch.Tensor, n_new: int) -> list[int]:
    cache = model.new_cache(1, prompt.device, model.lm_head.weight.dtype)
    logits, _ = model(prompt, cache)
    out = [int(logits[0, -1].argmax())]
    while len(out) < n_new:
        logits, _ = model(torch.tensor([[out[-1]]], device=prompt.device), cache)
        out.append(int(logits[0, -1].argmax()))
    return out


@dataclass
class SpecStats:
    rounds: int = 0
    drafted: list[int] = field(default_factory=list)  # per depth: drafts proposed
    accepted: list[int] = field(default_factory=list)  # per depth: drafts accepted
    tokens: int = 0
    seconds: float = 0.0

    @property
    def alphas(self) -> list[float]:
        """alpha_k = P(draft k accepted | drafts < k accepted)."""
        return [a / d if d else 0.0 for a, d in zip(self.accepted, self.drafted, strict=True)]

    @property
    def tau(self) -> float:
        """Mean tokens emitted per main-model forward (accepted drafts + 1)."""
        return self.tokens / self.rounds if self.rounds else 0.0


def _truncate_last(caches: list) -> None:
    for c in caches:
        if isinstance(c, KVCache):
            c.truncate(c.length - 1)


@torch.no_grad()
def speculative_decode(model: HybridLM, prompt: torch.Tensor, n_new: int, force_reject=None):
    """-> (tokens, SpecStats). ``force_reject(round) -> bool`` rejects every draft of that round
    (to exercise the rollback)."""
    depths = model.config.mtp_depths
    assert depths == 2, "the drafting loop is written for the two MTP depths of Nemotron 3 Super"
    t0 = time.perf_counter()
    device, dtype = prompt.device, model.lm_head.weight.dtype
    cache = model.new_cache(1, device, dtype)
    mtp_caches = [[layer.empty_cache(1, device, dtype) for layer in model.mtp.layers] for _ in range(depths)]
    logits, h = model(prompt, cache)
    out = [int(logits[0, -1].argmax())]
    stats = SpecStats(drafted=[0] * depths, accepted=[0] * depths)
    # Pending MTP inputs (see the module docstring): depth 1 over all prompt positions,
    # depth 2 over all but the last, whose tokens are the prompt shifted by one and two.
    pend_h = h
    pend_tok1 = torch.cat([prompt[:, 1:], torch.tensor([[out[-1]]], device=device)], dim=1)
    pend_tok2 = pend_tok1[:, 1:]
    carry_g = carry_tok = None
    while len(out) < n_new:
        # Draft: depth 1 from the last position, then depth 2 on the depth-1 hidden.
        l1, g1 = model.mtp_logits(pend_h, pend_tok1, mtp_caches[0])
        d1 = l1[0, -1].argmax().view(1, 1)
        g2_in = g1  # positions before the draft position take their settled tokens
        tok2 = torch.cat([pend_tok2, d1], dim=1)
        if carry_g is not None:
            g2_in, tok2 = torch.cat([carry_g, g1], dim=1), torch.cat([carry_tok, tok2], dim=1)
        l2, _ = model.mtp_logits(g2_in, tok2, mtp_caches[1])
        d2 = l2[0, -1].argmax().view(1, 1)
        drafts = [int(d1), int(d2)]
        # Verify: the main model on [last token, d1, d2], every intermediate state kept.
        start = cache.length
        verify, H = model(torch.tensor([[out[-1], *drafts]], device=device), cache, keep_states=True)
        greedy = verify[0].argmax(-1).tolist()
        accepted = 0
        forced = force_reject is not None and force_reject(stats.rounds)
        while accepted < depths and not forced and greedy[accepted] == drafts[accepted]:
            accepted += 1
        for k in range(min(accepted + 1, depths)):
            stats.drafted[k] += 1
            stats.accepted[k] += int(k < accepted)
        bonus = greedy[accepted]
        cache.accept(start, accepted + 1)
        new_tokens = drafts[:accepted] + [bonus]
        out += new_tokens
        stats.rounds += 1
        stats.tokens += len(new_tokens)
        # Settle the MTP caches for the next round.
        pend_h = H[:, : accepted + 1]
        pend_tok1 = torch.tensor([new_tokens], device=device)
        pend_tok2 = pend_tok1[:, 1:]
        if accepted == 0:  # depth 2's entry at the old draft position used the rejected d1
            _truncate_last(mtp_caches[1])
            carry_g, carry_tok = g1[:, -1:], torch.tensor([[bonus]], device=device)
        else:
            carry_g = carry_tok = None
    stats.seconds = time.perf_counter() - t0
    return out[:n_new], stats
