"""A tiny 2-D vision-language model, its 2D→3D transfer, and TGH-MoE (text-guided hierarchical MoE).

Shape legend: B batch, D slices, P patches per slice, d width, T text tokens, G task groups,
E experts per group, K top-k, h expert hidden width.

2-D model (our stand-in for the pretrained 2-D MLLM): a ViT (patch embedding, learned
in-plane positions, ``lower + upper`` bidirectional blocks) whose patch tokens are pooled and
projected into a small decoder LM that reads [visual tokens][bos][prompt][sep][answer][eos].

2D→3D transfer (reusing every 2-D weight; [T] in docs/med3d.md, details our reconstruction):
each slice goes through the patch embedding, positions and lower blocks on its own; a learned
depth embedding (zero at initialisation) is added; the upper blocks then attend across the
tokens of all slices; tokens are average-pooled to ``depth_tokens`` × P visual tokens. With one
slice and zero depth terms the 3-D encoder is exactly the 2-D one.

TGH-MoE in the upper blocks (our reconstruction of [T]): a task router reads the mean text
embedding of the prompt and hard-selects one of G task groups (trained with cross-entropy on
the task label); inside the group a softmax router picks the top-K of E FFN experts per
token, and a shared expert is always on:

    y = ½ [ FFN_shared(x) + Σ_{i ∈ topK} g_i FFN_{t,i}(x) ],   g = renormalised top-K softmax

The ½ makes upcycling exact: experts copied from a dense FFN give y = FFN(x) (before noise).
All E experts of the chosen group are evaluated densely and combined with zero gates outside
the top-K — the same output as sparse dispatch, faster at these sizes on a CPU.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.nn.mlp import mlp
from nanorepro.nn.moe import balance_loss
from nanorepro.nn.transformer import Block

ENCODER_KINDS = ("dense", "tgh", "task", "token", "wide")


@dataclass(frozen=True)
class ModelConfig:
    vocab: int
    image: int = 32
    patch: int = 8
    max_slices: int = 16
    d_vision: int = 64
    heads: int = 4
    lower_blocks: int = 2
    upper_blocks: int = 2
    depth_tokens: int = 4        # visual tokens along depth after pooling (P per depth token)
    d_lm: int = 96
    lm_layers: int = 3
    lm_heads: int = 4
    max_text: int = 80           # prompt + answer tokens
    # encoder FFN of the upper blocks: dense | tgh (task + token routing) | task | token | wide
    encoder: str = "dense"
    groups: int = 3
    experts: int = 4
    top_k: int = 2
    wide_factor: int = 1         # hidden-width multiple of the "wide" dense baseline
    balance_coef: float = 0.01
    route_coef: float = 0.1


class TGHMoE(nn.Module):
    """Hard task-group routing (given per example) + token-level top-K experts + a shared expert."""

    def __init__(self, d: int, hidden: int, groups: int, experts: int, top_k: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(groups, experts, d, hidden) * 0.02)
        self.b1 = nn.Parameter(torch.zeros(groups, experts, hidden))
        self.w2 = nn.Parameter(torch.randn(groups, experts, hidden, d) * 0.02)
        self.b2 = nn.Parameter(torch.zeros(groups, experts, d))
        self.router = nn.Parameter(torch.randn(groups, d, experts) * 0.02)
        self.shared = mlp(d, hidden, d, layers=1, activation=nn.GELU)
        self.top_k = top_k
        self.aux_losses: list[torch.Tensor] = []
        self.last_load = torch.zeros(groups, experts)

    @classmethod
    def upcycle(cls, ffn: nn.Sequential, groups: int, experts: int, top_k: int, noise: float,
                generator: torch.Generator | None = None) -> TGHMoE:
        """Every expert and the shared expert start as copies of ``ffn``; ``noise`` × weight std is added."""
        first, last = ffn[0], ffn[2]
        moe = cls(first.in_features, first.out_features, groups, experts, top_k)
        with torch.no_grad():
            for param, source in ((moe.w1, first.weight.T), (moe.b1, first.bias), (moe.w2, last.weight.T),
                                  (moe.b2, last.bias)):
                param.copy_(source.expand_as(param))
                if noise > 0 and source.dim() == 2:
                    param.add_(torch.randn(param.shape, generator=generator) * noise * source.std())
        moe.shared = copy.deepcopy(ffn)
        return moe

    def forward(self, x: torch.Tensor, group: torch.Tensor | None = None) -> torch.Tensor:
        B, N, d = x.shape
        group = torch.zeros(B, dtype=torch.long, device=x.device) if group is None else group
        probs = torch.einsum("bnd,bde->bne", x, self.router[group]).softmax(-1)
        top = probs.topk(self.top_k, dim=-1)
        gates = torch.zeros_like(probs).scatter(-1, top.indices, top.values / top.values.sum(-1, keepdim=True))
        h = F.gelu(torch.einsum("bnd,bedh->bneh", x, self.w1[group]) + self.b1[group][:, None])
        y = torch.einsum("bneh,behd->bned", h, self.w2[group]) + self.b2[group][:, None]
        routed = (gates.unsqueeze(-1) * y).sum(2)
        E = probs.shape[-1]
        load = F.one_hot(top.indices, E).sum((1, 2)).float()  # (B, E) top-K picks per example
        self.last_load = torch.zeros(self.w1.shape[:2], device=x.device).index_add_(0, group, load).detach()
        if self.training and E > 1:
            self.aux_losses.append(balance_loss(probs.reshape(-1, E), load.sum(0), self.top_k))
        return 0.5 * (self.shared(x) + routed)


def widen(ffn: nn.Sequential, factor: int, generator: torch.Generator | None = None) -> nn.Sequential:
    """A dense FFN ``factor`` times wider computing the same function: new units have zero output weights."""
    first, last = ffn[0], ffn[2]
    d, h = first.in_features, first.out_features
    wide = mlp(d, h * factor, d, layers=1, activation=nn.GELU)
    with torch.no_grad():
        wide[0].weight.normal_(0, 0.02, generator=generator)
        wide[0].bias.zero_()
        wide[0].weight[:h], wide[0].bias[:h] = first.weight, first.bias
        wide[2].weight.zero_()
        wide[2].weight[:, :h], wide[2].bias[:] = last.weight, last.bias
    return wide


class VisionEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.grid = cfg.image // cfg.patch
        self.patch_embed = nn.Conv2d(1, cfg.d_vision, cfg.patch, stride=cfg.patch)
        self.pos = nn.Parameter(torch.randn(1, self.grid ** 2, cfg.d_vision) * 0.02)
        self.depth_pos = nn.Parameter(torch.zeros(cfg.max_slices, cfg.d_vision))  # zero: 3-D starts as 2-D
        self.mask_token = nn.Parameter(torch.zeros(cfg.d_vision))  # masked image modelling (2-D pretraining)
        self.lower = nn.ModuleList(Block(cfg.d_vision, cfg.heads) for _ in range(cfg.lower_blocks))
        self.upper = nn.ModuleList(Block(cfg.d_vision, cfg.heads) for _ in range(cfg.upper_blocks))
        self.ln = nn.LayerNorm(cfg.d_vision)

    def forward(self, volume: torch.Tensor, group: torch.Tensor | None = None,
                masked: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D, H, W) in [0, 1] -> (B, min(D, depth_tokens) × P, d) pooled tokens.

        One slice (D = 1) gives all P patch tokens unpooled; ``masked`` (B·D, P) bool replaces those
        patches' embeddings by a learned mask token (SimMIM-style masked image modelling).
        """
        B, D, H, W = volume.shape
        if D > self.cfg.max_slices or H != self.cfg.image or W != self.cfg.image:
            raise ValueError(f"volume of shape {tuple(volume.shape[1:])} does not fit the model "
                             f"(at most {self.cfg.max_slices} slices of {self.cfg.image}x{self.cfg.image})")
        x = self.patch_embed(volume.reshape(B * D, 1, H, W) * 2 - 1).flatten(2).transpose(1, 2)
        if masked is not None:
            x = torch.where(masked.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        x = x + self.pos
        for block in self.lower:                           # per slice
            x = block(x, causal=False)
        P = x.shape[1]
        x = (x.view(B, D, P, -1) + self.depth_pos[:D, None]).reshape(B, D * P, -1)
        kwargs = {} if self.cfg.encoder in ("dense", "wide") else {"group": group}
        for block in self.upper:                           # across all slices
            x = block(x, causal=False, **kwargs)
        x = self.ln(x).view(B, D, self.grid, self.grid, -1).permute(0, 4, 1, 2, 3)
        x = F.adaptive_avg_pool3d(x, (min(D, self.cfg.depth_tokens), self.grid, self.grid))
        return x.flatten(2).transpose(1, 2)

    def moe_layers(self) -> list[TGHMoE]:
        return [b.mlp for b in self.upper if isinstance(b.mlp, TGHMoE)]


class VisionLanguageModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionEncoder(cfg)
        self.projector = mlp(cfg.d_vision, cfg.d_lm, cfg.d_lm, layers=1, activation=nn.GELU)
        self.visual_type = nn.Parameter(torch.zeros(cfg.d_lm))
        self.tok = nn.Embedding(cfg.vocab, cfg.d_lm)
        self.pos = nn.Embedding(cfg.max_text, cfg.d_lm)   # text positions start at 0 after the visual prefix
        self.blocks = nn.ModuleList(Block(cfg.d_lm, cfg.lm_heads) for _ in range(cfg.lm_layers))
        self.ln = nn.LayerNorm(cfg.d_lm)
        self.head = nn.Linear(cfg.d_lm, cfg.vocab, bias=False)
        self.task_router = nn.Linear(cfg.d_lm, cfg.groups)  # used when the encoder routes by task
        if cfg.encoder != "dense":
            self.convert(cfg.encoder)

    # ------------------------------------------------------------------ encoder variants
    def convert(self, kind: str, noise: float = 0.0, generator: torch.Generator | None = None,
                wide_factor: int | None = None) -> VisionLanguageModel:
        """Replace the upper blocks' dense FFN: upcycle into experts (``tgh``, ``task``, ``token``) or widen."""
        if kind not in ENCODER_KINDS:
            raise ValueError(f"unknown encoder kind {kind!r} (choose from {', '.join(ENCODER_KINDS)})")
        c = self.cfg
        groups, experts, top_k = {"tgh": (c.groups, c.experts, c.top_k), "task": (c.groups, 1, 1),
                                  "token": (1, c.experts, c.top_k)}.get(kind, (0, 0, 0))
        factor = wide_factor or c.wide_factor
        for block in self.encoder.upper:
            if kind == "wide":
                block.mlp = widen(block.mlp, factor, generator)
            elif kind != "dense":
                block.mlp = TGHMoE.upcycle(block.mlp, groups, experts, top_k, noise, generator)
        self.cfg = self.encoder.cfg = replace(c, encoder=kind, wide_factor=factor)
        return self

    def routes_by_task(self) -> bool:
        return self.cfg.encoder in ("tgh", "task")

    def task_logits(self, prompt: torch.Tensor) -> torch.Tensor:
        """Task router on the mean text embedding of the prompt tokens (padding excluded)."""
        mask = (prompt != 0).float().unsqueeze(-1)
        mean = (self.tok(prompt) * mask).sum(1) / mask.sum(1).clamp_min(1)
        return self.task_router(mean)

    # ------------------------------------------------------------------ forward
    def visual_tokens(self, volume: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        group = None
        if self.routes_by_task():
            group = self.task_logits(prompt).argmax(-1)   # hard routing by the text
        return self.projector(self.encoder(volume, group)) + self.visual_type

    def logits(self, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every text position, (B, T, vocab); text is right-padded."""
        if text.shape[1] > self.cfg.max_text:
            raise ValueError(f"text of {text.shape[1]} tokens exceeds max_text={self.cfg.max_text}")
        t = self.tok(text) + self.pos(torch.arange(text.shape[1], device=text.device))
        x = torch.cat([visual, t], 1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x[:, visual.shape[1]:]))

    def aux_loss(self) -> torch.Tensor:
        """Balance losses collected by the MoE layers during the last training forward (then cleared)."""
        losses = [loss for moe in self.encoder.moe_layers() for loss in moe.aux_losses]
        for moe in self.encoder.moe_layers():
            moe.aux_losses = []
        return torch.stack(losses).mean() if losses else torch.zeros(())

