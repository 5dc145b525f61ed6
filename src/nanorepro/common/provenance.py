"""Where a result came from: package version and git commit."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout the package runs from (``+dirty`` if its code is modified), else "unknown".

    ``results/`` and ``reports/`` are outputs, not code: a seed that finishes after another
    seed of the same run wrote its result is not dirty."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
             ":(top,exclude)results", ":(top,exclude)reports"],
            cwd=here, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # a copy without .git may name its commit
        return os.environ.get("NANOREPRO_GIT_COMMIT", "unknown")
    return f"{commit}+dirty" if dirty else commit


def package_version() -> str:
    from nanorepro import __version__

    return __version__
