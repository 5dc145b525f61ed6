"""A pre-norm transformer block (nanoGPT layout) with an optional KV cache and attention mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.nn.mlp import mlp


class Block(nn.Module):
    """x + attn(ln1(x)); x + mlp(ln2(x)). Causal by default; ``allowed`` (B, T, T) replaces the causal mask.

    ``causal=False`` gives the bidirectional block of a ViT. The feed-forward ``mlp`` may be swapped for
    any module (a mixture of experts); keyword arguments of ``forward`` beyond these reach it (routing).
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = mlp(d_model, 4 * d_model, d_model, layers=1, activation=nn.GELU)
        self.heads = heads
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, cache: list | None = None, allowed: torch.Tensor | None = None,
                causal: bool = True, **mlp_kwargs) -> torch.Tensor:
        b, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, T, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:
            if cache:
                past = cache[0].shape[2]
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        if allowed is not None:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        elif not causal:
            a = F.scaled_dot_product_attention(q, k, v)
        elif past == 0:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            mask = torch.arange(k.shape[2])[None, :] <= (past + torch.arange(T))[:, None]
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.dropout(self.proj(a.transpose(1, 2).reshape(b, T, d)))
        return x + self.dropout(self.mlp(self.ln2(x), **mlp_kwargs))


def causal_padding_mask(padding: torch.Tensor) -> torch.Tensor:
    """(B, T, T) allowed attention: causal, never to padding, but a padded query sees itself (no empty rows)."""
    T = padding.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return (causal & ~padding[:, None, :]) | torch.eye(T, dtype=torch.bool)
