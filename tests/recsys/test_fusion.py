import math

import pytest
import torch

from nanorepro.recsys.fusion import fuse, sharpness


def test_sharpness_forms_by_hand():
    phi = torch.tensor([[math.log(0.5), math.log(0.5)], [math.log(0.9), math.log(0.1)]])
    torch.testing.assert_close(sharpness(phi, "std"), (phi[:, 0] - phi[:, 1]).abs() / 2)
    torch.testing.assert_close(sharpness(phi, "constant"), torch.ones(2))
    entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    torch.testing.assert_close(sharpness(phi, "entropy"), torch.tensor([0.0, math.log(2) - entropy]))
    with pytest.raises(ValueError, match="unknown sharpness"):
        sharpness(phi, "cosine")


@pytest.mark.parametrize("form", ["std", "constant", "entropy"])
def test_fused_probabilities_sum_to_the_prefix_probability_and_never_leave_the_beams(form):
    gen = torch.Generator().manual_seed(0)
    item_prefix = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    prefix_logp = torch.log(torch.tensor([[0.6, 0.3], [0.5, 0.2]]))
    prefix_codes = torch.tensor([[1, 3], [0, 2]])
    cosine = torch.rand(2, 8, generator=gen) * 2 - 1
    logp = fuse(prefix_logp, prefix_codes, item_prefix, cosine, tau=0.2, form=form)
    p = logp.exp()
    for n in range(2):
        for k in range(2):
            bucket = item_prefix == prefix_codes[n, k]
            assert float(p[n, bucket].sum()) == pytest.approx(float(prefix_logp[n, k].exp()), rel=1e-5)
        outside = ~torch.isin(item_prefix, prefix_codes[n])
        assert torch.isinf(logp[n, outside]).all() and (logp[n, ~outside] > -torch.inf).all()


def test_within_a_bucket_the_ranking_follows_the_cosine_and_sharpness_scales_it():
    item_prefix = torch.tensor([0, 0, 0])
    cosine = torch.tensor([[0.1, 0.5, 0.3]])
    flat = fuse(torch.tensor([[0.0, -5.0]]), torch.tensor([[0, 1]]), item_prefix, cosine, tau=1.0, form="std")
    peaked = fuse(torch.tensor([[0.0, -50.0]]), torch.tensor([[0, 1]]), item_prefix, cosine, tau=1.0, form="std")
    assert flat[0].argsort().tolist() == [0, 2, 1]
    assert peaked[0, 1].exp() > flat[0, 1].exp()  # a more peaked prefix distribution sharpens the bucket
