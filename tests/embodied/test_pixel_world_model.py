import numpy as np
import pytest
import torch

from nanorepro.common.errors import UserError
from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.pixel_world_model import (
    PixelWorldModel,
    PixelWorldModelConfig,
    VQConfig,
    VQTokenizer,
    crop,
    cross_view_inconsistency,
    gripper_from_head,
    to_float,
    token_transitions,
)
from nanorepro.embodied.world_model import chunk_starts
from nanorepro.envs.tabletop import MAX_WORDS, Tabletop, TabletopConfig, Task, sample_task

SMALL = PixelWorldModelConfig(vq=VQConfig(codes=16, code_dim=8, channels=8, steps=60, batch_size=16),
                              d_model=32, layers=1, heads=2, steps=60, batch_size=16, lr=3e-3)


def _frames(n=8, seed=0):
    rng = np.random.default_rng(seed)
    sim = Tabletop(n, TabletopConfig())
    obs = sim.reset([sample_task("train", rng) for _ in range(n)], rng)
    return sim, obs


def test_vq_tokenizer_shapes_and_its_loss_falls():
    torch.manual_seed(0)
    _, obs = _frames(16)
    images = torch.as_tensor(obs["head"])
    tok = VQTokenizer(32, SMALL.vq)
    codes = tok.encode(images)
    assert codes.shape == (16, 64) and codes.dtype == torch.long and 0 <= codes.min() and codes.max() < 16
    assert tok.decode(codes).shape == (16, 3, 32, 32)
    curve = tok.fit(images, seed=0)
    assert np.mean(curve[-5:]) < 0.5 * np.mean(curve[:5])
    with pytest.raises(UserError, match="divisible by 4"):
        VQTokenizer(30, SMALL.vq)


def _batch(model, B=4):
    g = torch.Generator().manual_seed(0)
    n = model.sizes["head_query"]
    return {"instruction": torch.randint(0, 10, (B, MAX_WORDS), generator=g), "chunk": torch.rand(B, 4, 3, generator=g),
            "proprio": torch.rand(B, 5, generator=g), "head_now": torch.randint(0, 16, (B, n), generator=g),
            "wrist_now": torch.randint(0, 16, (B, n), generator=g),
            "head_next": torch.randint(0, 16, (B, n), generator=g),
            "wrist_next": torch.randint(0, 16, (B, n), generator=g), "solved": torch.tensor([0.0, 1.0, 0.0, 1.0])}


@pytest.mark.parametrize("interleaved", [True, False])
def test_decoding_order_head_never_sees_its_targets_wrist_sees_head_only_when_interleaved(interleaved):
    torch.manual_seed(0)
    from dataclasses import replace
    model = PixelWorldModel(32, 4, replace(SMALL, interleaved=interleaved))
    batch = _batch(model)
    h1 = model._hidden(*(batch[k] for k in ("instruction", "chunk", "proprio", "head_now", "wrist_now",
                                            "head_next")))
    changed = (batch["head_next"] + 1) % 16
    h2 = model._hidden(*(batch[k] for k in ("instruction", "chunk", "proprio", "head_now", "wrist_now")), changed)
    head1, wrist1, success1 = model._outputs(h1)
    head2, wrist2, success2 = model._outputs(h2)
    assert torch.equal(head1, head2) and torch.equal(success1, success2)   # no leak of the teacher-forced head
    assert torch.equal(wrist1, wrist2) != interleaved                       # wrist conditioned on head iff interleaved
    out = model.predict_codes(batch)
    assert out["head"].shape == out["wrist"].shape == (4, 64) and out["uncertainty"].shape == (4,)
    assert (out["uncertainty"] >= 0).all() and (out["uncertainty"] <= np.log(16) + 1e-5).all()


def test_world_model_loss_falls_on_a_tiny_batch_of_real_transitions():
    torch.manual_seed(0)
    data = make_demos([Task("place", 0, zone="top left"), Task("place", 3, zone="bottom right")], seed=0)
    model = PixelWorldModel(32, 4, SMALL)
    for view in ("head", "wrist"):
        model.tokenizers[view].fit(torch.as_tensor(data[view]), seed=0)
    transitions = token_transitions(model, data, horizon=4)
    assert len(transitions["solved"]) == len(data["state"]) - 2 * 4
    first = int(chunk_starts(data["episode"], 4)[0])
    assert torch.equal(transitions["head_next"][0], model.tokenizers["head"].encode(
        torch.as_tensor(data["head"][first + 4: first + 5]))[0])
    curve = model.fit(transitions, seed=0)
    assert np.mean(curve[-5:]) < 0.7 * np.mean(curve[:5])
    obs = {k: torch.as_tensor(data[k][:3]) for k in ("state", "head", "wrist")}
    head, wrist, logit, uncertainty = model.predict(obs, torch.as_tensor(data["instruction"][[0, 0, 0]]),
                                                    torch.as_tensor(data["action"][:4])[None].expand(3, -1, -1))
    assert head.shape == wrist.shape == (3, 3, 32, 32) and logit.shape == uncertainty.shape == (3,)


def test_gripper_decoded_from_the_head_view_and_cross_view_consistency_of_real_frames():
    sim, obs = _frames(8)
    head, wrist = to_float(torch.as_tensor(obs["head"])), to_float(torch.as_tensor(obs["wrist"]))
    decoded = gripper_from_head(head)
    assert torch.allclose(decoded, torch.as_tensor(sim.gripper, dtype=torch.float32), atol=1.0 / 32)
    full = crop(head, torch.full((8, 2), 0.5), window=1.0, size=32)
    assert torch.allclose(full, head, atol=1e-5)   # the whole table at its own resolution is the image itself
    window = TabletopConfig().wrist_window
    matched = cross_view_inconsistency(head, wrist, window)
    swapped = cross_view_inconsistency(head, wrist.roll(1, 0), window)
    assert (matched < swapped).float().mean() >= 0.75


def test_success_logits_alone_equal_the_full_prediction():
    torch.manual_seed(0)
    data = make_demos([Task("place", 1, zone="top right")], seed=0)
    model = PixelWorldModel(32, 4, SMALL)
    obs = {k: torch.as_tensor(data[k][:3]) for k in ("state", "head", "wrist")}
    instruction = torch.as_tensor(data["instruction"][[0, 0, 0]])
    chunk = torch.as_tensor(data["action"][:4])[None].expand(3, -1, -1)
    _, _, logit, _ = model.predict(obs, instruction, chunk)
    assert torch.allclose(model.success_logits(obs, instruction, chunk), logit, atol=1e-5)
