import numpy as np
import pytest
import torch

from nanorepro.llm_rl.grpo import GRPOConfig, advantages, policy_loss
from nanorepro.llm_rl.policy import (
    CharTokenizer,
    TinyGPT,
    TinyGPTConfig,
    completion_logits,
    completion_mask,
    sample,
)
from nanorepro.llm_rl.reval import FIFOReplay, ReValConfig, reval_terms
from nanorepro.llm_rl.tasks import (
    T1_ALPHABET,
    make_kb,
    t1_problem,
    t1_reward,
    t1_sample,
    t2_reward,
    t2_sample,
    thinking_span,
)


def test_grpo_advantages_sum_to_zero_per_group():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    for variant in ("grpo", "dr_grpo", "dapo", "rloo"):
        assert torch.allclose(advantages(r, variant).sum(-1), torch.zeros(2), atol=1e-6)
    assert advantages(r, "rloo")[1].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, -1.0])
    assert advantages(r, "dr_grpo")[0].tolist() == [0.5, -0.5, -0.5, 0.5]


def test_loss_normalisations_by_hand():
    # two sequences of lengths 1 and 3 (L_max 4), ratio 1, advantages +1 and -1
    mask = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 0]])
    logp = torch.zeros(2, 4)
    adv = torch.tensor([1.0, -1.0])
    expect = {"grpo": -(1 / 1 + -3 / 3) / 2, "dr_grpo": -(1 - 3) / (2 * 4), "dapo": -(1 - 3) / 4,
              "rloo": -(1 - 3) / (2 * 4)}
    for variant, value in expect.items():
        assert policy_loss(logp, logp, adv, mask, GRPOConfig(variant=variant)).item() == pytest.approx(value)
    # clipping: a ratio of 2 with a positive advantage counts as 1.2 (1.28 with DAPO's clip-higher)
    new = torch.log(torch.full((2, 4), 2.0))
    assert policy_loss(new, logp, torch.tensor([1.0, 1.0]), mask, GRPOConfig("dapo")).item() == pytest.approx(-1.28)
    assert policy_loss(new, logp, torch.tensor([1.0, 1.0]), mask, GRPOConfig("dapo", eps_high=0.2)).item() == \
        pytest.approx(-1.2)


def tiny_policy(vocab=18, seed=0):
    torch.manual_seed(seed)
    return TinyGPT(TinyGPTConfig(vocab_size=vocab, d_model=16, layers=1, heads=2, max_len=32))


def test_reval_residuals_at_initialisation_and_telescoping():
    policy = tiny_policy()
    prompts = torch.randint(2, 18, (3, 5))
    completions = torch.tensor([[5, 6, 1, 0], [7, 1, 0, 0], [4, 4, 4, 1]])
    mask = completion_mask(completions)
    R = torch.tensor([1.0, 0.0, 1.0])
    cfg = ReValConfig(beta=0.7)
    logits = completion_logits(policy, prompts, completions)
    _, traj, res = reval_terms(logits, logits, logits, completions, mask, R, cfg)
    lengths = mask.sum(1).long()
    for i in range(3):
        expected = torch.zeros(4)
        expected[lengths[i] - 1] = -R[i]
        assert torch.allclose(res[i], expected, atol=1e-5)
    # away from the reference, the trajectory term is still the square of the summed residuals
    ref = completion_logits(tiny_policy(seed=1), prompts, completions)
    step, traj, res = reval_terms(logits, ref, logits, completions, mask, R, cfg)
    assert traj.item() == pytest.approx((res.sum(1) ** 2).mean().item(), rel=1e-5)


def test_fifo_buffer_capacity_and_order():
    buf = FIFOReplay(2)
    for i in range(3):
        buf.add({"prompts": torch.zeros(4, 5), "R": torch.full((4,), float(i))})
    assert len(buf) == 8 and [b["R"][0].item() for b in buf.batches] == [1.0, 2.0]
    (minibatch,) = buf.sample(64, torch.Generator().manual_seed(0))
    assert set(minibatch["R"].tolist()) == {1.0, 2.0}


def test_replay_draws_uniformly_over_rows_and_splits_the_minibatch_by_prompt_length():
    buf = FIFOReplay(3)
    buf.add({"prompts": torch.zeros(2, 4), "R": torch.tensor([0.0, 1.0])})
    buf.add({"prompts": torch.zeros(6, 5), "R": torch.arange(2.0, 8.0)})
    buf.add({"prompts": torch.zeros(2, 4), "R": torch.tensor([8.0, 9.0])})
    parts = buf.sample(4000, torch.Generator().manual_seed(0))
    assert sorted(p["prompts"].shape[1] for p in parts) == [4, 5] and sum(len(p["R"]) for p in parts) == 4000
    for part in parts:  # each part holds only the rows of its prompt length
        allowed = {0.0, 1.0, 8.0, 9.0} if part["prompts"].shape[1] == 4 else set(range(2, 8))
        assert set(part["R"].tolist()) == allowed
    counts = torch.bincount(torch.cat([p["R"] for p in parts]).long(), minlength=10).float()
    assert (counts / 4000 - 0.1).abs().max() < 0.02  # every row 1/10


def test_sampling_stops_at_eos_and_masks_the_rest():
    policy = tiny_policy()
    with torch.no_grad():
        policy.head.weight.zero_()
        policy.head.weight[CharTokenizer.EOS] = 0  # uniform logits
    out = sample(policy, torch.randint(2, 18, (64, 4)), 10, torch.Generator().manual_seed(0))
    mask = completion_mask(out)
    for row, m in zip(out, mask, strict=True):
        eos = (row == CharTokenizer.EOS).nonzero()
        if len(eos):
            first = eos[0].item()
            assert (row[first + 1 :] == CharTokenizer.PAD).all() and m[: first + 1].all() and not m[first + 1 :].any()


def test_t1_generation_split_and_rewards():
    rng = np.random.default_rng(0)
    p = t1_problem((12, 34, 56))
    assert (p.prompt, p.gold, p.answer) == ("12+34+56=", "<46>102.", "102")
    assert t1_problem((12, 34, 56, 7)).gold == "<46,102>109."
    noisy = t1_problem((12, 34, 56), noisy=True, rng=rng)
    assert noisy.gold != p.gold and t1_reward(noisy.gold, p)[0] == 0.0
    assert t1_reward("<46>102.", p) == (1.0, False) and t1_reward("<46>101.", p) == (0.0, False)
    for bad in ("", "102", "<46102.", "<>>1.", "<4a>102.", "x" * 50):
        assert t1_reward(bad, p) == (0.0, True)
    train = {q.prompt for q in t1_sample(rng, 300, "train")}
    test = {q.prompt for q in t1_sample(rng, 300, "test")}
    assert not train & test
    tok = CharTokenizer(T1_ALPHABET)
    assert tok.decode(tok.encode(p.gold) + [tok.EOS, 5]) == p.gold


def test_t2_shortcut_splits_and_rewards():
    rng = np.random.default_rng(0)
    kb = make_kb(rng, n_people=60, n_cities=8, n_countries=6)
    short = t2_sample(kb, rng, 400, "rl", "shortcut")
    anti = t2_sample(kb, rng, 200, "test", "anti")
    assert 0.7 < np.mean([q.answer == "A" for q in short]) < 0.8
    assert not any(q.answer == "A" for q in anti)
    assert all(kb.roles[q.meta["person"]] == "test" for q in anti)
    q = short[0]
    assert t2_reward(q.gold, q) == (1.0, False)
    assert t2_reward("<ROMA:ITA>Z.", q) == (0.0, True) and t2_reward("", q)[1]
    assert thinking_span(q.gold) == (0, q.gold.index(">") + 1) and thinking_span("A.") is None
