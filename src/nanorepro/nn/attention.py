"""Grouped-query causal self-attention with a KV cache; no positional encoding by default (NoPE).

HF names (q_proj, k_proj, v_proj, o_proj; no biases). RoPE is an option (``rope_theta``).
Attention itself is ``scaled_dot_product_attention`` with the KV heads shared by
``n_heads / n_kv_heads`` query heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class KVCache:
    k: torch.Tensor  # (b, kv_heads, T, head_dim)
    v: torch.Tensor

    @property
    def length(self) -> int:
        return self.k.shape[2]

    def truncate(self, length: int) -> None:
        self.k, self.v = self.k[:, :, :length], self.v[:, :, :length]


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding on the last dim of (b, heads, T, hd), rotating half-split pairs."""
    hd = x.shape[-1]
    freqs = theta ** (-torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd)
    angles = positions.float()[:, None] * freqs[None]  # (T, hd/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int, rope_theta: float | None = None):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim, self.rope_theta = n_heads, n_kv_heads, head_dim, rope_theta
        self.q_proj = nn.Linear(d_model, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, d_model, bias=False)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        b, T, _ = x.shape
        q = self.q_proj(x).view(b, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        past = 0 if cache is None else cache.length
        if self.rope_theta is not None:
            positions = torch.arange(past, past + T, device=x.device)
            q, k = rope(q, positions, self.rope_theta), rope(k, positions, self.rope_theta)
        if cache is not None:
            cache.k, cache.v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
            k, v = cache.k, cache.v
        if past == 0:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:  # new query i sees every past key and new keys j <= i
            S = k.shape[2]
            mask = torch.arange(S, device=x.device)[None, :] <= (past + torch.arange(T, device=x.device))[:, None]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, T, -1))

    def empty_cache(self, batch: int, device=None, dtype=torch.float32) -> KVCache:
        empty = torch.zeros(batch, self.n_kv_heads, 0, self.head_dim, device=device, dtype=dtype)
        return KVCache(empty, empty.clone())

    def cache_bytes_per_token(self, bytes_per_value: int = 4) -> int:
        return 2 * self.n_kv_heads * self.head_dim * bytes_per_value
