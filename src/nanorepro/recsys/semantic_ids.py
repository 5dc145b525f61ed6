"""Semantic IDs by residual k-means (RQ-KMeans), and SIGMA's hybrid item tokens.

Level l clusters the residual left by the levels before it:
    c_l(i) = argmin_k || r_l(i) - C_l[k] ||,   r_1 = x_i,   r_{l+1} = r_l - C_l[c_l(i)],
so the reconstruction sum_l C_l[c_l(i)] never gets worse with a level: after one Lloyd
step every centroid is its cluster's mean, which fits the residual at least as well as zero.

A **hybrid token** (SIGMA) writes item i as [c_1 .. c_L, id_i]: a short semantic prefix
that keeps beam search small, plus one unique ID token, so there are no collisions and no
invalid codes. TIGER instead uses 3 levels and appends a dedup digit to colliding items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids (k, d), assignment (n,)) by Lloyd's algorithm with k-means++ initialisation.

    An empty cluster is re-seeded with the point farthest from its centroid.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= n points, got k={k}, n={n}")
    gen = torch.Generator().manual_seed(seed)
    centroids = x[torch.randint(n, (1,), generator=gen)]
    for _ in range(1, k):  # k-means++: next centre with probability proportional to squared distance
        d2 = torch.cdist(x, centroids).min(1).values.square()
        total = d2.sum()
        pick = torch.multinomial(d2 / total, 1, generator=gen) if total > 0 else torch.randint(n, (1,), generator=gen)
        centroids = torch.cat([centroids, x[pick]])
    assign = torch.cdist(x, centroids).argmin(1)
    for _ in range(iters):
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        dist = torch.cdist(x, centroids)
        if empty.any():
            far = dist.gather(1, assign[:, None]).squeeze(1).topk(int(empty.sum())).indices
            centroids[empty] = x[far]
            dist = torch.cdist(x, centroids)
        new_assign = dist.argmin(1)
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    return centroids, assign


@dataclass
class ResidualCodes:
    codes: torch.Tensor               # (I, L) code per level
    codebooks: list[torch.Tensor]     # L tensors (k_l, d)
    errors: list[float]               # mean squared reconstruction error after each level

    @property
    def levels(self) -> int:
        return self.codes.shape[1]

    def reconstruct(self, levels: int | None = None) -> torch.Tensor:
        levels = self.levels if levels is None else levels
        return sum(book[self.codes[:, lvl]] for lvl, book in enumerate(self.codebooks[:levels]))

    def usage(self) -> list[float]:
        """Fraction of each level's codes that some item uses (codebook collapse shows as a low value)."""
        return [len(torch.unique(self.codes[:, lvl])) / len(book) for lvl, book in enumerate(self.codebooks)]

    def collision_rate(self) -> float:
        """Fraction of items whose full code is shared with another item."""
        _, inverse, counts = torch.unique(self.codes, dim=0, return_inverse=True, return_counts=True)
        return float((counts[inverse] > 1).float().mean())


def residual_kmeans(x: torch.Tensor, sizes: tuple[int, ...], iters: int = 25, seed: int = 0) -> ResidualCodes:
    """RQ-KMeans with ``sizes[l]`` codes at level l."""
    residual = x.clone()
    codes, books, errors = [], [], []
    for level, k in enumerate(sizes):
        centroids, assign = kmeans(residual, k, iters, seed + level)
        residual = residual - centroids[assign]
        codes.append(assign)
        books.append(centroids)
        errors.append(float(residual.square().sum(1).mean()))
    return ResidualCodes(torch.stack(codes, 1), books, errors)


def dedup_digit(codes: torch.Tensor) -> torch.Tensor:
    """TIGER's extra digit: 0, 1, 2, ... among items sharing the same code (so every item is unique)."""
    _, inverse = torch.unique(codes, dim=0, return_inverse=True)
    digit = torch.zeros(len(codes), dtype=torch.long)
    order = torch.argsort(inverse, stable=True)
    sorted_groups = inverse[order]
    starts = torch.ones_like(sorted_groups, dtype=torch.bool)
    starts[1:] = sorted_groups[1:] != sorted_groups[:-1]
    position = torch.arange(len(codes))
    group_start = torch.cummax(torch.where(starts, position, torch.zeros_like(position)), 0).values
    digit[order] = position - group_start
    return torch.cat([codes, digit[:, None]], 1)
