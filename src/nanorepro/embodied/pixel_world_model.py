"""Chunk-level pixel world model: VQ tokens of both views, end-of-chunk tokens decoded head first, then wrist.

Our reconstruction of the multi-view world model VLA-MBPO builds on (its public code
predicts the end-of-chunk frames of both cameras and a success reward), at laptop scale:

* **Tokenizer** (per view): a VQ-VAE (van den Oord et al. 2017). A stride-4 CNN maps a
  P x P view to a (P/4) x (P/4) grid of vectors z_e, each snapped to its nearest codebook
  entry e_k; loss = ||x - D(e)||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2 with the
  straight-through gradient; unused codes are restarted on random encoder outputs.
* **Dynamics**: a bidirectional transformer over one sequence per transition:
  ``[instruction words | chunk + proprio | head_t | wrist_t | head queries | head_{t+H} | wrist queries | success]``.
  Head queries read the context and predict head_{t+H}'s codes; wrist queries read the
  context and, when ``interleaved``, the head_{t+H} tokens (teacher forced in training,
  the model's own argmax at inference: head first, then wrist conditioned on it). With
  ``interleaved=False`` the wrist is decoded from the context alone (the ablation).
  Within a view all tokens are predicted in one step (MaskGIT with a single iteration:
  our simplification of token-by-token decoding). A success token reads the context and
  gives the success logit. Uncertainty = mean predictive entropy of the predicted tokens.

    predict(obs, instruction, chunk) -> (next head, next wrist, success logit, uncertainty)

Cross-view consistency (``cross_view_inconsistency``): the wrist camera sees a window of
the table centred on the gripper, so its own view cannot place the gripper; we decode the
gripper from the head view (centroid of its dark pixels), crop the head view around it at
the wrist camera's window, and measure the mean absolute difference to the wrist view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.common.errors import UserError
from nanorepro.embodied.policy import to_float, with_coordinates
from nanorepro.embodied.world_model import chunk_starts
from nanorepro.envs.tabletop import MAX_WORDS, VOCAB
from nanorepro.nn.transformer import Block

PROPRIO = 5  # gripper x, y, grip, vx, vy: the controller carries momentum across chunks


@dataclass(frozen=True)
class VQConfig:
    codes: int = 128
    code_dim: int = 32
    channels: int = 32
    beta: float = 0.25           # commitment weight
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    restart_every: int = 100     # steps between restarts of unused codes


class VQTokenizer(nn.Module):
    """VQ-VAE for one view: (B, P, P, 3) uint8 <-> (B, (P/4)^2) codes."""

    def __init__(self, view_size: int, cfg: VQConfig = VQConfig()):
        super().__init__()
        if view_size % 4:
            raise UserError(f"the VQ tokenizer needs a view size divisible by 4, got {view_size}")
        c, d = cfg.channels, cfg.code_dim
        self.cfg, self.grid = cfg, view_size // 4
        self.encoder = nn.Sequential(nn.Conv2d(5, c, 4, 2, 1), nn.ReLU(), nn.Conv2d(c, c, 4, 2, 1), nn.ReLU(),
                                     nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, d, 1))
        self.decoder = nn.Sequential(nn.Conv2d(d, c, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(c, c, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(c, c, 4, 2, 1), nn.ReLU(), nn.Conv2d(c, 3, 3, 1, 1))
        self.codebook = nn.Parameter(torch.randn(cfg.codes, d) * 0.1)

    def _embed(self, images_BHWC: torch.Tensor) -> torch.Tensor:
        return self.encoder(with_coordinates(images_BHWC))  # (B, d, G, G)

    def _nearest(self, z_BdGG: torch.Tensor) -> torch.Tensor:
        flat = z_BdGG.permute(0, 2, 3, 1).reshape(-1, z_BdGG.shape[1])
        return torch.cdist(flat, self.codebook).argmin(-1).view(len(z_BdGG), -1)

    def decode(self, codes_BN: torch.Tensor) -> torch.Tensor:
        """(B, G^2) codes -> (B, 3, P, P) float images."""
        e = self.codebook[codes_BN].view(len(codes_BN), self.grid, self.grid, -1).permute(0, 3, 1, 2)
        return self.decoder(e)

    @torch.no_grad()
    def encode(self, images_BHWC: torch.Tensor) -> torch.Tensor:
        return self._nearest(self._embed(images_BHWC))

    def loss(self, images_BHWC: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(VQ-VAE loss, codes)."""
        z = self._embed(images_BHWC)
        codes = self._nearest(z.detach())
        e = self.codebook[codes].view(len(z), self.grid, self.grid, -1).permute(0, 3, 1, 2)
        straight = z + (e - z).detach()
        recon = F.mse_loss(self.decoder(straight), to_float(images_BHWC))
        return recon + F.mse_loss(e, z.detach()) + self.cfg.beta * F.mse_loss(z, e.detach()), codes

    def fit(self, images_NHWC: torch.Tensor, seed: int = 0, on_step=None) -> list[float]:
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.parameters(), lr=self.cfg.lr)
        used = torch.zeros(self.cfg.codes, dtype=torch.bool)
        curve = []
        for step in range(self.cfg.steps):
            batch = images_NHWC[torch.randint(len(images_NHWC), (self.cfg.batch_size,), generator=gen)]
            loss, codes = self.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            used[codes.unique()] = True
            if (step + 1) % self.cfg.restart_every == 0 and step + 1 < self.cfg.steps:
                self._restart(~used, batch, gen)
                used[:] = False
            curve.append(loss.item())
            if on_step:
                on_step(step)
        return curve

    @torch.no_grad()
    def _restart(self, dead: torch.Tensor, batch: torch.Tensor, gen: torch.Generator) -> None:
        """Move codes unused since the last restart onto random encoder outputs of the batch."""
        if not dead.any():
            return
        z = self._embed(batch).permute(0, 2, 3, 1).reshape(-1, self.cfg.code_dim)
        pick = torch.randint(len(z), (int(dead.sum()),), generator=gen)
        self.codebook[dead] = z[pick]


@dataclass(frozen=True)
class PixelWorldModelConfig:
    vq: VQConfig = field(default_factory=VQConfig)
    interleaved: bool = True     # wrist tokens conditioned on the predicted head tokens
    d_model: int = 96
    layers: int = 2
    heads: int = 4
    steps: int = 1500
    batch_size: int = 16
    lr: float = 5e-4


GROUPS = ("words", "chunk", "head_now", "wrist_now", "head_query", "head_next", "wrist_query", "success")


class PixelWorldModel(nn.Module):
    """Two VQ tokenizers and the dynamics transformer; see the module docstring for the sequence."""

    def __init__(self, view_size: int, horizon: int, cfg: PixelWorldModelConfig = PixelWorldModelConfig()):
        super().__init__()
        self.cfg, self.horizon = cfg, horizon
        self.tokenizers = nn.ModuleDict({v: VQTokenizer(view_size, cfg.vq) for v in ("head", "wrist")})
        n = (view_size // 4) ** 2
        self.sizes = dict(zip(GROUPS, (MAX_WORDS, 1, n, n, n, n if cfg.interleaved else 0, n, 1), strict=True))
        d = cfg.d_model
        self.word_embed = nn.Embedding(len(VOCAB) + 2, d)
        self.chunk_embed = nn.Linear(3 * horizon + PROPRIO, d)
        self.code_embed = nn.ModuleDict({v: nn.Embedding(cfg.vq.codes, d) for v in ("head", "wrist")})
        self.queries = nn.Parameter(torch.zeros(3, d))   # head query, wrist query, success
        self.pos = nn.Parameter(torch.randn(sum(self.sizes.values()), d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, cfg.heads) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(d)
        self.logits = nn.ModuleDict({v: nn.Linear(d, cfg.vq.codes) for v in ("head", "wrist")})
        self.success = nn.Linear(d, 1)
        self.register_buffer("allowed", self._mask(), persistent=False)

    def _mask(self) -> torch.Tensor:
        """(T, T) which key each query position may attend to."""
        group = torch.cat([torch.full((s,), g) for g, s in enumerate(self.sizes.values())])
        context = group <= GROUPS.index("wrist_now")
        same = group[:, None] == group[None, :]
        allowed = context[None, :] | same
        allowed &= ~(context[:, None] & ~context[None, :])        # the context never reads the outputs
        wrist_q, head_next = GROUPS.index("wrist_query"), GROUPS.index("head_next")
        if self.cfg.interleaved:
            allowed |= (group[:, None] == wrist_q) & (group[None, :] == head_next)
        return allowed

    def tokenize(self, head: torch.Tensor, wrist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokenizers["head"].encode(head), self.tokenizers["wrist"].encode(wrist)

    def _hidden(self, words, chunk, proprio, head_now, wrist_now, head_next) -> torch.Tensor:
        B, d = len(words), self.cfg.d_model
        q = self.queries
        parts = [self.word_embed(words), self.chunk_embed(torch.cat([chunk.flatten(1), proprio], 1))[:, None],
                 self.code_embed["head"](head_now), self.code_embed["wrist"](wrist_now),
                 q[0].expand(B, self.sizes["head_query"], d)]
        if self.cfg.interleaved:
            parts.append(self.code_embed["head"](head_next))
        parts += [q[1].expand(B, self.sizes["wrist_query"], d), q[2].expand(B, 1, d)]
        x = torch.cat(parts, 1) + self.pos
        allowed = self.allowed.expand(B, -1, -1)
        for block in self.blocks:
            x = block(x, allowed=allowed)
        return self.ln(x)

    def _outputs(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start = {g: sum(list(self.sizes.values())[:i]) for i, g in enumerate(GROUPS)}
        head = h[:, start["head_query"]: start["head_query"] + self.sizes["head_query"]]
        wrist = h[:, start["wrist_query"]: start["wrist_query"] + self.sizes["wrist_query"]]
        return self.logits["head"](head), self.logits["wrist"](wrist), self.success(h[:, -1]).squeeze(-1)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of both views' end-of-chunk codes (teacher forced) + BCE of success."""
        h = self._hidden(batch["instruction"], batch["chunk"], batch["proprio"], batch["head_now"],
                         batch["wrist_now"], batch["head_next"])
        head_logits, wrist_logits, success = self._outputs(h)
        return (F.cross_entropy(head_logits.flatten(0, 1), batch["head_next"].flatten())
                + F.cross_entropy(wrist_logits.flatten(0, 1), batch["wrist_next"].flatten())
                + F.binary_cross_entropy_with_logits(success, batch["solved"]))

    @torch.no_grad()
    def predict_codes(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Head codes first; with ``interleaved`` the wrist is then decoded given them (a second pass)."""
        args = (batch["instruction"], batch["chunk"], batch["proprio"], batch["head_now"], batch["wrist_now"])
        placeholder = torch.zeros_like(batch["head_now"])
        head_logits, wrist_logits, success = self._outputs(self._hidden(*args, placeholder))
        head = head_logits.argmax(-1)
        if self.cfg.interleaved:
            _, wrist_logits, _ = self._outputs(self._hidden(*args, head))
        entropy = torch.cat([head_logits, wrist_logits], 1).log_softmax(-1)
        entropy = -(entropy.exp() * entropy).sum(-1).mean(-1)
        return {"head": head, "wrist": wrist_logits.argmax(-1), "success": success, "uncertainty": entropy}

    @torch.no_grad()
    def success_logits(self, obs: dict[str, torch.Tensor], instruction: torch.Tensor, chunk: torch.Tensor
                       ) -> torch.Tensor:
        """(B,) the success head alone: it reads only the context, so no frame is decoded."""
        head_now, wrist_now = self.tokenize(obs["head"], obs["wrist"])
        hidden = self._hidden(instruction, chunk, obs["state"][:, :PROPRIO], head_now, wrist_now,
                              torch.zeros_like(head_now))
        return self._outputs(hidden)[2]

    @torch.no_grad()
    def predict(self, obs: dict[str, torch.Tensor], instruction: torch.Tensor, chunk: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(next head, next wrist) as (B, 3, P, P) floats, success logit (B,), uncertainty (B,)."""
        head_now, wrist_now = self.tokenize(obs["head"], obs["wrist"])
        out = self.predict_codes({"instruction": instruction, "chunk": chunk, "proprio": obs["state"][:, :PROPRIO],
                                  "head_now": head_now, "wrist_now": wrist_now})
        return (self.tokenizers["head"].decode(out["head"]).clamp(0, 1),
                self.tokenizers["wrist"].decode(out["wrist"]).clamp(0, 1), out["success"], out["uncertainty"])

    def fit(self, transitions: dict[str, torch.Tensor], seed: int = 0, on_step=None) -> list[float]:
        """Train the dynamics on tokenized transitions (``token_transitions``); tokenizers stay fixed."""
        gen = torch.Generator().manual_seed(seed)
        params = [p for n, p in self.named_parameters() if not n.startswith("tokenizers.")]
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / self.cfg.steps)))
        n = len(transitions["solved"])
        curve = []
        for step in range(self.cfg.steps):
            idx = torch.randint(n, (self.cfg.batch_size,), generator=gen)
            loss = self.loss({k: v[idx] for k, v in transitions.items()})
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            schedule.step()
            curve.append(loss.item())
            if on_step:
                on_step(step)
        return curve

    def fine_tune(self, pools: list[dict[str, torch.Tensor]], shares: list[float], steps: int,
                  generator: torch.Generator) -> list[float]:
        """``steps`` more steps of the dynamics at a constant learning rate, each batch drawn from the
        transition pools in ``shares`` (e.g. the demonstrations and the policy's own real chunks)."""
        sizes = [round(f * self.cfg.batch_size) for f in shares]
        sizes[0] += self.cfg.batch_size - sum(sizes)
        params = [p for n, p in self.named_parameters() if not n.startswith("tokenizers.")]
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=0.01)
        curve = []
        self.train()
        for _ in range(steps):
            parts = [{k: v[torch.randint(len(pool["solved"]), (n,), generator=generator)] for k, v in pool.items()}
                     for pool, n in zip(pools, sizes, strict=True) if n and len(pool["solved"])]
            loss = self.loss({k: torch.cat([part[k] for part in parts]) for k in parts[0]})
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            curve.append(loss.item())
        self.eval()
        return curve


def token_transitions(model: PixelWorldModel, data: dict[str, np.ndarray], horizon: int,
                      batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Every within-episode chunk transition of demonstration arrays, with both views tokenized."""
    n, episode = len(data["state"]), data["episode"]
    start = chunk_starts(episode, horizon)
    codes = {}
    for view in ("head", "wrist"):
        images = torch.as_tensor(data[view])
        codes[view] = torch.cat([model.tokenizers[view].encode(images[i: i + batch_size])
                                 for i in range(0, n, batch_size)])
    return {
        "instruction": torch.as_tensor(data["instruction"][episode[start]]),
        "chunk": torch.as_tensor(data["action"][start[:, None] + np.arange(horizon)]).float(),
        "proprio": torch.as_tensor(data["state"][start, :PROPRIO]),
        "head_now": codes["head"][start], "wrist_now": codes["wrist"][start],
        "head_next": codes["head"][start + horizon], "wrist_next": codes["wrist"][start + horizon],
        "solved": torch.as_tensor(data["solved"][start + horizon - 1]).float(),
    }


def gripper_from_head(head_B3PP: torch.Tensor) -> torch.Tensor:
    """(B, 2) table coordinates of the gripper: the centroid of the head view's dark pixels (max channel < 0.35)."""
    P = head_B3PP.shape[-1]
    weight = (0.35 - head_B3PP.max(1).values).clamp(min=0) + 1e-8                 # (B, P, P)
    pix = (torch.arange(P, dtype=head_B3PP.dtype) + 0.5) / P
    total = weight.sum((1, 2))
    return torch.stack([(weight.sum(1) * pix).sum(-1) / total, (weight.sum(2) * pix).sum(-1) / total], 1)


def crop(head_B3PP: torch.Tensor, centre_B2: torch.Tensor, window: float, size: int) -> torch.Tensor:
    """The (B, 3, size, size) window of side ``window`` (table units) around ``centre``; black off the table."""
    steps = (torch.arange(size, dtype=head_B3PP.dtype) + 0.5) / size - 0.5
    xs = (centre_B2[:, 0, None] + steps * window) * 2 - 1                        # grid_sample's [-1, 1]
    ys = (centre_B2[:, 1, None] + steps * window) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), -1)
    return F.grid_sample(head_B3PP, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def cross_view_inconsistency(head_B3PP: torch.Tensor, wrist_B3PP: torch.Tensor, window: float) -> torch.Tensor:
    """(B,) mean |wrist - head cropped around the gripper decoded from the head|, in [0, 1] pixel units."""
    expected = crop(head_B3PP, gripper_from_head(head_B3PP), window, wrist_B3PP.shape[-1])
    return (wrist_B3PP - expected).abs().mean((1, 2, 3))
