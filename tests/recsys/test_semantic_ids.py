import pytest
import torch

from nanorepro.recsys.semantic_ids import dedup_digit, kmeans, residual_kmeans


def test_kmeans_finds_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=gen) for c in centres])
    found, assign = kmeans(x, 3, seed=1)
    for c in centres:
        assert torch.cdist(c[None], found).min() < 0.1
    assert len(torch.unique(assign[:50])) == 1 and len(torch.unique(assign)) == 3
    with pytest.raises(ValueError):
        kmeans(x, 0)


def test_residual_levels_never_reconstruct_worse_and_codes_are_logged():
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(0))
    rq = residual_kmeans(x, (16, 8, 8), seed=0)
    total = float(x.square().sum(1).mean())
    errors = [total, *rq.errors]
    assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:], strict=False))
    assert rq.errors[-1] < 0.6 * total
    for levels, error in zip((1, 2, 3), rq.errors, strict=True):
        assert float((x - rq.reconstruct(levels)).square().sum(1).mean()) == pytest.approx(error, rel=1e-4)
    assert rq.codes.shape == (400, 3) and all(0 < u <= 1 for u in rq.usage())
    assert 0 <= rq.collision_rate() < 0.5


def test_dedup_digit_makes_every_code_unique():
    codes = torch.tensor([[1, 2], [1, 2], [0, 0], [1, 2], [0, 0], [3, 3]])
    unique = dedup_digit(codes)
    assert unique[:, 2].tolist() == [0, 1, 0, 2, 1, 0]
    assert len(torch.unique(unique, dim=0)) == len(codes)
