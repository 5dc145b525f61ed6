"""Device and thread choice, and a description of the machine for the results file."""

from __future__ import annotations

import os
import platform

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``/``cuda`` force one."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        from nanorepro.common.errors import UserError

        raise UserError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(preference)


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads (None keeps torch's default); returns the count in use.

    Tiny ops (tabular tables, small MLPs) run faster on one thread on a shared 2-core
    machine; large matmuls gain from two. Experiments declare what they measured best.
    """
    if n is not None:
        torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def default_threads(best: int) -> int:
    """A user command's torch threads: ``best`` (what ``benchmarks/`` measured fastest for its
    work on a 2-core CPU), unless the user chose a count with OMP_NUM_THREADS. Returns the count."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(best, os.cpu_count() or 1)))
    return torch.get_num_threads()


def describe_device(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
