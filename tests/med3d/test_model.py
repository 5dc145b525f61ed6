import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nanorepro.med3d.data import TASKS, Vocabulary, all_text, make_dataset
from nanorepro.med3d.model import ModelConfig, TGHMoE, VisionLanguageModel
from nanorepro.med3d.train import TrainConfig, batch, choose_option, evaluate, generate, pad, train_3d

VOCAB = Vocabulary(all_text())


def tiny(**kw) -> VisionLanguageModel:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab=len(VOCAB), d_vision=32, d_lm=32, lm_layers=1, max_slices=6, depth_tokens=2, **kw)
    return VisionLanguageModel(cfg).eval()


def test_3d_encoder_reuses_the_2d_weights():
    model2d, model3d = tiny(), tiny()
    with torch.no_grad():
        for p in model2d.parameters():
            p.add_(torch.randn_like(p) * 0.05)   # a "pretrained" 2-D model
        model2d.encoder.depth_pos.zero_()         # 2-D pretraining never trains the depth positions
    model3d.load_state_dict(model2d.state_dict())
    slice_ = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        one = model2d.encoder(slice_)
        assert torch.allclose(model3d.encoder(slice_), one, atol=1e-6)
        # D copies of the slice: attention over duplicated keys is the same average, so nothing changes
        copies = model3d.encoder(slice_.expand(-1, 6, -1, -1))
        assert torch.allclose(copies[:, :16], one, atol=1e-5) and torch.allclose(copies[:, 16:], one, atol=1e-5)
        model3d.encoder.depth_pos.data.normal_()
        assert not torch.allclose(model3d.encoder(slice_.expand(-1, 6, -1, -1))[:, :16], one, atol=1e-3)


def test_upper_blocks_see_other_slices_lower_blocks_do_not():
    model = tiny()
    x = torch.rand(1, 4, 32, 32)
    y = x.clone()
    y[:, 3] = torch.rand(32, 32)
    with torch.no_grad():
        a, b = model.encoder(x), model.encoder(y)
    assert not torch.allclose(a[:, :16], b[:, :16])   # depth token 0 pools slices 0-1, changed through attention


@pytest.mark.parametrize("kind", ["tgh", "task", "token", "wide"])
def test_upcycled_or_widened_encoder_equals_the_dense_one_at_initialisation(kind):
    dense = tiny()
    converted = tiny()
    converted.load_state_dict(dense.state_dict())
    converted.convert(kind, noise=0.0, wide_factor=3)
    volumes = torch.rand(3, 4, 32, 32)
    prompt = pad([VOCAB.encode(p) for p in ["write the report for this ct .", "how many lesions are there ?",
                                            "which plane is this ct in ? choices : a axial b coronal c sagittal "
                                            "d oblique ."]])
    with torch.no_grad():
        assert torch.allclose(converted.visual_tokens(volumes, prompt), dense.visual_tokens(volumes, prompt),
                              atol=1e-5)
    noisy = tiny()
    noisy.load_state_dict(dense.state_dict())
    noisy.convert(kind, noise=0.5, generator=torch.Generator().manual_seed(0), wide_factor=3)
    if kind != "wide":  # widening adds zero-output units: exact whatever the new units' weights
        with torch.no_grad():
            assert not torch.allclose(noisy.visual_tokens(volumes, prompt), dense.visual_tokens(volumes, prompt),
                                      atol=1e-4)


def test_tgh_moe_equals_a_token_by_token_reference():
    torch.manual_seed(1)
    moe = TGHMoE(d=8, hidden=16, groups=3, experts=4, top_k=2)
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, 0.3)
    x, group = torch.randn(2, 5, 8), torch.tensor([2, 0])
    out = moe(x, group)
    for b in range(2):
        g = int(group[b])
        for t in range(5):
            probs = (x[b, t] @ moe.router[g]).softmax(-1)
            top = probs.topk(2)
            routed = sum(w / top.values.sum() * (F.gelu(x[b, t] @ moe.w1[g, e] + moe.b1[g, e]) @ moe.w2[g, e]
                                                 + moe.b2[g, e]) for w, e in zip(top.values, top.indices,
                                                                                   strict=True))
            assert torch.allclose(out[b, t], 0.5 * (moe.shared(x[b, t]) + routed), atol=1e-5)
    assert moe.last_load[[2, 0]].sum() == 2 * 5 * 2 and moe.last_load[1].sum() == 0


def test_task_router_learns_tasks_and_depends_only_on_the_prompt():
    model = tiny()
    model.convert("tgh")
    data = make_dataset(40, np.random.default_rng(0))
    idx = list(range(len(data.examples)))
    prompt = pad([VOCAB.encode(data.examples.prompt[i]) for i in idx])
    task = torch.tensor([data.examples.task[i] for i in idx])
    opt = torch.optim.Adam(list(model.task_router.parameters()) + list(model.tok.parameters()), lr=3e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model.task_logits(prompt), task).backward()
        opt.step()
    with torch.no_grad():
        group = model.task_logits(prompt).argmax(-1)
        assert (group == task).all()
        single = torch.cat([model.task_logits(prompt[i:i + 1]).argmax(-1) for i in range(0, len(idx), 7)])
        assert torch.equal(single, group[::7])   # batch composition and padding do not matter
    assert len(TASKS) == model.cfg.groups


def test_training_lowers_the_loss_and_evaluation_runs():
    rng = np.random.default_rng(0)
    data, test = make_dataset(12, rng, ), make_dataset(3, rng, test=True)
    data.volumes, test.volumes = data.volumes[:, :6], test.volumes[:, :6]
    model = tiny()
    model.convert("tgh", noise=0.01)
    curve = train_3d(model, data, VOCAB, TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup=5), seed=0)
    assert np.mean(curve[-5:]) < curve[0] - 0.5
    out = evaluate(model, test, VOCAB)
    assert 0 <= out["closed_acc"] <= 1 and 0 <= out["routing_acc"] <= 1
    assert len(out["per_example"]["closed_correct"]) == len(test.examples.select("closed"))
    volumes, prompt, *_ = batch(test, VOCAB, [0, 1])
    texts = generate(model, volumes, ["write the report for this ct ."] * 2, VOCAB, max_new=5)
    assert len(texts) == 2 and all(len(t.split()) <= 5 for t in texts)
    picks = choose_option(model, volumes, ["how many lesions are there ?"] * 2, [("one", "two", "zero", "three")] * 2,
                          VOCAB)
    assert all(0 <= p < 4 for p in picks)


def test_volume_that_does_not_fit_is_a_clear_error():
    with pytest.raises(ValueError, match="does not fit"):
        tiny().encoder(torch.rand(1, 7, 32, 32))
    with pytest.raises(ValueError, match="unknown encoder kind"):
        tiny().convert("sparse")
