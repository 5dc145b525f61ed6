"""One decoder-only recommender for SIGMA, its ablations and the baselines (SASRec, TIGER-lite).

Input, left-padded: ``[task] [instruction words] [history items] [BOS] [c_1] .. [c_L]``.
A history item takes one position; its embedding is the sum of its ID vector and its code
embeddings (a hybrid token folded into one position: our simplification).

Outputs, by ``scoring``:

* ``codes`` only (TIGER-lite, ``id_head=False``): the position before code l predicts c_l;
  items are reached by trie-constrained beam search over every level (the last level is
  the dedup digit, so a full code is one item): P(item) = prod_l P(c_l | ...).
* ``codes`` + ID (SIGMA, ``id_head=True``): after the prefix, the last position gives a
  query h; L_ID is a softmax of cos(h, v_i) / tau over the items that share the target's
  prefix (hard negatives); generation beams over prefixes and fuses (``fusion.fuse``).
  With zero prefix levels the bucket is the whole catalogue (the ID-only ablation).
* ``dot`` (SASRec): no codes, full softmax over h · v_i for every item.

Training loss: L = L_NTP (prefix next-token) + L_ID (or the full softmax for SASRec).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.nn.transformer import Block, causal_padding_mask
from nanorepro.recsys.data import TASKS, Examples
from nanorepro.recsys.fusion import fuse

PAD, BOS, UNK = 0, 1, 2
TASK0 = 3  # task tokens follow, then words


@dataclass
class ModelConfig:
    d_model: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.1
    max_history: int = 20
    max_words: int = 6
    use_task: bool = True       # task token and instruction words in the input
    scoring: str = "codes"      # "codes" (generative, with or without the ID head) | "dot" (SASRec)
    id_head: bool = True
    id_tau: float = 0.1


class Vocabulary:
    """Instruction words -> token ids (after the specials and the task tokens); unseen words -> UNK."""

    def __init__(self, instructions: list[str]):
        words = sorted({w for text in instructions for w in text.split()})
        self.index = {w: TASK0 + len(TASKS) + n for n, w in enumerate(words)}

    def __len__(self) -> int:
        return TASK0 + len(TASKS) + len(self.index)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, UNK) for w in text.split()]


@dataclass
class Trie:
    """Valid code paths: ``child[l][prefix, code]`` is the prefix id after code l, or -1."""

    codes: torch.Tensor             # (I, L)
    child: list[torch.Tensor]       # L tables (prefixes at level l, vocab_l)
    item_bucket: torch.Tensor       # (I,) prefix id after all L levels (an item id when codes are unique)
    vocab: list[int]

    @classmethod
    def build(cls, codes: torch.Tensor) -> Trie:
        codes = codes.long()
        n_items, levels = codes.shape
        vocab = [int(codes[:, lvl].max()) + 1 for lvl in range(levels)]
        prefix = torch.zeros(n_items, dtype=torch.long)
        child = []
        for lvl in range(levels):
            pairs = prefix * vocab[lvl] + codes[:, lvl]
            uniq, nxt = torch.unique(pairs, return_inverse=True)
            table = torch.full((int(prefix.max()) + 1, vocab[lvl]), -1, dtype=torch.long)
            table.view(-1)[uniq] = torch.arange(len(uniq))
            child.append(table)
            prefix = nxt
        return cls(codes, child, prefix, vocab)

    @property
    def levels(self) -> int:
        return self.codes.shape[1]

    @property
    def n_buckets(self) -> int:
        return int(self.item_bucket.max()) + 1 if self.levels else 1


def encode_context(examples: Examples, vocab: Vocabulary, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, items) (N, T): left-padded context; ``items`` is the item id at history positions, else -1."""
    T = 1 + cfg.max_words + cfg.max_history
    tokens = torch.full((len(examples), T), PAD, dtype=torch.long)
    items = torch.full((len(examples), T), -1, dtype=torch.long)
    for n in range(len(examples)):
        history = examples.history[n][-cfg.max_history:]
        head = [TASK0 + examples.task[n], *vocab.encode(examples.instruction[n])[: cfg.max_words]] if cfg.use_task \
            else []
        start = T - len(head) - len(history)
        tokens[n, start:start + len(head)] = torch.tensor(head, dtype=torch.long)
        items[n, T - len(history):] = torch.as_tensor(history)
        tokens[n, T - len(history):] = UNK  # marks "not padding"; the embedding comes from the item
    return tokens, items


class Recommender(nn.Module):
    def __init__(self, cfg: ModelConfig, n_tokens: int, trie: Trie, item_init: torch.Tensor | None = None):
        super().__init__()
        self.cfg, self.trie = cfg, trie
        n_items, d = trie.codes.shape[0], cfg.d_model
        self.tok = nn.Embedding(n_tokens, d)
        self.pos = nn.Embedding(1 + cfg.max_words + cfg.max_history + 1 + trie.levels, d)
        if item_init is not None and item_init.shape != (n_items, d):
            raise ValueError(f"item_init must be ({n_items}, {d}), got {tuple(item_init.shape)}")
        # ID vectors at GPT-2 scale (std 0.02 per entry), optionally pointing along the grounded vectors
        init = torch.randn(n_items, d) if item_init is None else item_init.float()
        self.item = nn.Parameter(F.normalize(init, dim=1) * 0.02 * d**0.5)
        self.code = nn.ModuleList(nn.Embedding(v, d) for v in trie.vocab)
        self.code_head = nn.ModuleList(nn.Linear(d, v) for v in trie.vocab)
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(d)
        self.query = nn.Linear(d, d)
        for emb in (self.tok, self.pos, *self.code):
            nn.init.normal_(emb.weight, std=0.02)

    def item_embedding(self, items: torch.Tensor) -> torch.Tensor:
        e = self.item[items]
        for lvl, emb in enumerate(self.code):
            e = e + emb(self.trie.codes[items, lvl])
        return e

    def hidden(self, tokens: torch.Tensor, items: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """States (N, 1 + codes, d) at [BOS, c_1 .. c_m] after the context."""
        n = tokens.shape[0]
        is_item = items >= 0
        x = torch.where(is_item[..., None], self.item_embedding(items.clamp_min(0)), self.tok(tokens))
        tail = [self.tok(torch.full((n, 1), BOS, dtype=torch.long))]
        tail += [self.code[lvl](codes[:, lvl])[:, None] for lvl in range(codes.shape[1])]
        x = torch.cat([x, *tail], 1)
        x = x + self.pos(torch.arange(x.shape[1]))
        padding = torch.cat([(tokens == PAD) & ~is_item, torch.zeros(n, len(tail), dtype=torch.bool)], 1)
        allowed = causal_padding_mask(padding)
        for block in self.blocks:
            x = block(x, allowed=allowed)
        return self.ln_f(x[:, tokens.shape[1]:])

    def id_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(N, I): h · v_i for SASRec, cos(q(h), v_i) / tau for the ID head."""
        if self.cfg.scoring == "dot":
            return h @ self.item.T
        return F.normalize(self.query(h), dim=-1) @ F.normalize(self.item, dim=-1).T / self.cfg.id_tau

    def loss(self, tokens: torch.Tensor, items: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        codes = self.trie.codes[target]
        h = self.hidden(tokens, items, codes)
        loss = h.new_zeros(())
        for lvl in range(self.trie.levels):  # L_NTP
            loss = loss + F.cross_entropy(self.code_head[lvl](h[:, lvl]), codes[:, lvl])
        if self.cfg.scoring == "dot" or self.cfg.id_head:
            logits = self.id_logits(h[:, -1])
            if self.cfg.scoring != "dot" and self.trie.levels:  # L_ID: negatives share the target's prefix
                same = self.trie.item_bucket[None, :] == self.trie.item_bucket[target][:, None]
                logits = logits.masked_fill(~same, -torch.inf)
            loss = loss + F.cross_entropy(logits, target)
        return loss

    @torch.no_grad()
    def beam_search(self, tokens: torch.Tensor, items: torch.Tensor, beams: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Trie-constrained beams over all code levels: (log P (N, B), codes (N, B, L), bucket (N, B)).

        Fewer than ``beams`` valid paths leave beams with log P = -inf.
        """
        n, L = tokens.shape[0], self.trie.levels
        logp = torch.zeros(n, 1)
        codes = torch.zeros(n, 1, 0, dtype=torch.long)
        prefix = torch.zeros(n, 1, dtype=torch.long)
        for lvl in range(L):
            b = logp.shape[1]
            h = self.hidden(tokens.repeat_interleave(b, 0), items.repeat_interleave(b, 0), codes.reshape(n * b, lvl))
            step = self.code_head[lvl](h[:, lvl]).log_softmax(-1).view(n, b, -1)
            nxt = self.trie.child[lvl][prefix.clamp_min(0)]                     # (n, b, V)
            valid = (nxt >= 0) & (prefix >= 0)[..., None]
            total = (logp[..., None] + step).masked_fill(~valid, -torch.inf).view(n, -1)
            k = min(beams, total.shape[1])
            logp, flat = total.topk(k, dim=1)
            parent, code = flat // step.shape[-1], flat % step.shape[-1]
            codes = torch.cat([codes.gather(1, parent[..., None].expand(-1, -1, lvl)), code[..., None]], 2)
            prefix = nxt.view(n, -1).gather(1, flat).masked_fill(torch.isinf(logp), -1)
        return logp, codes, prefix

    @torch.no_grad()
    def scores(self, tokens: torch.Tensor, items: torch.Tensor, beams: int = 5, form: str = "std",
               tau: float | None = None) -> torch.Tensor:
        """log-scores (N, I) for full ranking; -inf for items the decoder cannot emit."""
        if self.cfg.scoring == "dot" or self.trie.levels == 0:
            h = self.hidden(tokens, items, torch.zeros(tokens.shape[0], 0, dtype=torch.long))[:, -1]
            return self.id_logits(h).log_softmax(-1)
        logp, codes, bucket = self.beam_search(tokens, items, beams)
        n, b = logp.shape
        if not self.cfg.id_head:  # every full code is one item
            out = torch.full((n, self.trie.codes.shape[0]), -torch.inf)
            item_of_bucket = torch.empty(self.trie.n_buckets, dtype=torch.long)
            item_of_bucket[self.trie.item_bucket] = torch.arange(len(self.trie.item_bucket))
            ok = bucket >= 0
            out[torch.arange(n)[:, None].expand(-1, b)[ok], item_of_bucket[bucket[ok]]] = logp[ok]
            return out
        h = self.hidden(tokens.repeat_interleave(b, 0), items.repeat_interleave(b, 0),
                        codes.view(n * b, -1).clamp_min(0))[:, -1]
        cos = (F.normalize(self.query(h), dim=-1) @ F.normalize(self.item, dim=-1).T).view(n, b, -1)
        in_beam = self.trie.item_bucket[None, None, :] == bucket[..., None]           # (n, b, I)
        cosine = (cos * in_beam).sum(1)                                                # each item's own beam
        return fuse(logp, bucket, self.trie.item_bucket, cosine, tau or self.cfg.id_tau, form)
