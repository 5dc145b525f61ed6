"""Full-ranking recommendation metrics (no sampled negatives) and paired bootstrap intervals.

Every item of the catalogue is ranked; items already in the user's history are removed
before ranking (the usual leave-one-out protocol). With one held-out target per example,
Recall@k equals HitRate@k and NDCG@k = 1 / log2(rank + 2) when the target ranks within k
(rank counted from 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def mask_history(scores: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Scores (N, I) with every history item set to -inf (a copy)."""
    scores = scores.clone()
    rows = np.concatenate([np.full(len(h), n) for n, h in enumerate(histories)]) if len(histories) else []
    cols = np.concatenate(list(histories)) if len(histories) else []
    if len(rows):
        scores[torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)] = -torch.inf
    return scores


def target_ranks(scores: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
    """0-based rank of each target among all items (ties count against the target)."""
    target = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    target_score = scores.gather(1, target[:, None])
    return (scores >= target_score).sum(1).sub(1).numpy()


def recall_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-example hit (1.0 or 0.0) of the single target within the top k."""
    return (ranks < k).astype(float)


def ndcg_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-example NDCG@k for one relevant item: 1 / log2(rank + 2) inside the top k, else 0."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def top_k(scores: torch.Tensor, k: int) -> np.ndarray:
    """(N, k) item ids, best first."""
    return scores.topk(k, dim=1).indices.numpy()


def intra_list_diversity(top: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """ILD per list: mean pairwise cosine distance 1 - cos(v_i, v_j) over the list's item pairs."""
    v = item_vectors / np.maximum(np.linalg.norm(item_vectors, axis=1, keepdims=True), 1e-12)
    lists = v[top]                                  # (N, k, d)
    cos = np.einsum("nid,njd->nij", lists, lists)
    k = top.shape[1]
    off_diagonal = ~np.eye(k, dtype=bool)
    return (1.0 - cos[:, off_diagonal]).mean(1)


def category_coverage(top: np.ndarray, item_category: np.ndarray) -> np.ndarray:
    """Distinct categories in each list divided by the list length."""
    cats = np.sort(item_category[top], axis=1)
    return (1 + (np.diff(cats, axis=1) != 0).sum(1)) / top.shape[1]


def share(top: np.ndarray, item_mask: np.ndarray) -> np.ndarray:
    """Fraction of each list's items inside ``item_mask`` (long-tail share, instruction compliance)."""
    return item_mask[top].mean(1)
