import copy

import pytest
import torch

from nanorepro.lm.model import HybridConfig, HybridLM, use_nvfp4
from nanorepro.lm.speculative import greedy_decode, speculative_decode
from nanorepro.nn.nvfp4 import NVFP4Recipe


def tiny(**changes) -> HybridConfig:
    return HybridConfig.named("debug", **changes)


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained for a few steps on a periodic byte pattern, so that drafts get accepted."""
    torch.manual_seed(0)
    model = HybridLM(tiny())
    pattern = torch.tensor(list(b"the cat sat on the mat. ") * 8)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for step in range(120):
        start = step % 24
        ids = torch.stack([pattern[start + i : start + i + 64] for i in range(4)])
        loss, _ = model.loss(ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.double().eval()


def test_speculative_equals_greedy_with_accepts_and_forced_rejections(trained):
    prompts = [list(b"the cat"), list(b"sat on the"), list(b"mat. the c")]
    total_accepted = 0
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([prompt])
        plain = greedy_decode(trained, ids, 200)
        spec, stats = speculative_decode(trained, ids, 200, force_reject=lambda r, i=i: (r + i) % 5 == 0)
        assert spec == plain
        total_accepted += sum(stats.accepted)
        assert stats.tokens + 1 >= 200 and stats.rounds < 200  # the first token comes from the prefill
    assert total_accepted > 100  # the rollback paths after accepting 0, 1 and 2 drafts all ran


def test_acceptance_statistics(trained):
    _, stats = speculative_decode(trained, torch.tensor([list(b"the cat")]), 120)
    a1, a2 = stats.alphas
    assert 0 <= a1 <= 1 and 0 <= a2 <= 1
    assert stats.tau == pytest.approx(1 + a1 + a1 * a2, abs=0.15)  # tau ~ 1 + a1 + a1 a2


def test_speculative_equals_greedy_in_nvfp4_with_per_token_activation_scales(trained):
    """A 3-token verify pass quantizes each token as a 1-token step does (fp32, no tolerance)."""
    model = copy.deepcopy(trained).float()
    assert use_nvfp4(model, NVFP4Recipe(activation_scale="token"), high_precision_last=0)["nvfp4_linear_layers"]
    for prompt in (list(b"the cat"), list(b"mat. the c")):
        ids = torch.tensor([prompt])
        spec, stats = speculative_decode(model, ids, 60)
        assert spec == greedy_decode(model, ids, 60) and sum(stats.accepted) > 0
