"""A byte-level corpus that needs no download: the Python standard library's own sources
(or a user's text: ``text_corpus``).

The files are the ``.py`` sources of the running interpreter's stdlib (tests, IDLE, lib2to3
and the turtle demos excluded), in sorted order, each followed by EOS. Every 20th file is
held out. The corpus is deterministic for a Python version; its SHA-256 is logged so that
results name the exact bytes they were trained on.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nanorepro.common.errors import UserError
from nanorepro.lm.model import EOS

EXCLUDED = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "__pycache__"}


@dataclass
class Corpus:
    train: np.ndarray  # uint16 token stream (bytes 0..255, EOS between files)
    val: np.ndarray
    sha256: str
    files: int

    @property
    def summary(self) -> dict:
        return {"train_bytes": int(len(self.train)), "val_bytes": int(len(self.val)), "files": self.files,
                "sha256": self.sha256}


def stdlib_files(root: Path | None = None) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else root
    files = [p for p in sorted(root.rglob("*.py")) if not EXCLUDED & set(p.relative_to(root).parts)]
    if not files:
        raise UserError(f"no Python sources found under {root}")
    return files


def build_corpus(max_bytes: int, heldout_every: int = 20, root: Path | None = None,
                 files: list[Path] | None = None) -> Corpus:
    """Train/validation token streams of at most ``max_bytes`` bytes in all (whole files; every
    ``heldout_every``-th file held out). ``files``: these instead of the stdlib's sources."""
    digest = hashlib.sha256()
    train, val, total, used = [], [], 0, 0
    for i, path in enumerate(stdlib_files(root) if files is None else files):
        data = path.read_bytes()
        if total + len(data) > max_bytes and total > 0:
            break
        digest.update(path.name.encode() + b"\0" + data)
        tokens = np.frombuffer(data, dtype=np.uint8).astype(np.uint16)
        (val if i % heldout_every == heldout_every - 1 else train).append(np.append(tokens, EOS))
        total += len(data)
        used += 1
    if not val:
        raise UserError(f"max_bytes={max_bytes} leaves no held-out file; raise it")
    return Corpus(np.concatenate(train), np.concatenate(val), digest.hexdigest(), used)


def text_corpus(path: Path, pattern: str = "*", max_bytes: int = 100_000_000, heldout_every: int = 20) -> Corpus:
    """A user's text: one file, or the files under a folder that match ``pattern`` (sorted).

    With at least ``heldout_every`` files, every ``heldout_every``-th file is held out (as for
    the stdlib corpus); with fewer, the last 1/``heldout_every`` of the bytes.
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = [p for p in sorted(path.rglob(pattern)) if p.is_file()]
    else:
        raise UserError(f"{path} does not exist")
    if not files:
        raise UserError(f"no files matching {pattern!r} under {path}")
    if len(files) >= heldout_every:
        return build_corpus(max_bytes, heldout_every, files=files)
    digest, streams, total = hashlib.sha256(), [], 0
    for f in files:
        data = f.read_bytes()[: max(0, max_bytes - total)]
        digest.update(f.name.encode() + b"\0" + data)
        streams.append(np.append(np.frombuffer(data, dtype=np.uint8).astype(np.uint16), EOS))
        total += len(data)
    stream = np.concatenate(streams)
    cut = len(stream) - len(stream) // heldout_every
    return Corpus(stream[:cut], stream[cut:], digest.hexdigest(), len(files))


def sample_batch(stream: np.ndarray, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``batch`` random windows of ``length`` tokens (inputs and targets come from one window)."""
    starts = torch.randint(0, len(stream) - length, (batch,), generator=generator).numpy()
    return torch.from_numpy(np.stack([stream[s : s + length] for s in starts]).astype(np.int64))


def eval_windows(stream: np.ndarray, length: int, count: int) -> torch.Tensor:
    """``count`` evenly spaced windows: the same validation set at every evaluation."""
    starts = np.linspace(0, len(stream) - length - 1, count).astype(int)
    return torch.from_numpy(np.stack([stream[s : s + length] for s in starts]).astype(np.int64))
