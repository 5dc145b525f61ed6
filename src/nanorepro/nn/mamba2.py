"""Mamba-2 (Dao & Gu, 2024): the SSD scan in pure PyTorch, and the mixer with Hugging Face names.

Shape legend: b batch, T time, H heads, P head dim, G groups, N state size, Q chunk length,
c chunks. Per head, with scalar A < 0, state S (P x N) and B_t, C_t in R^N:

    S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T          y_t = S_t C_t (+ D x_t in the mixer)

``ssd_scan`` computes it chunk by chunk (the SSD paper's Listing 1, reimplemented):
diagonal blocks as masked "attention" with L = exp(segsum(dt A)), chunk states, a short
recurrence between chunks, and each chunk's read-out of the state it starts from.
``ssd_recurrent`` is the step-by-step reference (and the decode path). Padding with dt = 0
is exact, so any length works.

``Mamba2Mixer`` follows HF's ``NemotronHMamba2Mixer`` parameter by parameter (in_proj,
conv1d, dt_bias, A_log, D, norm, out_proj) so weights load across.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.nn.norms import GatedRMSNorm


def segsum(x: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T, T) with out[i, j] = sum_{k=j+1..i} x_k for j <= i, -inf above the diagonal.

    A masked cumsum, not a difference of cumsums: the difference of two large numbers loses
    the small ones (the SSD paper's stable segsum).
    """
    T = x.size(-1)
    x = x.unsqueeze(-1).expand(*x.shape, T)  # [..., i, j] = x_i
    strictly_lower = torch.ones(T, T, dtype=torch.bool, device=x.device).tril(-1)
    out = x.masked_fill(~strictly_lower, 0).cumsum(dim=-2)
    return out.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=x.device).tril(0), -math.inf)


def _heads(BC: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., G, N) -> (..., H, N): head h reads group h // (H / G)."""
    return BC.repeat_interleave(heads // BC.shape[-2], dim=-2)


def ssd_recurrent(x, dt, A, B, C, initial_state=None, return_all_states: bool = False):
    """Reference recurrence. x (b,T,H,P), dt (b,T,H), A (H,), B/C (b,T,G,N) -> y (b,T,H,P), final state.

    With ``return_all_states`` the states after every step come back too, (b, T, H, P, N).
    """
    b, T, H, P = x.shape
    B, C = _heads(B, H), _heads(C, H)
    state = x.new_zeros(b, H, P, B.shape[-1]) if initial_state is None else initial_state
    ys, states = [], []
    for t in range(T):
        decay = torch.exp(dt[:, t] * A)  # (b, H)
        state = state * decay[..., None, None] + (dt[:, t, :, None] * x[:, t]).unsqueeze(-1) * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
        if return_all_states:
            states.append(state)
    y = torch.stack(ys, dim=1)
    if return_all_states:
        return y, state, torch.stack(states, dim=1)
    return y, state


def ssd_scan(x, dt, A, B, C, chunk: int, initial_state=None):
    """Chunked SSD scan; same signature and result as ``ssd_recurrent`` (without all states)."""
    b, T, H, P = x.shape
    pad = (-T) % chunk
    if pad:  # dt = 0 on padding: no decay, no input, so the final state is exact
        x, dt, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C))
    c = x.shape[1] // chunk
    B, C = _heads(B, H), _heads(C, H)
    x, dt, B, C = (t.reshape(b, c, chunk, *t.shape[2:]) for t in (x, dt, B, C))
    xdt = x * dt.unsqueeze(-1)  # (b, c, Q, H, P)
    a = (dt * A).permute(0, 3, 1, 2)  # (b, H, c, Q)
    a_cum = a.cumsum(dim=-1)

    # 1. inside each chunk: y_i += sum_{j<=i} (C_i . B_j) exp(a_{j+1} + ... + a_i) dt_j x_j
    L = torch.exp(segsum(a))  # (b, H, c, Q, Q)
    scores = torch.einsum("bclhn,bcshn->bhcls", C, B) * L  # two-operand contractions: no large intermediates
    y_diag = torch.einsum("bhcls,bcshp->bclhp", scores, xdt)
    # 2. each chunk's own contribution to the state at its end
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, H, c, Q)
    chunk_states = torch.einsum("bclhn,bclhp->bchpn", B * decay_to_end.permute(0, 2, 3, 1).unsqueeze(-1), xdt)
    # 3. between chunks: S_c = exp(sum of chunk c's a) S_{c-1} + s_c, from the initial state
    if initial_state is None:
        initial_state = x.new_zeros(b, H, P, B.shape[-1])
    chunk_states = torch.cat([initial_state.unsqueeze(1), chunk_states], dim=1)  # (b, c+1, H, P, N)
    decay_chunk = torch.exp(segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, H, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, chunk_states)
    start_states, final_state = states[:, :-1], states[:, -1]
    # 4. each chunk reads the state it starts from: y_i += exp(a_1 + ... + a_i) S_{c-1} C_i
    y_off = torch.einsum("bclhn,bchpn->bclhp", C * torch.exp(a_cum).permute(0, 2, 3, 1).unsqueeze(-1), start_states)
    y = (y_diag + y_off).reshape(b, c * chunk, H, P)[:, :T]
    return y, final_state


@dataclass
class MambaCache:
    """Decode state of one Mamba layer: the last (kernel - 1) conv inputs and the SSM state (fp32)."""

    conv: torch.Tensor  # (b, K - 1, conv_dim)
    ssm: torch.Tensor  # (b, H, P, N)
    # Filled by a multi-token step with keep_states, for rollback to any accepted length:
    window: torch.Tensor | None = None  # (b, K - 1 + L, conv_dim)
    all_ssm: torch.Tensor | None = None  # (b, L, H, P, N)

    def accept(self, n: int) -> None:
        """Keep the state after the first ``n`` tokens of the last multi-token step."""
        K1 = self.conv.shape[1]
        self.conv = self.window[:, n : n + K1]
        self.ssm = self.all_ssm[:, n - 1] if n > 0 else self.ssm
        self.window = self.all_ssm = None


class Mamba2Mixer(nn.Module):
    """in_proj -> [z | xBC | dt]; causal depthwise conv + SiLU on xBC; SSD; gated grouped RMSNorm; out_proj."""

    def __init__(self, d_model: int, heads: int, head_dim: int, state: int, groups: int, conv_kernel: int,
                 chunk: int, eps: float = 1e-5, dt_min: float = 1e-3, dt_max: float = 0.1):
        super().__init__()
        self.H, self.P, self.N, self.G, self.K, self.chunk = heads, head_dim, state, groups, conv_kernel, chunk
        self.d_inner = heads * head_dim
        self.conv_dim = self.d_inner + 2 * groups * state
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + heads, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, conv_kernel, groups=self.conv_dim,
                                padding=conv_kernel - 1)
        # dt_bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max] (Mamba's init)
        dt = torch.exp(torch.rand(heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(heads))
        self.norm = GatedRMSNorm(self.d_inner, group_size=self.d_inner // groups, eps=eps)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def _split(self, proj: torch.Tensor):
        return torch.split(proj, [self.d_inner, self.conv_dim, self.H], dim=-1)

    def _ssm_inputs(self, xBC: torch.Tensor, dt: torch.Tensor):
        b, T, _ = xBC.shape
        x, B, C = torch.split(xBC, [self.d_inner, self.G * self.N, self.G * self.N], dim=-1)
        x = x.reshape(b, T, self.H, self.P)
        B, C = B.reshape(b, T, self.G, self.N), C.reshape(b, T, self.G, self.N)
        return x, F.softplus(dt + self.dt_bias), -torch.exp(self.A_log), B, C

    def _output(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = y + x * self.D[:, None]
        y = y.reshape(*y.shape[:2], self.d_inner)
        return self.out_proj(self.norm(y, z))

    def forward(self, hidden: torch.Tensor, cache: MambaCache | None = None, *, keep_states: bool = False):
        """Whole sequences (training, prefill) or, with a cache, the next tokens of a running sequence.

        With a cache and ``keep_states``, every intermediate state is kept so that
        ``cache.accept(n)`` can roll back to any prefix (speculative decoding).
        """
        z, xBC, dt = self._split(self.in_proj(hidden))
        T = hidden.shape[1]
        if cache is None:
            xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :T].transpose(1, 2))
            x, dt, A, B, C = self._ssm_inputs(xBC, dt)
            y, _ = ssd_scan(x, dt, A, B, C, self.chunk)
            return self._output(y, x, z)
        window = torch.cat([cache.conv, xBC], dim=1)  # (b, K-1+T, conv_dim)
        conv = F.conv1d(window.transpose(1, 2), self.conv1d.weight, self.conv1d.bias, groups=self.conv_dim)
        xBC = F.silu(conv.transpose(1, 2))  # (b, T, conv_dim): exactly the T new positions
        x, dt, A, B, C = self._ssm_inputs(xBC, dt)
        ssm = torch.promote_types(x.dtype, torch.float32)  # the SSM state lives in (at least) fp32
        args = (x.to(ssm), dt.to(ssm), A.to(ssm), B.to(ssm), C.to(ssm))
        if keep_states:
            y, final, all_states = ssd_recurrent(*args, cache.ssm, return_all_states=True)
            cache.window, cache.all_ssm = window, all_states
        elif T == 1:
            y, final = ssd_recurrent(*args, cache.ssm)
        else:
            y, final = ssd_scan(*args, self.chunk, cache.ssm)
        cache.conv = window[:, -(self.K - 1):]
        cache.ssm = final
        return self._output(y.to(x.dtype), x, z)

    def empty_cache(self, batch: int, device=None, dtype=torch.float32) -> MambaCache:
        ssm = torch.promote_types(dtype, torch.float32)
        return MambaCache(torch.zeros(batch, self.K - 1, self.conv_dim, device=device, dtype=dtype),
                          torch.zeros(batch, self.H, self.P, self.N, device=device, dtype=ssm))

    def cache_bytes_per_sequence(self, conv_bytes: int = 4) -> int:
        """SSM state in fp32 plus the conv window; constant in the context length."""
        return self.H * self.P * self.N * 4 + (self.K - 1) * self.conv_dim * conv_bytes
