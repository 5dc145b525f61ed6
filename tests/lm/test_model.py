import json
from pathlib import Path

import pytest
import torch

from nanorepro.lm.model import HybridConfig, HybridLM, hf_state_dict

PEER = Path(__file__).resolve().parents[3] / "shared" / "peers" / "nemotron_h_tiny_state_dict.json"


def tiny(**changes) -> HybridConfig:
    return HybridConfig.named("debug", **changes)


@pytest.mark.skipif(not PEER.exists(), reason="peer state-dict dump not available")
def test_parameter_names_and_shapes_match_hugging_face():
    cfg = HybridConfig(mtp_depths=0)
    ours = {k: list(v.shape) for k, v in hf_state_dict(HybridLM(cfg)).items()}
    theirs = {k: v["shape"] for k, v in json.loads(PEER.read_text()).items()}
    assert ours == theirs


def test_prefill_then_decode_reproduces_the_full_forward():
    torch.manual_seed(0)
    model = HybridLM(tiny()).double().eval()
    ids = torch.randint(0, 256, (2, 21))
    full, _ = model(ids)
    cache = model.new_cache(2, dtype=torch.float64)
    first, _ = model(ids[:, :9], cache)
    steps = [model(ids[:, t:t + 1], cache)[0] for t in range(9, 21)]
    assert torch.allclose(torch.cat([first, *steps], 1), full, atol=1e-9, rtol=0)
    assert cache.length == 21


def test_multi_token_step_with_rollback():
    torch.manual_seed(0)
    model = HybridLM(tiny()).double().eval()
    ids = torch.randint(0, 256, (1, 16))
    full, _ = model(ids)
    cache = model.new_cache(1, dtype=torch.float64)
    model(ids[:, :8], cache)
    logits, _ = model(ids[:, 8:12], cache, keep_states=True)  # verify 4 tokens at once
    assert torch.allclose(logits, full[:, 8:12], atol=1e-9, rtol=0)
    cache.accept(8, 2)  # keep 2 of them
    rest, _ = model(ids[:, 10:16], cache)
    assert torch.allclose(rest, full[:, 10:16], atol=1e-9, rtol=0)


def test_loss_has_mtp_and_balance_terms_and_trains():
    torch.manual_seed(0)
    model = HybridLM(tiny())
    ids = torch.randint(0, 256, (4, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, parts = model.loss(ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else parts["ce"].item()
    assert set(parts) == {"ce", "mtp"} and parts["ce"].item() < 0.7 * first


def test_active_parameters_count_k_of_e_experts():
    model = HybridLM(tiny(mtp_depths=0))
    moe = model.model.layers[1].mixer
    routed = moe.experts.up_proj.numel() + moe.experts.down_proj.numel()
    assert model.num_parameters() - model.num_parameters(active=True) == 2 * routed * 6 // 8


def test_nvfp4_precision_map_and_training_in_both_modes():
    from nanorepro.lm.model import use_nvfp4
    from nanorepro.nn.nvfp4 import NVFP4Linear, NVFP4Recipe

    torch.manual_seed(0)
    model = HybridLM(tiny(pattern="M*EM-E", mtp_depths=2))
    counts = use_nvfp4(model, NVFP4Recipe(), high_precision_last=1)
    names = {n for n, m in model.named_modules() if isinstance(m, NVFP4Linear)}
    assert "model.layers.0.mixer.in_proj" in names and "model.layers.0.mixer.out_proj" not in names
    assert not any(part in n for n in names for part in ("q_proj", "latent", "mtp", "layers.5"))
    assert counts["nvfp4_expert_groups"] == 1  # layer 2's experts; layer 5 is the high-precision tail
    ids = torch.randint(0, 256, (4, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, parts = model.loss(ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts["ce"].item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.8 * losses[0]
