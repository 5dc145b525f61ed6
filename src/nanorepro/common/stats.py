"""Statistics shared by the experiments' reports."""

from __future__ import annotations

import numpy as np


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean of a - b over the same examples and its percentile bootstrap interval (resampling examples)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    if diff.size == 0:
        raise ValueError("paired_bootstrap needs at least one example")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, (resamples, diff.size))].mean(1)
    tail = (1 - level) / 2
    return float(diff.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ranks by order, ties broken by position), the Pearson correlation of ranks."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])
