"""Causal LMs as RL policies: a character tokenizer, TinyGPT, adapters, cached sampling, log-probs.

Every trainer here talks to a policy through two calls, so any causal LM fits:

    start(ids (B, P)) -> (logits of the next token (B, V), state)     prefill the prompts
    advance(next (B,), state) -> (logits (B, V), state)               one cached step

plus ``forward(ids) -> logits (B, T, V)`` for training. ``TinyGPT`` implements them natively;
``HFPolicy`` wraps a Hugging Face ``AutoModelForCausalLM`` (``past_key_values``; ``HFTokenizer``
its tokenizer) and ``HybridPolicy`` nanorepro's hybrid Mamba-2/attention LM (its own cache).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from nanorepro.lm import model as lm_model
from nanorepro.nn.transformer import Block


class CharTokenizer:
    """Characters of a fixed alphabet, plus PAD (0) and EOS (1)."""

    PAD, EOS = 0, 1

    def __init__(self, alphabet: str):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet has repeated characters")
        self.alphabet = alphabet
        self.index = {c: i + 2 for i, c in enumerate(alphabet)}

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet) + 2

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the tokenizer's alphabet") from None

    def decode(self, ids) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i >= 2:
                out.append(self.alphabet[i - 2])
        return "".join(out)


class ByteTokenizer:
    """UTF-8 bytes (0-255) plus the hybrid LM's PAD and EOS (``nanorepro.lm.model``): any text fits."""

    PAD, EOS = lm_model.PAD, lm_model.EOS
    alphabet = None  # every character is encodable
    vocab_size = lm_model.HybridConfig.vocab_size

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        out = bytearray()
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i < 256:
                out.append(i)
        return out.decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face tokenizer behind the same four members: ids without added special tokens, decoding up to
    the first EOS; PAD is the tokenizer's pad token, else its EOS (padding is masked out either way)."""

    alphabet = None  # any text the tokenizer reads

    def __init__(self, tokenizer):
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no end-of-sequence token: a completion could never end")
        self.tokenizer = tokenizer
        self.EOS = int(tokenizer.eos_token_id)
        self.PAD = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else self.EOS
        self.vocab_size = len(tokenizer)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.EOS in ids:
            ids = ids[: ids.index(self.EOS)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)


@dataclass(frozen=True)
class TinyGPTConfig:
    vocab_size: int
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    max_len: int = 128


class TinyGPT(nn.Module):
    """A nanoGPT-style transformer with learned positions and a KV cache."""

    def __init__(self, cfg: TinyGPTConfig):
        super().__init__()
        self.config = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.heads) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor, caches: list | None = None, start: int = 0) -> torch.Tensor:
        T = ids.shape[1]
        if start + T > self.config.max_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds max_len {self.config.max_len}")
        x = self.tok(ids) + self.pos(torch.arange(start, start + T, device=ids.device))
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i])
        return self.head(self.ln_f(x))

    def start(self, ids: torch.Tensor):
        caches = [[] for _ in self.blocks]
        logits = self(ids, caches)
        return logits[:, -1], {"caches": caches, "length": ids.shape[1]}

    def advance(self, nxt: torch.Tensor, state: dict):
        logits = self(nxt[:, None], state["caches"], state["length"])
        state["length"] += 1
        return logits[:, -1], state


class HFPolicy(nn.Module):
    """A Hugging Face causal LM behind the policy protocol (a local model directory or config; nothing downloaded)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # transformers >= 5.2x names the KV cache "cache" (argument and output); earlier, "past_key_values"
        self.cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, use_cache=False).logits

    def start(self, ids: torch.Tensor):
        out = self.model(input_ids=ids, use_cache=True)
        return out.logits[:, -1], out[self.cache_name]

    def advance(self, nxt: torch.Tensor, state):
        out = self.model(input_ids=nxt[:, None], use_cache=True, **{self.cache_name: state})
        return out.logits[:, -1], out[self.cache_name]


class HybridPolicy(nn.Module):
    """nanorepro's hybrid LM (``nanorepro.lm.model.HybridLM``) behind the policy protocol."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)[0]

    def start(self, ids: torch.Tensor):
        cache = self.model.new_cache(ids.shape[0], ids.device, next(self.model.parameters()).dtype)
        return self.model(ids, cache)[0][:, -1], cache

    def advance(self, nxt: torch.Tensor, cache):
        return self.model(nxt[:, None], cache)[0][:, -1], cache


@torch.no_grad()
def sample(policy: nn.Module, prompts: torch.Tensor, max_new: int, generator: torch.Generator,
           temperature: float = 1.0, eos: int = CharTokenizer.EOS, pad: int = CharTokenizer.PAD) -> torch.Tensor:
    """Completions (B, max_new): sampled at ``temperature`` (0: greedy) until EOS, then PAD."""
    logits, state = policy.start(prompts)
    out = torch.full((prompts.shape[0], max_new), pad, dtype=torch.long)
    done = torch.zeros(prompts.shape[0], dtype=torch.bool)
    for t in range(max_new):
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            nxt = torch.multinomial(torch.softmax(logits.float() / temperature, -1), 1, generator=generator)[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        out[:, t] = nxt
        done |= nxt == eos
        if done.all() or t == max_new - 1:
            break
        logits, state = policy.advance(nxt, state)
    return out


def completion_mask(completions: torch.Tensor, eos: int = CharTokenizer.EOS) -> torch.Tensor:
    """1 for generated tokens up to and including the first EOS, 0 for the padding after it."""
    is_eos = (completions == eos).int()
    after = (torch.cumsum(is_eos, dim=1) - is_eos) > 0
    return (~after).float()


def completion_logits(policy: nn.Module, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    """Logits that predicted each completion token: (B, L, V), one forward over prompt + completion."""
    ids = torch.cat([prompts, completions], dim=1)
    logits = policy(ids[:, :-1])
    return logits[:, prompts.shape[1] - 1 :]


def token_logprobs(logits: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), -1).gather(-1, completions.unsqueeze(-1)).squeeze(-1)
