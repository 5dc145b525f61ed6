import math

import pytest

from nanorepro.med3d.metrics import corpus_bleu, finding_counts, lcs_length, micro_f1, rouge_l, token_f1


def test_bleu_by_hand():
    assert corpus_bleu(["a b c d"], ["a b c d"]) == pytest.approx(1.0)
    # BLEU-1: 2 of 2 unigrams match, brevity penalty exp(1 - 4/2)
    assert corpus_bleu(["a b"], ["a b c d"], 1) == pytest.approx(math.exp(-1))
    # clipping: "a a a" against "a b c": 1 of 3 unigrams
    assert corpus_bleu(["a a a"], ["a b c"], 1) == pytest.approx(1 / 3)
    # BLEU-2, corpus level: p1 = 3/3, p2 = 1/2 over "a b x" vs "a b x"? use a partial match
    assert corpus_bleu(["a b c"], ["a b d c"], 2) == pytest.approx(math.sqrt(1.0 * 1 / 2) * math.exp(1 - 4 / 3))
    assert corpus_bleu(["x y"], ["a b"], 1) == 0.0


def test_rouge_l_and_lcs_by_hand():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert rouge_l("a b", "a b c d") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rouge_l("x", "a") == 0.0


def test_token_f1_and_finding_f1():
    assert token_f1("portal venous", "venous") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("", "") == 1.0 and token_f1("a", "b") == 0.0
    a, b, c = ("liver", "cyst", "small", "upper"), ("spleen", "tumour", "large", "lower"), ("liver", "cyst", "large",
                                                                                              "upper")
    counts = [finding_counts({a, b}, {a, c}), finding_counts(set(), set())]
    assert counts[0] == (1, 1, 1)
    assert micro_f1(counts) == pytest.approx(0.5)
    assert micro_f1([(0, 0, 0)]) == 1.0
