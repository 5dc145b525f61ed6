"""Text metrics for report generation and VQA, written from their definitions.

BLEU-n (Papineni et al. 2002): corpus-level, clipped n-gram precisions p_1..p_n combined by
a geometric mean with uniform weights, times the brevity penalty BP = min(1, exp(1 - r/c))
(r reference length, c candidate length, summed over the corpus). BLEU-1 is M3D's convention.
ROUGE-L (Lin 2004): F-measure of the longest common subsequence, β = 1, averaged over reports.
Finding-F1: micro F1 of (organ, type, size, position) tuples parsed back from the reports.
Open-VQA: exact match and SQuAD-style token F1 (bag-of-words overlap).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def corpus_bleu(candidates: Sequence[str], references: Sequence[str], max_order: int = 4) -> float:
    matches, totals = [0] * max_order, [0] * max_order
    c_len = r_len = 0
    for cand, ref in zip(candidates, references, strict=True):
        c, r = cand.split(), ref.split()
        c_len, r_len = c_len + len(c), r_len + len(r)
        for n in range(1, max_order + 1):
            cn, rn = _ngrams(c, n), _ngrams(r, n)
            matches[n - 1] += sum(min(count, rn[g]) for g, count in cn.items())
            totals[n - 1] += max(len(c) - n + 1, 0)
    if c_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / max_order
    brevity = min(1.0, math.exp(1 - r_len / c_len))
    return brevity * math.exp(log_precision)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(candidate: str, reference: str) -> float:
    c, r = candidate.split(), reference.split()
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, truth: str) -> float:
    p, t = prediction.split(), truth.split()
    common = sum((Counter(p) & Counter(t)).values())
    if common == 0:
        return float(p == t)
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


def finding_counts(predicted: set, reference: set) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one report's finding tuples."""
    tp = len(predicted & reference)
    return tp, len(predicted) - tp, len(reference) - tp


def micro_f1(counts: Sequence[tuple[int, int, int]]) -> float:
    """Micro F1 over reports; 1.0 when there is nothing to find and nothing was claimed."""
    tp, fp, fn = (sum(c[i] for c in counts) for i in range(3))
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
