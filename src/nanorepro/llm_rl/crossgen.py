"""Cross-Generation evaluation (START, arXiv 2603.20799): how useful is a policy's thinking to other models?

Readers of increasing size are trained to answer from (question, thinking); then each reader
answers greedily from every policy's sampled thinking. Anchors: no thinking (an empty "<:>")
and the gold thinking. Thinking efficacy = (acc_with - acc_none) / (acc_gold - acc_none).
Readers see 20% empty and 20% corrupted thinking in training (target still correct), so
they must use, but cannot blindly copy, the thinking (our reconstruction of the protocol).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nanorepro.llm_rl.loop import encode_batch
from nanorepro.llm_rl.policy import CharTokenizer, sample
from nanorepro.llm_rl.tasks import KnowledgeBase, Problem, thinking_span

EMPTY_THINKING = "<:>"


def reader_examples(kb: KnowledgeBase, problems: list[Problem], rng: np.random.Generator, drop: float = 0.2,
                    corrupt: float = 0.2) -> list[tuple[str, str]]:
    """(question + thinking, answer) pairs; some thinking emptied, some pointing elsewhere."""
    out = []
    for p in problems:
        u = rng.random()
        if u < drop:
            thinking = EMPTY_THINKING
        elif u < drop + corrupt:
            city = kb.cities[int(rng.integers(len(kb.cities)))]
            thinking = f"<{city}:{kb.country[city]}>"
        else:
            thinking = p.gold[: thinking_span(p.gold)[1]]
        out.append((p.prompt + thinking, p.answer + "."))
    return out


@torch.no_grad()
def reader_accuracy(reader: nn.Module, tok: CharTokenizer, problems: list[Problem], thinkings: list[str],
                    generator: torch.Generator) -> float:
    """Greedy answers of ``reader`` from (question, thinking); thinkings of unequal length are grouped."""
    correct = 0
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(thinkings):
        groups.setdefault(len(problems[i].prompt) + len(t), []).append(i)
    reader.eval()
    for idx in groups.values():
        prompts = encode_batch(tok, [problems[i].prompt + thinkings[i] for i in idx])
        out = sample(reader, prompts, 2, generator, temperature=0)
        for row, i in zip(out, idx, strict=True):
            correct += int(tok.decode(row)[:1] == problems[i].answer)
    return correct / len(problems)


@torch.no_grad()
def policy_thinkings(policy: nn.Module, tok: CharTokenizer, problems: list[Problem], samples: int,
                     generator: torch.Generator, max_new: int = 16) -> tuple[list[Problem], list[str]]:
    """``samples`` sampled thinkings per problem (malformed ones become the empty thinking)."""
    prompts = encode_batch(tok, [p.prompt for p in problems]).repeat_interleave(samples, 0)
    out = sample(policy, prompts, max_new, generator)
    repeated, thinkings = [], []
    for i, row in enumerate(out):
        text = tok.decode(row)
        span = thinking_span(text)
        thinkings.append(text[: span[1]] if span is not None and len(text[: span[1]]) <= 12 else EMPTY_THINKING)
        repeated.append(problems[i // samples])
    return repeated, thinkings


def efficacy(with_thinking: float, none: float, gold: float) -> float | None:
    return (with_thinking - none) / (gold - none) if gold - none > 1e-9 else None

