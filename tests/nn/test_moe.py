import pytest
import torch

from nanorepro.nn.moe import MoE, TopKRouter, balance_loss, max_violation


def test_router_weights_by_hand_and_bias_only_steers_selection():
    router = TopKRouter(2, 3, top_k=2, scaling=2.0)
    with torch.no_grad():
        router.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    x = torch.tensor([[2.0, 1.0]])
    idx, w, s = router(x)
    sig = torch.sigmoid(torch.tensor([2.0, 1.0, 0.0]))
    assert idx.tolist() == [[0, 1]]
    assert w[0].tolist() == pytest.approx((2 * sig[:2] / sig[:2].sum()).tolist())
    router.e_score_correction_bias[2] = 10.0  # steer expert 2 in ...
    idx2, w2, _ = router(x)
    assert set(idx2[0].tolist()) == {0, 2}
    # ... but its weight still comes from the unbiased score
    weights = dict(zip(idx2[0].tolist(), w2[0].tolist(), strict=True))
    assert weights[2] == pytest.approx(2 * sig[2].item() / (sig[0] + sig[2]).item())


def test_fast_and_loop_expert_paths_agree():
    torch.manual_seed(0)
    moe = MoE(16, n_experts=8, top_k=3, expert_hidden=12, shared_hidden=16, latent=6)
    x = torch.randn(4, 9, 16)
    fast = moe(x)
    moe.use_loop = True
    assert torch.allclose(moe(x), fast, atol=1e-6)
    fast.sum().backward()  # differentiable end to end: experts, and the router through the combine weights
    assert moe.experts.up_proj.grad is not None and moe.gate.weight.grad is not None


def test_latent_moe_with_identity_projections_is_a_standard_moe():
    torch.manual_seed(0)
    latent = MoE(8, n_experts=4, top_k=2, expert_hidden=10, shared_hidden=8, latent=8)
    standard = MoE(8, n_experts=4, top_k=2, expert_hidden=10, shared_hidden=8)
    with torch.no_grad():
        latent.fc1_latent_proj.weight.copy_(torch.eye(8))
        latent.fc2_latent_proj.weight.copy_(torch.eye(8))
    standard.load_state_dict({k: v for k, v in latent.state_dict().items() if "latent" not in k})
    x = torch.randn(3, 5, 8)
    assert torch.allclose(latent(x), standard(x), atol=1e-6)


def test_bias_updates_reduce_load_imbalance():
    torch.manual_seed(0)
    moe = MoE(16, n_experts=16, top_k=4, expert_hidden=8, shared_hidden=8)
    with torch.no_grad():
        moe.gate.weight.add_(torch.linspace(0, 3, 16)[:, None] * 0.1)  # skewed toward high experts
    x = torch.randn(512, 16) + 1.0
    moe(x)
    before = max_violation(moe.last_load)
    for _ in range(200):
        moe(x)
        moe.update_bias(1e-2)
    moe(x)
    assert max_violation(moe.last_load) <= 0.5 * before


def test_balance_loss_is_one_when_uniform():
    scores = torch.full((10, 4), 0.5)
    load = torch.full((4,), 10 * 2 / 4)  # top-2 of 4, spread evenly
    assert balance_loss(scores, load, top_k=2).item() == pytest.approx(1.0)
