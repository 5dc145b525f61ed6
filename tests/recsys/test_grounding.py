import math

import numpy as np
import pytest
import torch

from nanorepro.recsys.grounding import (
    BPRConfig,
    GroundingConfig,
    bpr_item_embeddings,
    cooccurrence_pairs,
    ground,
    info_nce,
    lsa,
    neighbour_pairs,
    similarity_distillation,
    tfidf,
)


def test_tfidf_by_hand():
    x = tfidf(["a b", "a a"])
    idf_b = math.log(3 / 2) + 1  # df(a) = 2 -> idf 1; df(b) = 1
    row0 = torch.tensor([1.0, idf_b]) / math.hypot(1.0, idf_b)
    torch.testing.assert_close(x[0], row0)
    torch.testing.assert_close(x[1], torch.tensor([1.0, 0.0]))  # tf = 1 + log 2, then normalised


def test_lsa_keeps_the_geometry_of_low_rank_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=gen) @ torch.randn(3, 20, generator=gen)
    z = lsa(x, 3)
    torch.testing.assert_close(z @ z.T, x @ x.T, atol=1e-3, rtol=1e-3)


def test_losses_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cosines: matched 1, unmatched 0 -> CE = -log(e^{1/tau} / (e^{1/tau} + 1))
    tau = 0.5
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert float(info_nce(a, a, tau)) == pytest.approx(expected)
    assert float(similarity_distillation(a, a, tau, tau)) == pytest.approx(0.0, abs=1e-7)
    assert float(similarity_distillation(a, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), tau, tau)) > 0.1


def test_pairs():
    pairs = cooccurrence_pairs([np.array([4, 5, 6]), np.array([7])], window=2)
    assert sorted(map(tuple, pairs.tolist())) == [(4, 5), (4, 6), (5, 6)]
    nb = neighbour_pairs(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    assert nb.tolist() == [[0, 1], [1, 0], [2, 1]]


def test_grounding_pulls_cooccurring_items_together_and_bpr_learns_them():
    # 8 items, text says nothing (random features); items 0-3 and 4-7 are bought together
    rng = np.random.default_rng(0)
    sequences = [rng.permutation(4) + 4 * (u % 2) for u in range(60)]
    teacher = bpr_item_embeddings(sequences, 8, BPRConfig(dim=8, epochs=60, batch_size=64), seed=0)
    t = torch.nn.functional.normalize(teacher, dim=1)
    assert float((t[:4] @ t[:4].T).mean()) > float((t[:4] @ t[4:].T).mean()) + 0.3
    features = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    cfg = GroundingConfig(hidden=32, dim=8, steps=200, batch_size=32, views=("cooccurrence",))
    e, curve = ground(features, sequences, teacher, cfg, seed=0)
    within, across = float((e[:4] @ e[:4].T).mean()), float((e[:4] @ e[4:].T).mean())
    assert within > across + 0.3 and curve[-1] < curve[0]
    with pytest.raises(ValueError, match="unknown grounding view"):
        ground(features, sequences, None, GroundingConfig(views=("visual",)))
