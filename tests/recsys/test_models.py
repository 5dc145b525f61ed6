import numpy as np
import pytest
import torch

from nanorepro.recsys.data import Examples
from nanorepro.recsys.models import BOS, PAD, TASK0, UNK, ModelConfig, Recommender, Trie, Vocabulary, encode_context
from nanorepro.recsys.train import TrainConfig, fit

CODES = torch.tensor([[0, 1], [0, 2], [1, 0], [2, 2], [2, 0]])


def examples(histories, targets, task=0, instruction="recommend for me"):
    ex = Examples()
    for h, t in zip(histories, targets, strict=True):
        ex.append(0, h, task, -1, instruction, t, 0)
    return ex


def test_trie_by_hand():
    trie = Trie.build(CODES)
    assert trie.vocab == [3, 3]
    assert trie.child[0].tolist() == [[0, 1, 2]]
    assert trie.child[1].tolist() == [[-1, 0, 1], [2, -1, -1], [3, -1, 4]]
    assert trie.item_bucket.tolist() == [0, 1, 2, 4, 3]


def test_context_is_left_padded_with_task_words_then_history():
    vocab = Vocabulary(["show me boots"])
    cfg = ModelConfig(max_words=3, max_history=2)
    tokens, items = encode_context(examples([np.array([7, 8, 9])], [1], task=2, instruction="show hats"), vocab, cfg)
    assert tokens[0].tolist() == [PAD, TASK0 + 2, vocab.index["show"], UNK, UNK, UNK]  # 'hats' is unseen -> UNK
    assert items[0].tolist() == [-1, -1, -1, -1, 8, 9]  # the last 2 of the history
    assert BOS not in tokens[0].tolist()


@pytest.fixture
def model():
    torch.manual_seed(0)
    vocab = Vocabulary(["recommend for me"])
    return Recommender(ModelConfig(d_model=16, heads=2, layers=1, dropout=0.0), len(vocab), Trie.build(CODES)), vocab


def test_beam_search_only_follows_valid_paths_and_scores_them(model):
    m, vocab = model
    m.eval()
    tokens, items = encode_context(examples([np.array([0]), np.array([3, 4])], [1, 2]), vocab, m.cfg)
    logp, codes, bucket = m.beam_search(tokens, items, beams=4)
    valid = {tuple(c) for c in CODES.tolist()}
    for n in range(2):
        assert (logp[n, :-1] >= logp[n, 1:]).all()
        for k in range(4):
            assert tuple(codes[n, k].tolist()) in valid
            item = CODES.tolist().index(codes[n, k].tolist())
            assert bucket[n, k] == Trie.build(CODES).item_bucket[item]
    # a beam's log P is the sum of the per-level log-probabilities
    h = m.hidden(tokens[:1], items[:1], codes[0, :1])
    first = m.code_head[0](h[:, 0]).log_softmax(-1)[0, codes[0, 0, 0]]
    second = m.code_head[1](h[:, 1]).log_softmax(-1)[0, codes[0, 0, 1]]
    assert float(logp[0, 0]) == pytest.approx((first + second).item(), abs=1e-5)


def test_generative_scores_reach_only_beam_items_and_fusion_keeps_prefix_mass(model):
    m, vocab = model
    m.eval()
    tokens, items = encode_context(examples([np.array([0])], [1]), vocab, m.cfg)
    m.cfg.id_head = False
    s = m.scores(tokens, items, beams=3)
    assert torch.isfinite(s).sum() == 3
    one_level = Trie.build(CODES[:, :1])
    fused_model = Recommender(ModelConfig(d_model=16, heads=2, layers=1), len(vocab), one_level).eval()
    logp, _, bucket = fused_model.beam_search(tokens, items, beams=2)
    s = fused_model.scores(tokens, items, beams=2, form="constant")
    reached = torch.isin(one_level.item_bucket, bucket[0])
    assert torch.isfinite(s[0, reached]).all() and torch.isinf(s[0, ~reached]).all()
    assert float(s[0].exp().sum()) == pytest.approx(float(logp[0].exp().sum()), rel=1e-5)


def test_sasrec_scores_are_a_distribution_over_every_item():
    vocab = Vocabulary([])
    m = Recommender(ModelConfig(d_model=16, heads=2, layers=1, scoring="dot"), len(vocab),
                    Trie.build(torch.zeros(6, 0, dtype=torch.long))).eval()
    tokens, items = encode_context(examples([np.array([1, 2])], [3]), vocab, m.cfg)
    s = m.scores(tokens, items)
    assert s.shape == (1, 6) and float(s.exp().sum()) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("scoring, codes", [("dot", torch.zeros(12, 0, dtype=torch.long)),
                                            ("codes", torch.arange(12)[:, None] // 3)])
def test_fit_learns_a_deterministic_successor(scoring, codes):
    histories = [np.array([i % 12]) for i in range(600)]
    targets = [(i + 1) % 12 for i in range(600)]
    train, valid = examples(histories, targets), examples(histories[:60], targets[:60])
    vocab = Vocabulary(train.instruction)
    m = Recommender(ModelConfig(d_model=32, heads=2, layers=1, dropout=0.0, scoring=scoring), len(vocab),
                    Trie.build(codes))
    curve = fit(m, train, valid, vocab, TrainConfig(epochs=12, batch_size=64, lr=3e-3, valid_examples=60), seed=0,
                decode={"beams": 2} if scoring == "codes" else {})
    assert curve[-1]["loss"] < 0.5 * curve[0]["loss"]
    assert max(c["valid_recall10"] for c in curve) == 1.0
