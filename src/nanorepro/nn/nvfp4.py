"""NVFP4 training, emulated: quantize-dequantize in fp32 (no FP4 tensor cores on CPUs or Hopper).

Format (NVIDIA Transformer Engine's NVFP4): elements are E2M1, magnitudes
{0, 0.5, 1, 1.5, 2, 3, 4, 6}; x ~ q * s_block * s_global with s_global = amax(tensor) / (448 * 6)
in fp32 and s_block = amax(block) / 6 / s_global stored in E4M3. Blocks are 16 elements
along the contraction dimension (1 x 16) for activations and gradients, 16 x 16 for weights
(so that quant(W)^T = quant(W^T): forward and dgrad see the same weights).

Recipe for a linear layer Y = X W^T (Nemotron 3 Super / the NVFP4 pretraining paper):

    fprop  Y  = Q1D(X) Q2D(W)^T                                  round to nearest even
    dgrad  dX = Q1D_SR(dY) Q2D(W)                                stochastic rounding
    wgrad  dW = Q1D_SR(RHT(dY)^T) Q1D(RHT(X)^T)^T                random Hadamard on the
                                                                 token dimension, 16-wide tiles

RHT = diag(signs) H16 / 4 is orthogonal, so without quantization dW is unchanged. Each
piece can be switched off (``NVFP4Recipe``) for ablations.

The second-level scale s_global of an activation is per tensor in the recipe, so a token's
quantized value depends on the other tokens of the same call: a causal LM's output at t
then depends (through one scalar per layer) on later tokens and on how many tokens one
forward carries, and speculative decoding's verify pass (3 tokens) no longer matches
one-token steps. ``activation_scale="token"`` takes s_global per row instead (our option,
not the paper's): each token is quantized alone, so outputs are batch- and causally
invariant. Gradients keep the per-tensor scale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

E2M1_GRID = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
E2M1_MAX, E4M3_MAX, BLOCK = 6.0, 448.0, 16


@dataclass(frozen=True)
class NVFP4Recipe:
    rht: bool = True  # random Hadamard transform on the wgrad operands
    stochastic_rounding: bool = True  # for gradients
    weight_2d: bool = True  # 16 x 16 weight blocks (False: 1 x 16 along the input dimension)
    activation_scale: Literal["tensor", "token"] = "tensor"  # s_global of fprop activations (module docstring)

    def __post_init__(self) -> None:
        if self.activation_scale not in ("tensor", "token"):
            raise ValueError(f"activation_scale must be 'tensor' or 'token', got {self.activation_scale!r}")


def round_e2m1(x: torch.Tensor, stochastic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Round values in [-6, 6] to the E2M1 grid: nearest with ties to the even code, or stochastically.

    The grid is uniform in three ranges (step 0.5 below 2, 1 up to 4, 2 up to 6) and the
    codes count up along it, so ``torch.round`` (half to even) in units of the local step
    gives ties-to-even codes; stochastic rounding rounds up with probability equal to the
    fraction of a step. Elementwise only: no search over the grid.
    """
    mag = x.abs().clamp(max=E2M1_MAX)
    step = torch.where(mag < 2, 0.5, torch.where(mag < 4, 1.0, 2.0)).to(x.dtype)
    units = mag / step
    if stochastic:
        u = torch.rand(mag.shape, generator=generator, device=x.device, dtype=x.dtype)
        units = torch.floor(units) + (u < units - torch.floor(units)).to(x.dtype)
    else:
        units = torch.round(units)
    return torch.sign(x) * (units * step).clamp(max=E2M1_MAX)


def _e4m3(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(max=E4M3_MAX).to(torch.float8_e4m3fn).to(x.dtype)


def quantize_1d(x: torch.Tensor, stochastic: bool = False, generator: torch.Generator | None = None,
                per_row: bool = False) -> torch.Tensor:
    """Fake-quantize along the last dimension in 1 x 16 blocks (the last dim is zero-padded to 16k).

    ``per_row``: s_global from each row's amax instead of the whole tensor's."""
    n = x.shape[-1]
    pad = (-n) % BLOCK
    xb = F.pad(x.float(), (0, pad)).reshape(*x.shape[:-1], -1, BLOCK)
    s_global = (xb.abs().amax(dim=(-2, -1), keepdim=True) if per_row else xb.abs().amax()) / (E4M3_MAX * E2M1_MAX)
    if not per_row and s_global == 0:
        return torch.zeros_like(x)
    s_global = torch.where(s_global > 0, s_global, 1.0)  # all-zero rows: any scale gives zeros
    scale = _e4m3(xb.abs().amax(-1, keepdim=True) / E2M1_MAX / s_global) * s_global
    q = round_e2m1(xb / torch.where(scale > 0, scale, 1.0), stochastic, generator) * scale
    return q.reshape(*x.shape[:-1], -1)[..., :n].to(x.dtype)


def quantize_2d(w: torch.Tensor) -> torch.Tensor:
    """Fake-quantize matrices (..., r, c) in 16 x 16 blocks (padded); commutes with transposition."""
    r, c = w.shape[-2:]
    pr, pc = (-r) % BLOCK, (-c) % BLOCK
    wb = F.pad(w.float(), (0, pc, 0, pr))
    R, Cc = wb.shape[-2:]
    tiles = wb.reshape(*w.shape[:-2], R // BLOCK, BLOCK, Cc // BLOCK, BLOCK)
    s_global = tiles.abs().amax() / (E4M3_MAX * E2M1_MAX)
    if s_global == 0:
        return torch.zeros_like(w)
    scale = _e4m3(tiles.abs().amax(dim=(-3, -1), keepdim=True) / E2M1_MAX / s_global) * s_global
    q = round_e2m1(tiles / torch.where(scale > 0, scale, 1.0)) * scale
    return q.reshape(*w.shape[:-2], R, Cc)[..., :r, :c].to(w.dtype)


@lru_cache(maxsize=4)
def hadamard16(signs_seed: int = 0) -> torch.Tensor:
    """diag(s) H16 / 4: Sylvester's Hadamard matrix with one fixed random sign vector; orthogonal."""
    H = torch.ones(1, 1)
    while H.shape[0] < BLOCK:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    signs = torch.randint(0, 2, (BLOCK,), generator=torch.Generator().manual_seed(signs_seed)) * 2 - 1
    return signs[:, None].float() * H / 4


def rht_tokens(a: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """M^T on each 16-token tile of the token dimension (dim -2, zero-padded): a' = blockdiag(M)^T a."""
    n, k = a.shape[-2:]
    pad = (-n) % BLOCK
    tiles = F.pad(a, (0, 0, 0, pad)).reshape(*a.shape[:-2], -1, BLOCK, k)
    return torch.einsum("ij,...tik->...tjk", M.to(a), tiles).reshape(*a.shape[:-2], -1, k)


class _NVFP4Linear(torch.autograd.Function):
    """Y = X W^T with x (..., n, in) and w (out, in), or batched: x (E, n, in), w (E, out, in)."""

    @staticmethod
    def forward(ctx, x, weight, recipe: NVFP4Recipe):
        batched = weight.dim() == 3
        x2 = x if batched else x.reshape(-1, x.shape[-1])
        wq = quantize_2d(weight) if recipe.weight_2d else quantize_1d(weight)
        ctx.save_for_backward(x2, weight, wq)
        ctx.recipe, ctx.shape, ctx.x_dtype = recipe, x.shape, x.dtype
        with torch.autocast(x.device.type, enabled=False):  # exact products of the quantized operands, fp32 sums
            y = quantize_1d(x2.float(), per_row=recipe.activation_scale == "token") @ wq.float().transpose(-1, -2)
        return y if batched else y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x2, weight, wq = ctx.saved_tensors
        r = ctx.recipe
        dy2 = (dy if weight.dim() == 3 else dy.reshape(-1, dy.shape[-1])).float()
        # dgrad contracts over the output dimension: 2D weight blocks serve both directions.
        w_dgrad = wq if r.weight_2d else quantize_1d(weight.transpose(-1, -2)).transpose(-1, -2)
        dx = quantize_1d(dy2, stochastic=r.stochastic_rounding) @ w_dgrad
        # wgrad contracts over tokens: RHT mixes tokens in 16-wide tiles, then 1 x 16 blocks along tokens.
        a, b = dy2, x2.float()
        if r.rht:
            M = hadamard16()
            a, b = rht_tokens(a, M), rht_tokens(b, M)
        dw = quantize_1d(a.transpose(-1, -2), stochastic=r.stochastic_rounding) @ \
            quantize_1d(b.transpose(-1, -2)).transpose(-1, -2)
        return dx.reshape(ctx.shape).to(ctx.x_dtype), dw.to(weight.dtype), None


def nvfp4_linear(x: torch.Tensor, weight: torch.Tensor, recipe: NVFP4Recipe) -> torch.Tensor:
    return _NVFP4Linear.apply(x, weight, recipe)


class NVFP4Linear(nn.Linear):
    """A bias-free ``nn.Linear`` whose three GEMMs run through NVFP4 fake quantization."""

    def __init__(self, in_features: int, out_features: int, recipe: NVFP4Recipe = NVFP4Recipe()):
        super().__init__(in_features, out_features, bias=False)
        self.recipe = recipe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nvfp4_linear(x, self.weight, self.recipe)


def replace_recipe(module: nn.Module, **changes) -> int:
    """Change fields of every NVFP4 recipe under ``module`` (linears and expert groups), e.g.
    ``activation_scale="token"`` for decoding. Returns how many recipes changed."""
    changed = 0
    for sub in module.modules():
        if isinstance(getattr(sub, "recipe", None), NVFP4Recipe):
            sub.recipe = dataclasses.replace(sub.recipe, **changes)
            changed += 1
    return changed


def convert_linears(module: nn.Module, recipe: NVFP4Recipe, keep: callable) -> int:
    """Swap every bias-free ``nn.Linear`` under ``module`` for ``NVFP4Linear`` unless ``keep(name)``.

    Returns how many were converted. Weights are shared, not copied.
    """
    converted = 0
    for name, child in list(module.named_modules()):
        for attr, sub in list(child.named_children()):
            full = f"{name}.{attr}" if name else attr
            if type(sub) is nn.Linear and sub.bias is None and not keep(full):
                new = NVFP4Linear(sub.in_features, sub.out_features, recipe)
                new.weight = sub.weight
                setattr(child, attr, new)
                converted += 1
    return converted
