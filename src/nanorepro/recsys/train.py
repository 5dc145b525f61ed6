"""Training with early stopping on validation, and full-ranking evaluation per task."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nanorepro.recsys.data import LEAVES, TASKS, Catalogue, Examples
from nanorepro.recsys.metrics import (
    category_coverage,
    intra_list_diversity,
    mask_history,
    ndcg_at,
    recall_at,
    share,
    target_ranks,
    top_k,
)
from nanorepro.recsys.models import Recommender, Vocabulary, encode_context


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    valid_examples: int = 1000   # validation subset scored after every epoch (early stopping)
    eval_batch: int = 256


def scores_in_batches(model: Recommender, tokens: torch.Tensor, items: torch.Tensor, batch: int,
                      **decode) -> torch.Tensor:
    model.eval()
    return torch.cat([model.scores(tokens[s:s + batch], items[s:s + batch], **decode)
                      for s in range(0, len(tokens), batch)])


def fit(model: Recommender, train: Examples, valid: Examples, vocab: Vocabulary, cfg: TrainConfig, seed: int,
        decode: dict | None = None, progress: Callable[[int, float], None] | None = None) -> list[dict]:
    """Adam on the model's loss; keeps the weights of the epoch with the best validation Recall@10."""
    decode = decode or {}
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tokens, items = encode_context(train, vocab, model.cfg)
    target = torch.as_tensor(np.asarray(train.target))
    sub = Examples(**{k: v[: cfg.valid_examples] for k, v in vars(valid).items()})
    v_tokens, v_items = encode_context(sub, vocab, model.cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, curve = -1.0, None, []
    for epoch in range(cfg.epochs):
        model.train()
        losses = []
        for batch in torch.randperm(len(target), generator=gen).split(cfg.batch_size):
            loss = model.loss(tokens[batch], items[batch], target[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        scores = mask_history(scores_in_batches(model, v_tokens, v_items, cfg.eval_batch, **decode), sub.history)
        recall = float(recall_at(target_ranks(scores, sub.target), 10).mean())
        curve.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "valid_recall10": recall})
        if progress:
            progress(epoch + 1, recall)
        if recall > best:
            best, best_state = recall, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return curve


def task_masks(examples: Examples, cat: Catalogue, longtail: np.ndarray) -> list[np.ndarray | None]:
    """Per example, the items that satisfy its instruction (None for JustForYou and Query)."""
    masks: list[np.ndarray | None] = []
    n_leaves = len(LEAVES)
    for task, argument, history in zip(examples.task, examples.argument, examples.history, strict=True):
        name = TASKS[task]
        if name == "Category":
            masks.append(cat.leaf == argument)
        elif name == "Season":
            masks.append(cat.season == argument)
        elif name == "Holiday":
            masks.append(cat.holiday == argument)
        elif name == "Longtail":
            masks.append(longtail)
        elif name == "Discover":
            top3 = np.argsort(-np.bincount(cat.leaf[history], minlength=n_leaves), kind="stable")[:3]
            masks.append(~np.isin(cat.leaf, top3))
        else:
            masks.append(None)
    return masks


def ranking_metrics(scores: torch.Tensor, examples: Examples, item_vectors: np.ndarray, item_category: np.ndarray,
                    longtail: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-example full-ranking metrics (history items removed) and the (N, 10) top lists."""
    scores = mask_history(scores, examples.history)
    ranks = target_ranks(scores, examples.target)
    top = top_k(scores, 10)
    valid_slots = torch.isfinite(scores.gather(1, torch.as_tensor(top))).numpy()
    per = {
        "recall10": recall_at(ranks, 10), "recall20": recall_at(ranks, 20), "ndcg10": ndcg_at(ranks, 10),
        "ild10": intra_list_diversity(top, item_vectors), "category_coverage10": category_coverage(top, item_category),
        "longtail_share10": share(top, longtail),
        "unfilled10": 1.0 - valid_slots.mean(1),  # top-10 slots the decoder left empty (score -inf)
    }
    return per, top


def evaluate(scores: torch.Tensor, examples: Examples, cat: Catalogue, longtail: np.ndarray,
             item_vectors: np.ndarray) -> dict:
    """Per-task and macro metrics, plus per-example values (for paired bootstrap)."""
    per, top = ranking_metrics(scores, examples, item_vectors, cat.leaf, longtail)
    masks = task_masks(examples, cat, longtail)
    per["compliance10"] = np.array([np.nan if m is None else m[t].mean() for m, t in zip(masks, top, strict=True)])
    task = np.asarray(examples.task)
    by_task = {name: {k: _mean(v[task == t]) for k, v in per.items()} for t, name in enumerate(TASKS)}
    macro = {k: float(np.mean([by_task[name][k] for name in TASKS if by_task[name][k] is not None]))
             for k in ("recall10", "recall20", "ndcg10", "ild10", "category_coverage10", "unfilled10")}
    return {"by_task": by_task, "macro": macro, "per_example": {k: per[k] for k in ("recall10", "recall20")}}


def _mean(values: np.ndarray) -> float | None:
    """Mean ignoring NaN (metrics that do not apply); None when nothing applies."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None
