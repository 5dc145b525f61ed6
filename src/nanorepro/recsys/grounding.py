"""Grounding item text in a space that also holds collaborative relations (SIGMA's unified latent space).

Text features: TF-IDF (sublinear tf, smoothed idf, rows L2-normalised) then truncated SVD
(LSA), our laptop stand-in for the paper's LLM text encoder. An MLP maps them to grounded
vectors e_i, trained on in-batch pairs (i, i') from several views with

    L_CL = -(1/2B) sum_i [log P_text(i'|i) + log P_text(i|i')],  P_text(j|i) = softmax_j(cos(e_i, e_j) / tau)
    L_KD = (1/B) sum_i sum_j P_ID(j|i) log(P_ID(j|i) / P_text(j|i))

where P_ID uses the cosines of collaborative ID embeddings (BPR matrix factorisation here),
so collaborative signal enters as a *teacher*, not as an input (the summaries' form; our
reconstruction of the views and weights, all configurable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.nn.mlp import mlp


def tfidf(texts: Sequence[str]) -> torch.Tensor:
    """(I, V) TF-IDF rows, L2-normalised: tf = 1 + log(count), idf = log((1 + I) / (1 + df)) + 1."""
    vocab: dict[str, int] = {}
    rows, cols, counts = [], [], []
    for r, text in enumerate(texts):
        words, c = np.unique(text.split(), return_counts=True)
        for w, n in zip(words, c, strict=True):
            rows.append(r)
            cols.append(vocab.setdefault(w, len(vocab)))
            counts.append(n)
    x = torch.zeros(len(texts), max(len(vocab), 1))
    if rows:
        x[torch.tensor(rows), torch.tensor(cols)] = 1.0 + torch.log(torch.tensor(counts, dtype=torch.float32))
    df = (x > 0).sum(0).float()
    x = x * (torch.log((1.0 + len(texts)) / (1.0 + df)) + 1.0)
    return F.normalize(x, dim=1)


def lsa(x: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """Truncated SVD features U_k S_k (randomised, deterministic per seed)."""
    dim = min(dim, *x.shape)
    torch.manual_seed(seed)
    u, s, _ = torch.svd_lowrank(x, q=dim, niter=6)
    return u * s


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """L_CL: symmetric in-batch contrastive loss between matched rows of a and b."""
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau
    labels = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def similarity_distillation(student: torch.Tensor, teacher: torch.Tensor, tau: float,
                            teacher_tau: float) -> torch.Tensor:
    """L_KD: KL(P_ID || P_text) between in-batch cosine-softmax distributions, mean over anchors."""
    log_p_text = (F.normalize(student, dim=1) @ F.normalize(student, dim=1).T / tau).log_softmax(1)
    log_p_id = (F.normalize(teacher, dim=1) @ F.normalize(teacher, dim=1).T / teacher_tau).log_softmax(1)
    return (log_p_id.exp() * (log_p_id - log_p_text)).sum(1).mean()


def cooccurrence_pairs(sequences: Sequence[np.ndarray], window: int = 1) -> np.ndarray:
    """(P, 2) item pairs at most ``window`` steps apart in a sequence (both orders are sampled later)."""
    pairs = [np.stack([s[:-d], s[d:]], 1) for s in sequences for d in range(1, window + 1) if len(s) > d]
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def neighbour_pairs(features: torch.Tensor, k: int = 1, chunk: int = 2048) -> np.ndarray:
    """(I*k, 2): each item with its k nearest other items by cosine (the semantic view)."""
    x = F.normalize(features, dim=1)
    out = []
    for start in range(0, len(x), chunk):
        sim = x[start:start + chunk] @ x.T
        sim[torch.arange(len(sim)), torch.arange(start, start + len(sim))] = -torch.inf
        nn_idx = sim.topk(k, dim=1).indices
        out.append(torch.stack([torch.arange(start, start + len(sim)).repeat_interleave(k), nn_idx.reshape(-1)], 1))
    return torch.cat(out).numpy()


@dataclass
class BPRConfig:
    dim: int = 64
    epochs: int = 20
    batch_size: int = 1024
    lr: float = 5e-3
    weight_decay: float = 1e-5


def bpr_item_embeddings(sequences: Sequence[np.ndarray], n_items: int, cfg: BPRConfig | None = None,
                        seed: int = 0) -> torch.Tensor:
    """Collaborative ID embeddings by BPR matrix factorisation: -log sigmoid(u·i - u·j), j uniform."""
    cfg = cfg or BPRConfig()
    gen = torch.Generator().manual_seed(seed)
    users = torch.cat([torch.full((len(s),), u) for u, s in enumerate(sequences)])
    items = torch.cat([torch.as_tensor(s) for s in sequences])
    user_emb = nn.Parameter(0.1 * torch.randn(len(sequences), cfg.dim, generator=gen))
    item_emb = nn.Parameter(0.1 * torch.randn(n_items, cfg.dim, generator=gen))
    opt = torch.optim.Adam([user_emb, item_emb], lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.epochs):
        for batch in torch.randperm(len(items), generator=gen).split(cfg.batch_size):
            u, i = user_emb[users[batch]], item_emb[items[batch]]
            j = item_emb[torch.randint(n_items, (len(batch),), generator=gen)]
            loss = -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return item_emb.detach()


@dataclass
class GroundingConfig:
    text_dim: int = 128      # LSA dimensions
    hidden: int = 256
    dim: int = 64            # grounded vector size
    tau: float = 0.1
    teacher_tau: float = 0.1
    kd_weight: float = 1.0   # 0 turns distillation off
    views: tuple[str, ...] = ("semantic", "cooccurrence")
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3


def ground(features: torch.Tensor, sequences: Sequence[np.ndarray], teacher: torch.Tensor | None,
           cfg: GroundingConfig | None = None, seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Grounded item vectors (I, dim) and the loss curve; ``teacher=None`` trains L_CL only."""
    cfg = cfg or GroundingConfig()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    views = {"semantic": lambda: neighbour_pairs(features), "cooccurrence": lambda: cooccurrence_pairs(sequences)}
    unknown = set(cfg.views) - set(views)
    if unknown:
        raise ValueError(f"unknown grounding view(s) {sorted(unknown)} (choose from {sorted(views)})")
    pairs = torch.as_tensor(np.concatenate([views[v]() for v in cfg.views]))
    encoder = mlp(features.shape[1], cfg.hidden, cfg.dim, layers=2)
    opt = torch.optim.Adam(encoder.parameters(), lr=cfg.lr)
    curve = []
    for _ in range(cfg.steps):
        batch = pairs[torch.randint(len(pairs), (cfg.batch_size,), generator=gen)]
        a, b = encoder(features[batch[:, 0]]), encoder(features[batch[:, 1]])
        loss = info_nce(a, b, cfg.tau)
        if teacher is not None and cfg.kd_weight > 0:
            loss = loss + cfg.kd_weight * similarity_distillation(a, teacher[batch[:, 0]], cfg.tau, cfg.teacher_tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(loss.item())
    with torch.no_grad():
        return F.normalize(encoder(features), dim=1), curve
