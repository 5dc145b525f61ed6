"""Experiment ``sigma_movielens``: SIGMA on MovieLens-100k (JustForYou) against popularity and SASRec.

Real data, the issue's non-regression check: MovieLens-100k as RecBole ships it inside the
``recbole`` wheel (943 users, 1,682 movies, 100,000 ratings; every rating is an
interaction), read with our atomic-file loader without importing RecBole. Leave-one-out by
timestamp: each user's last movie is the test target, the one before it validation (early
stopping), every earlier position a training example. Full ranking over all movies, the
user's history removed. Item text = title, year and genres (LSA features), grounded with BPR
embeddings of the training interactions as the teacher; one-level RQ-KMeans prefix + one ID
token per movie, decoded with APF. SASRec and SIGMA share the sizes and training settings
of the synthetic experiment ``sigma``; nothing was tuned on this data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nanorepro.common.experiment import ClaimCheck, Experiment, Metrics, Profile, RunContext, Table
from nanorepro.common.stats import paired_bootstrap
from nanorepro.recsys.data import leave_out, load_atomic, longtail_mask, recbole_example_files
from nanorepro.recsys.grounding import BPRConfig, GroundingConfig, bpr_item_embeddings, ground, lsa, tfidf
from nanorepro.recsys.models import ModelConfig, Recommender, Trie, Vocabulary, encode_context
from nanorepro.recsys.semantic_ids import residual_kmeans
from nanorepro.recsys.train import TrainConfig, fit, ranking_metrics, scores_in_batches

LABELS = {"pop": "Popularity", "sasrec": "SASRec", "sigma": "SIGMA (grounded prefix + ID, APF)",
          "sigma_top1": "SIGMA, top-1 prefix (no fusion)", "sigma_product": "SIGMA, product fusion (s = 1)"}
METRICS = ("recall10", "recall20", "ndcg10", "ild10", "category_coverage10", "longtail_share10", "unfilled10")


@dataclass(frozen=True)
class MovieLensExperimentConfig:
    max_users: int = 0         # 0 = all 943; fewer (in file order) for the smoke profile
    d_model: int = 64
    bpr_epochs: int = 20
    ground_steps: int = 1500
    prefix_codes: int = 32
    epochs: int = 6
    batch_size: int = 256
    lr: float = 1e-3
    beams: int = 5
    id_tau: float = 0.1
    max_history: int = 20
    valid_examples: int = 1000


def first_genres(genres: list[str]) -> np.ndarray:
    """Category id per movie: its first listed genre ("" -> its own category)."""
    names = [g.split()[0] if g.split() else "" for g in genres]
    index = {name: n for n, name in enumerate(sorted(set(names)))}
    return np.array([index[name] for name in names], dtype=np.int64)


def movielens_run(cfg: MovieLensExperimentConfig, ctx: RunContext) -> Metrics:
    state = ctx.load_checkpoint() or {}
    trained = ("sasrec", "sigma")
    bar = ctx.task(f"sigma_movielens seed {ctx.seed}", total=2 + len(trained) * cfg.epochs)
    torch.manual_seed(ctx.seed)
    data = load_atomic(*recbole_example_files("ml-100k"))
    sequences = data.sequences[: cfg.max_users or None]
    n_items = len(data.item_ids)
    train, (valid, test) = leave_out(sequences, 2)
    train_sequences = [s[:-2] if len(s) >= 4 else s for s in sequences]
    counts = np.bincount(np.concatenate(train_sequences), minlength=n_items)
    longtail = longtail_mask(counts, 0.8)
    genre = first_genres(data.item_fields["class"])
    text = lsa(tfidf(data.item_text), cfg.d_model, seed=ctx.seed)
    text_unit = torch.nn.functional.normalize(text, dim=1)
    bar.advance(1)
    if "grounded" in state:
        grounded = state["grounded"]
    else:
        teacher = bpr_item_embeddings(train_sequences, n_items, BPRConfig(dim=cfg.d_model, epochs=cfg.bpr_epochs),
                                      seed=ctx.seed)
        grounded, _ = ground(text, train_sequences, teacher, GroundingConfig(dim=cfg.d_model, steps=cfg.ground_steps),
                             seed=ctx.seed)
        state["grounded"] = grounded
        ctx.save_checkpoint(state)
    bar.advance(1)

    prefix = residual_kmeans(grounded, (cfg.prefix_codes,), seed=ctx.seed)
    no_codes = torch.zeros(n_items, 0, dtype=torch.long)
    apf = {"beams": cfg.beams, "form": "std"}
    variants = {  # name: (codes, model config, ID init, decoding)
        "sasrec": (no_codes, ModelConfig(d_model=cfg.d_model, scoring="dot", use_task=False,
                                         max_history=cfg.max_history), None, {}),
        "sigma": (prefix.codes, ModelConfig(d_model=cfg.d_model, id_tau=cfg.id_tau, max_history=cfg.max_history),
                  grounded, apf),
    }
    decodings = {"sigma_top1": {"beams": 1, "form": "constant"},
                 "sigma_product": {"beams": cfg.beams, "form": "constant"}}
    vocab = Vocabulary(train.instruction)
    item_vectors = text_unit.numpy()
    results = state.setdefault("results", {})
    per_example = state.setdefault("per_example", {})
    curves = state.setdefault("curves", {})
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, valid_examples=cfg.valid_examples)

    def record(name: str, scores: torch.Tensor) -> None:
        per, _ = ranking_metrics(scores, test, item_vectors, genre, longtail)
        results[name] = {k: float(per[k].mean()) for k in METRICS}
        per_example[name] = {k: torch.as_tensor(per[k]) for k in ("recall10", "ndcg10")}

    for name, (codes, mcfg, init, decode) in variants.items():
        if name in results:
            bar.advance(cfg.epochs)
            continue
        model = Recommender(mcfg, len(vocab), Trie.build(codes), init)
        curves[name] = fit(model, train, valid, vocab, tcfg, seed=ctx.seed, decode=decode,
                           progress=lambda _e, _r: bar.advance(1))
        tokens, items = encode_context(test, vocab, mcfg)
        for out, dec in [(name, decode)] + (list(decodings.items()) if name == "sigma" else []):
            record(out, scores_in_batches(model, tokens, items, 256, **dec))
        ctx.save_checkpoint(state)
    record("pop", torch.as_tensor(counts, dtype=torch.float).log1p().expand(len(test), -1))
    bar.finish()
    ci = {f"{a}-{b}": list(paired_bootstrap(per_example[a]["ndcg10"].numpy(), per_example[b]["ndcg10"].numpy(),
                                            seed=ctx.seed))
          for a, b in (("sigma", "sasrec"), ("sigma", "pop"))}
    return {
        "results": results, "curves": curves, "bootstrap_ndcg10": ci,
        "codes": {"prefix_usage": prefix.usage(), "prefix_error": prefix.errors},
        "sizes": {"items": n_items, "users": len(sequences), "train": len(train), "test": len(test)},
    }


# --------------------------------------------------------------------------- claim checks (fixed before the run)

def _mean(runs: list[Metrics], variant: str, key: str) -> float:
    return float(np.mean([r["results"][variant][key] for r in runs]))


def _ratio(runs: list[Metrics], a: str, b: str, key: str) -> float | None:
    den = _mean(runs, b, key)
    return _mean(runs, a, key) / den if den else None


MOVIELENS_CHECKS = (
    ClaimCheck("M1", "SIGMA / SASRec, NDCG@10 on MovieLens-100k (non-regression)",
               lambda r: _ratio(r, "sigma", "sasrec", "ndcg10"), ">=", 0.9),
    ClaimCheck("M2", "SIGMA / popularity, NDCG@10", lambda r: _ratio(r, "sigma", "pop", "ndcg10"), ">=", 1.0),
    ClaimCheck("M3", "SIGMA top-10 slots the decoder leaves empty (no valid item)",
               lambda r: _mean(r, "sigma", "unfilled10"), "<=", 0.0),
    ClaimCheck("R1", "SIGMA / SASRec, Recall@10", lambda r: _ratio(r, "sigma", "sasrec", "recall10")),
    ClaimCheck("R2", "SASRec / popularity, NDCG@10", lambda r: _ratio(r, "sasrec", "pop", "ndcg10")),
    ClaimCheck("R3", "APF / top-1 prefix, NDCG@10", lambda r: _ratio(r, "sigma", "sigma_top1", "ndcg10")),
    ClaimCheck("R4", "APF / top-1 prefix, genre coverage@10",
               lambda r: _ratio(r, "sigma", "sigma_top1", "category_coverage10")),
)


def movielens_tables(runs: list[Metrics]) -> list[Table]:
    names = [n for n in LABELS if n in runs[0]["results"]]
    headers = ["Recall@10", "Recall@20", "NDCG@10", "ILD@10", "genre coverage@10", "long-tail share@10",
               "empty slots@10"]
    overall = Table(f"MovieLens-100k, leave-one-out, full ranking over {runs[0]['sizes']['items']} movies, "
                    f"{runs[0]['sizes']['test']} test users, mean of {len(runs)} seeds",
                    ["model", *headers],
                    [[LABELS[n], *(f"{_mean(runs, n, k):.4f}" for k in METRICS)] for n in names])
    ci_rows = [[pair.replace("-", " − "), str(seed), f"{r['bootstrap_ndcg10'][pair][0]:+.4f}",
                f"[{r['bootstrap_ndcg10'][pair][1]:+.4f}, {r['bootstrap_ndcg10'][pair][2]:+.4f}]"]
               for pair in runs[0]["bootstrap_ndcg10"] for seed, r in enumerate(runs)]
    ci = Table("Paired bootstrap of NDCG@10 differences over test users (1,000 resamples, 95%)",
               ["pair", "seed", "mean difference", "95% interval"], ci_rows)
    return [overall, ci]


def movielens_plot(runs: list[Metrics]) -> dict:
    import matplotlib.pyplot as plt

    names = [n for n in LABELS if n in runs[0]["results"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(3)
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        axes[0].bar(x + k * width, [_mean(runs, name, m) for m in ("recall10", "recall20", "ndcg10")], width,
                    label=LABELS[name])
    axes[0].set_xticks(x + 0.4, ["Recall@10", "Recall@20", "NDCG@10"])
    axes[0].set_title(f"MovieLens-100k test users, mean of {len(runs)} seeds")
    axes[0].legend(fontsize=7)
    for name in runs[0]["curves"]:
        for seed, r in enumerate(runs):
            curve = r["curves"][name]
            axes[1].plot([c["epoch"] for c in curve], [c["valid_recall10"] for c in curve],
                         color="C0" if name == "sasrec" else "C2", alpha=0.7,
                         label=LABELS[name] if seed == 0 else None)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation Recall@10")
    axes[1].set_title("Training (early stopping keeps the best epoch)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return {"movielens": fig}


EXPERIMENT = Experiment(
    name="sigma_movielens",
    system="sigma",
    summary="SIGMA on MovieLens-100k (shipped in the recbole wheel), JustForYou, vs popularity and SASRec",
    profiles={
        "smoke": Profile(MovieLensExperimentConfig(max_users=60, bpr_epochs=2, ground_steps=20, prefix_codes=8,
                                                   epochs=1, beams=3, valid_examples=60), seeds=1),
        "quick": Profile(MovieLensExperimentConfig(epochs=3), seeds=1),
        "full": Profile(MovieLensExperimentConfig(), seeds=3),
    },
    # one thread, as `sigma` (benchmarks/bench_recsys.py: `--threads 2` is 1.5x faster for a lone seed)
    run=movielens_run, checks=MOVIELENS_CHECKS, plot=movielens_plot, tables=movielens_tables, threads=1,
    device="cpu",
)
