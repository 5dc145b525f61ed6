"""Seeding: one integer seed, independent named streams derived from it."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_stream(seed: int, *stream: int | str) -> np.random.Generator:
    """A NumPy generator for ``(seed, *stream)``: different streams never share draws.

    Strings are hashed with CRC32 so that stream names are stable across processes
    (Python's ``hash`` is salted per process).
    """
    keys = [zlib.crc32(s.encode()) if isinstance(s, str) else int(s) for s in stream]
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))
