"""SIGMA on your own interactions (RecBole atomic files):

    nanorepro recsys train --inter my.inter --item my.item --out model.safetensors
    nanorepro recsys recommend --model model.safetensors --inter my.inter --user 196 --k 10

Each user's last interaction is held out for early stopping; every earlier one is a
training example ("recommend for me", the JustForYou task). Item text (token and
token_seq fields of ``.item``) is grounded with BPR embeddings of the interactions as the
teacher; without ``.item`` the BPR embeddings themselves are the features. The model file
is a nanorepro checkpoint (safetensors; nothing is unpickled).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.recsys.data import DEFAULT_INSTRUCTION, TASKS, Examples, leave_out, load_atomic
from nanorepro.recsys.grounding import BPRConfig, GroundingConfig, bpr_item_embeddings, ground, lsa, tfidf
from nanorepro.recsys.metrics import mask_history
from nanorepro.recsys.models import ModelConfig, Recommender, Trie, Vocabulary, encode_context
from nanorepro.recsys.semantic_ids import residual_kmeans
from nanorepro.recsys.train import TrainConfig, fit

MODEL_FORMAT = "nanorepro.recsys.model/1"


@dataclass
class RecsysConfig:
    d_model: int = 64
    prefix_codes: int = 32
    bpr_epochs: int = 20
    ground_steps: int = 1500
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    beams: int = 5
    max_history: int = 20


def _model(state: dict) -> tuple[Recommender, Vocabulary]:
    cfg = RecsysConfig(**state["config"])
    vocab = Vocabulary([" ".join(state["words"])])
    mcfg = ModelConfig(d_model=cfg.d_model, max_history=cfg.max_history)
    model = Recommender(mcfg, len(vocab), Trie.build(state["codes"]))
    model.load_state_dict(state["weights"])
    return model.eval(), vocab


def train(inter: Path, item: Path | None, out: Path, cfg: RecsysConfig, seed: int, board) -> dict:
    data = load_atomic(inter, item)
    n_items = len(data.item_ids)
    if n_items < 2 * cfg.prefix_codes:
        raise UserError(f"{inter} has {n_items} items: need at least {2 * cfg.prefix_codes} for "
                        f"{cfg.prefix_codes} prefix codes (lower --set prefix_codes=...)")
    train_examples, (valid,) = leave_out(data.sequences, 1)
    if len(valid) == 0:
        raise UserError(f"{inter}: no user has 3 or more interactions, so nothing can be held out")
    bar = board.task("recsys train", total=3 + cfg.epochs)
    train_sequences = [s[:-1] if len(s) >= 3 else s for s in data.sequences]
    teacher = bpr_item_embeddings(train_sequences, n_items, BPRConfig(dim=cfg.d_model, epochs=cfg.bpr_epochs), seed)
    bar.advance(1)
    has_text = any(data.item_text)
    features = lsa(tfidf(data.item_text), cfg.d_model, seed) if has_text else teacher
    grounded, _ = ground(features, train_sequences, teacher if has_text else None,
                         GroundingConfig(dim=cfg.d_model, steps=cfg.ground_steps), seed)
    bar.advance(1)
    prefix = residual_kmeans(grounded, (cfg.prefix_codes,), seed=seed)
    vocab = Vocabulary(train_examples.instruction)
    model = Recommender(ModelConfig(d_model=cfg.d_model, max_history=cfg.max_history), len(vocab),
                        Trie.build(prefix.codes), grounded)
    bar.advance(1)
    curve = fit(model, train_examples, valid, vocab, TrainConfig(cfg.epochs, cfg.batch_size, cfg.lr), seed,
                decode={"beams": cfg.beams}, progress=lambda _e, _r: bar.advance(1))
    save_checkpoint(out, {
        "format": MODEL_FORMAT, "config": dataclasses.asdict(cfg), "weights": model.state_dict(),
        "codes": prefix.codes, "item_ids": data.item_ids, "item_text": data.item_text,
        "words": sorted(vocab.index), "curve": curve,
    })
    bar.finish()
    best = max(c["valid_recall10"] for c in curve)
    return {"model": str(out), "items": n_items, "users": len(data.user_ids), "train": len(train_examples),
            "valid_recall10": best, "text": has_text}


def recommend(model_path: Path, inter: Path, user: str, k: int = 10, task: str = "JustForYou",
              instruction: str = DEFAULT_INSTRUCTION) -> list[tuple[str, str, float]]:
    """Top-k (item id, item text, log-probability) for ``user``; their history items are excluded."""
    state = load_checkpoint(model_path)
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise UserError(f"{model_path} is not a nanorepro recsys model (format {MODEL_FORMAT})")
    if task not in TASKS:
        raise UserError(f"unknown task '{task}' (choose from {', '.join(TASKS)})")
    data = load_atomic(inter)
    if user not in data.user_ids:
        raise UserError(f"user '{user}' has no interactions in {inter}")
    index = {item: n for n, item in enumerate(state["item_ids"])}
    raw = data.sequences[data.user_ids.index(user)]
    history = np.array([index[data.item_ids[i]] for i in raw if data.item_ids[i] in index], dtype=np.int64)
    model, vocab = _model(state)
    query = Examples()
    query.append(0, history, TASKS.index(task), -1, instruction, 0, 0)
    tokens, items = encode_context(query, vocab, model.cfg)
    cfg = RecsysConfig(**state["config"])
    scores = mask_history(model.scores(tokens, items, beams=cfg.beams), query.history)[0]
    top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum())))
    return [(state["item_ids"][i], state["item_text"][i], float(s)) for s, i in zip(top.values, top.indices,
                                                                                     strict=True)]
