"""Training the hybrid LM: AdamW, a warmup-stable-decay schedule, MoE bias updates, DDP, resume.

WSD (Nemotron 3's schedule, scaled down): linear warmup over ``warmup_frac`` of the steps,
constant peak, then the "minus-sqrt" decay lr = peak (1 - sqrt(s)) over the final
``decay_frac`` (s the decay progress), floored at ``min_lr_ratio`` * peak.

Data parallelism uses the existing engine: launched with ``torchrun`` (any backend; gloo on
CPU), every rank draws the same global batch and trains on its slice inside
``DistributedDataParallel``; MoE loads are all-reduced before the router-bias update, so
1 process and N processes follow the same trajectory (up to float summation order and the
per-rank balance loss).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from nanorepro.lm.data import eval_windows, sample_batch
from nanorepro.lm.model import HybridLM
from nanorepro.nn.moe import MoE


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 400
    batch_size: int = 8  # global, in sequences
    seq_len: int = 256
    lr: float = 3e-3
    min_lr_ratio: float = 0.01
    warmup_frac: float = 0.05
    decay_frac: float = 0.2
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    bias_update_rate: float = 1e-3  # aux-loss-free balancing step
    eval_every: int = 100
    eval_windows: int = 32
    checkpoint_every: int = 100


def wsd_lr(step: int, cfg: TrainConfig) -> float:
    warmup = max(1, int(cfg.warmup_frac * cfg.steps))
    decay_start = int((1 - cfg.decay_frac) * cfg.steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if step < decay_start:
        return cfg.lr
    progress = (step - decay_start) / max(1, cfg.steps - decay_start)
    return cfg.lr * max(cfg.min_lr_ratio, 1 - math.sqrt(progress))


class _Loss(nn.Module):
    """DDP wraps ``forward``; the LM's training objective is ``loss``."""

    def __init__(self, model: HybridLM):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor):
        return self.model.loss(ids)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (and expert tensors); not norms, biases, embeddings or SSM scalars."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        matrix = p.dim() >= 2 and "embeddings" not in name and "conv1d" not in name
        (decay if matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def bits_per_byte(model: HybridLM, windows: torch.Tensor, batch: int = 8) -> float:
    """Mean next-token cross-entropy on fixed windows, in bits (one token is one byte)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        ids = windows[i : i + batch]
        logits, _ = model(ids[:, :-1])
        ce = nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="sum")
        total += ce.item()
        count += ids[:, 1:].numel()
    model.train()
    return total / count / math.log(2)


def _update_router_biases(model: nn.Module, rate: float) -> None:
    for m in model.modules():
        if isinstance(m, MoE):
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(m.last_load)
            m.update_bias(rate)


def train(
    model: HybridLM,
    train_stream: np.ndarray,
    val_stream: np.ndarray,
    cfg: TrainConfig,
    *,
    seed: int,
    on_step: Callable[[int], None] | None = None,
    resume: dict | None = None,
    checkpoint: Callable[[dict], None] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict:
    """Train ``model`` in place; returns the curve (step, lr, loss parts, validation bpb)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    if cfg.batch_size % world:
        raise ValueError(f"global batch {cfg.batch_size} does not split over {world} processes")
    net = _Loss(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    generator = torch.Generator().manual_seed(seed)
    val = eval_windows(val_stream, cfg.seq_len + 1, cfg.eval_windows)
    step, curve = 0, []
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])  # NVFP4 stochastic rounding draws from it
        step, curve = resume["step"], resume["curve"]
    device = next(model.parameters()).device
    share = cfg.batch_size // world
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = wsd_lr(step, cfg)
        ids = sample_batch(train_stream, cfg.batch_size, cfg.seq_len + 1, generator)[rank * share:(rank + 1) * share]
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss, parts = net(ids.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        _update_router_biases(model, cfg.bias_update_rate)
        step += 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            logged = {"loss": loss.detach(), **parts}
            if world > 1:  # the global batch's mean, not this rank's slice
                for value in logged.values():
                    dist.all_reduce(value)
                logged = {k: v / world for k, v in logged.items()}
            point = {"step": step, "lr": wsd_lr(step - 1, cfg), "grad_norm": grad_norm.item(),
                     **{k: v.item() for k, v in logged.items()}}
            point["val_bpb"] = bits_per_byte(model, val.to(device))
            curve.append(point)
        if on_step is not None:
            on_step(step)
        if checkpoint is not None and step % cfg.checkpoint_every == 0 and step < cfg.steps and rank == 0:
            checkpoint(copy.deepcopy({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                      "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                                      "step": step, "curve": curve}))
    return {"curve": curve, "val_bpb": curve[-1]["val_bpb"]}
