"""Supervised pretraining/SFT, rollouts with verifiers, evaluation, and the RL loop shared by all methods.

The x-axis of every learning curve is the number of generated samples (completions), as in
the notes: wall-clock misleads for tiny models whose rollouts are cheap.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from nanorepro.llm_rl.grpo import GRPOConfig, grpo_update
from nanorepro.llm_rl.policy import CharTokenizer, completion_logits, completion_mask, sample, token_logprobs
from nanorepro.llm_rl.reval import ReVal, ReValConfig
from nanorepro.llm_rl.tasks import Problem, thinking_span

Reward = Callable[[str, Problem], tuple[float, bool]]


def encode_batch(tok: CharTokenizer, texts: list[str]) -> torch.Tensor:
    ids = [tok.encode(t) for t in texts]
    if len({len(i) for i in ids}) != 1:
        raise ValueError("prompts in one batch must have the same length (the tasks make them so)")
    return torch.tensor(ids)


def sft_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The optimizer of ``train_lm``: AdamW with weight decay 0.01."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)


def train_lm(model: nn.Module, tok: CharTokenizer, examples: list[tuple[str, str]], steps: int, batch: int,
             lr: float, generator: torch.Generator, on_step=None,
             opt: torch.optim.Optimizer | None = None) -> list[float]:
    """Next-token training on (context, target) text pairs; the loss covers only the target (+ EOS).

    Pretraining sentences are pairs with an empty context. Sequences are right-padded.
    ``opt``: continue with this optimizer (``sft_optimizer``, made here if None).
    """
    seqs = [tok.encode(c) + tok.encode(t) + [tok.EOS] for c, t in examples]
    starts = [len(tok.encode(c)) for c, _ in examples]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tok.PAD, dtype=torch.long)
    weight = torch.zeros(len(seqs), width)
    for i, (s, st) in enumerate(zip(seqs, starts, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        weight[i, max(st, 1) : len(s)] = 1.0  # targets are predicted from the token before them
    opt = opt if opt is not None else sft_optimizer(model, lr)
    losses = []
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(seqs), (batch,), generator=generator)
        x, w = ids[idx], weight[idx]
        logits = model(x[:, :-1])
        ce = nn.functional.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten(), reduction="none")
        loss = (ce * w[:, 1:].flatten()).sum() / w[:, 1:].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1)
    return losses


def rollout(policy: nn.Module, tok: CharTokenizer, problems: list[Problem], reward: Reward, group: int,
            max_new: int, generator: torch.Generator, temperature: float = 1.0) -> dict:
    prompts = encode_batch(tok, [p.prompt for p in problems]).repeat_interleave(group, 0)
    policy.eval()
    completions = sample(policy, prompts, max_new, generator, temperature, eos=tok.EOS, pad=tok.PAD)
    texts = [tok.decode(c) for c in completions]
    scored = [reward(t, problems[i // group]) for i, t in enumerate(texts)]
    mask = completion_mask(completions, tok.EOS)
    with torch.no_grad():
        old_logp = token_logprobs(completion_logits(policy, prompts, completions), completions)
    policy.train()
    return {"prompts": prompts, "completions": completions, "mask": mask, "texts": texts,
            "R": torch.tensor([s[0] for s in scored]), "malformed": sum(s[1] for s in scored),
            "old_logp": old_logp}


@torch.no_grad()
def accuracy(policy: nn.Module, tok: CharTokenizer, problems: list[Problem], reward: Reward, samples: int,
             max_new: int, generator: torch.Generator, temperature: float = 1.0,
             chunk: int = 256) -> tuple[float, float]:
    """Mean reward of ``samples`` completions per problem, and the malformed share.

    Prompts of different token lengths are sampled in separate batches (no padding inside a prompt),
    of at most ``chunk`` problems each.
    """
    by_length: dict[int, list[Problem]] = {}
    for p in problems:
        by_length.setdefault(len(tok.encode(p.prompt)), []).append(p)
    total, malformed, n = 0.0, 0, 0
    for group in by_length.values():
        for i in range(0, len(group), chunk):
            out = rollout(policy, tok, group[i : i + chunk], reward, samples, max_new, generator, temperature)
            total, malformed, n = total + out["R"].sum().item(), malformed + out["malformed"], n + len(out["R"])
    return total / n, malformed / n


@dataclass(frozen=True)
class RLConfig:
    method: Literal["grpo", "reval"] = "grpo"
    iterations: int = 100
    prompts_per_iter: int = 16
    group: int = 8
    max_new: int = 12
    eval_every: int = 5
    eval_samples: int = 4
    grpo: GRPOConfig = GRPOConfig()
    reval: ReValConfig = ReValConfig()


def thinking_mask(batch: dict, tok: CharTokenizer, which: str) -> torch.Tensor:
    """(N, L) token mask: 1 on the thinking "<...>" ("thinking") or on the rest ("response"); START's phases."""
    mask = torch.zeros_like(batch["mask"])
    for i, text in enumerate(batch["texts"]):
        span = thinking_span(text)
        end = len(tok.encode(text[: span[1]])) if span is not None else 0  # in tokens
        if which == "thinking":
            mask[i, :end] = 1.0
        else:
            mask[i, end:] = 1.0
    return mask


def rl_train(policy: nn.Module, tok: CharTokenizer, train_problems: Callable[[np.random.Generator, int], list[Problem]],
             evals: dict[str, list[Problem]], reward: Reward, cfg: RLConfig, seed: int,
             token_mask: Callable[[dict], torch.Tensor] | None = None, on_iteration=None,
             resume: dict | None = None, save: Callable[[dict], None] | None = None) -> list[dict]:
    """Run ``cfg.iterations`` rollout/update rounds; evaluate every ``eval_every`` on each eval split.

    ``token_mask(batch) -> (N, L)`` restricts GRPO's loss to some tokens (START's phases).
    Returns the curve: generated samples, accuracy per split, malformed share, losses.
    ``save(state)`` receives the whole training state after each evaluation (but the last);
    passing it back as ``resume`` continues the run exactly where it stopped.

    Under ``torchrun`` every rank samples its own prompts and completions and the updates run
    inside ``DistributedDataParallel`` (gradients averaged), so N processes train on N times
    the rollouts per iteration; ``samples`` counts the global number.
    """
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() \
        else (0, 1)
    rng = np.random.default_rng(seed + 1000 * rank)
    gen = torch.Generator().manual_seed(seed + 1000 * rank)
    trained = nn.parallel.DistributedDataParallel(policy) if world > 1 else policy
    learner = ReVal(policy, cfg.reval, trained) if cfg.method == "reval" else None
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.grpo.lr) if learner is None else None
    curve, samples, first = [], 0, 1
    if resume is not None:
        policy.load_state_dict(resume["policy"])
        (learner if learner is not None else opt).load_state_dict(resume["learner"])
        rng.bit_generator.state = resume["rng"]
        gen.set_state(resume["generator"])
        curve, samples, first = resume["curve"], resume["samples"], resume["iteration"] + 1

    def evaluate(it: int, stats: dict) -> None:
        point = {"iteration": it, "samples": samples, **stats}
        for name, problems in evals.items():
            acc, bad = accuracy(policy, tok, problems, reward, cfg.eval_samples, cfg.max_new, gen)
            point[f"acc_{name}"], point[f"malformed_{name}"] = acc, bad
        curve.append(point)

    if resume is None:
        evaluate(0, {})
    for it in range(first, cfg.iterations + 1):
        batch = rollout(policy, tok, train_problems(rng, cfg.prompts_per_iter), reward, cfg.group, cfg.max_new, gen)
        samples += len(batch["R"]) * world
        if learner is not None:
            stats = learner.update({k: batch[k] for k in ("prompts", "completions", "mask", "R")}, gen)
        else:
            mask = batch["mask"] * (token_mask(batch) if token_mask is not None else 1.0)
            stats = grpo_update(trained, opt, batch["prompts"], batch["completions"], mask,
                                batch["R"].view(-1, cfg.group), batch["old_logp"], cfg.grpo)
        stats["train_reward"] = batch["R"].mean().item()
        if it % cfg.eval_every == 0 or it == cfg.iterations:
            evaluate(it, stats)
            if save is not None and it < cfg.iterations and rank == 0:
                save(copy.deepcopy({"iteration": it, "samples": samples, "curve": curve, "rng": rng.bit_generator.state,
                                    "generator": gen.get_state(), "policy": policy.state_dict(),
                                    "learner": (learner if learner is not None else opt).state_dict()}))
        if on_iteration is not None:
            on_iteration(it)
    return curve
