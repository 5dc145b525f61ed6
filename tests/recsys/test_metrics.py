import numpy as np
import pytest
import torch

from nanorepro.common.stats import paired_bootstrap
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


def test_ranks_recall_and_ndcg_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.8, 0.1, 0.2, 0.7]])
    masked = mask_history(scores, [np.array([1]), np.array([], dtype=np.int64)])
    assert masked[0, 1] == -torch.inf and scores[0, 1] == 0.9  # a copy
    ranks = target_ranks(masked, [3, 3])
    np.testing.assert_array_equal(ranks, [1, 1])  # user 0: 0.5 > 0.3; user 1: 0.8 > 0.7
    np.testing.assert_allclose(recall_at(ranks, 1), [0, 0])
    np.testing.assert_allclose(recall_at(ranks, 2), [1, 1])
    np.testing.assert_allclose(ndcg_at(ranks, 2), [1 / np.log2(3)] * 2)
    np.testing.assert_allclose(ndcg_at(np.array([0, 5]), 5), [1.0, 0.0])
    np.testing.assert_array_equal(top_k(masked, 2), [[2, 3], [0, 3]])


def test_ties_count_against_the_target():
    assert target_ranks(torch.tensor([[1.0, 1.0, 1.0]]), [0])[0] == 2


def test_diversity_coverage_and_share_by_hand():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    top = np.array([[0, 1], [0, 2]])
    np.testing.assert_allclose(intra_list_diversity(top, vectors), [1.0, 0.0])
    np.testing.assert_allclose(category_coverage(np.array([[0, 1, 2, 0]]), np.array([5, 5, 7])), [0.5])
    np.testing.assert_allclose(share(top, np.array([True, False, True])), [0.5, 1.0])


def test_paired_bootstrap():
    a, b = np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0, 0.0])
    mean, low, high = paired_bootstrap(a, b, resamples=2000, seed=0)
    assert mean == pytest.approx(0.5) and 0.0 <= low <= mean <= high <= 1.0
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap(np.array([]), np.array([]))
