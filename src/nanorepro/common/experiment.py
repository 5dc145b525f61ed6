"""What an experiment declares (profiles, run function, claim checks, plots) and what a run receives.

An experiment module builds one ``Experiment`` and ``nanorepro.experiments`` lists it.
Claim checks are fixed before any run: each measures one number from the per-seed
metrics of a profile and compares it with a threshold stated in advance. The same
measure applied to a single seed gives the per-seed spread shown in the report.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.common.progress import ProgressBoard, ProgressTask

Metrics = dict[str, Any]


@dataclass(frozen=True)
class Table:
    """A small table for the report: column names and rows of already formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]]
PROFILES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class Profile:
    """A named config plus how many seeds (0 .. seeds-1) ``reproduce`` runs for it."""

    config: Any
    seeds: int


@dataclass(frozen=True)
class ClaimCheck:
    """One pre-registered check: ``measure(per-seed metrics) op threshold``.

    ``op`` is ">=", "<=" or "in" (threshold a (low, high) pair). With no threshold the
    value is reported, not judged.
    """

    key: str
    statement: str
    measure: Callable[[list[Metrics]], float | None]
    op: Literal[">=", "<=", "in"] = ">="
    threshold: float | tuple[float, float] | None = None
    seed_spread: bool = True  # False where one seed's value is meaningless (a ratio of near-zero means)
    applies: Callable[[list[Metrics]], bool] | None = None  # e.g. GPU-only targets; else "not applicable"

    def judge(self, value: float | None) -> bool | None:
        if self.threshold is None:
            return None
        if value is None:
            return False
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<=":
            return value <= self.threshold
        low, high = self.threshold
        return low <= value <= high

    def threshold_text(self) -> str:
        if self.threshold is None:
            return "reported"
        if self.op == "in":
            return f"in [{self.threshold[0]:g}, {self.threshold[1]:g}]"
        return f"{self.op} {self.threshold:g}"

    def evaluate(self, runs: list[Metrics]) -> dict[str, Any]:
        """The check over all seeds, plus the spread of the same measure seed by seed."""
        if self.applies is not None and not self.applies(runs):
            return {"key": self.key, "statement": self.statement, "value": None, "seed_std": None,
                    "n_seeds": len(runs), "op": self.op, "threshold": self.threshold, "passed": None,
                    "applicable": False}
        value = self.measure(runs)
        per_seed = []
        if self.seed_spread and len(runs) > 1:
            per_seed = [v for v in (self.measure([r]) for r in runs) if v is not None]
        return {
            "key": self.key,
            "statement": self.statement,
            "value": value,
            "seed_std": statistics.stdev(per_seed) if len(per_seed) > 1 else None,
            "n_seeds": len(runs),
            "op": self.op,
            "threshold": self.threshold,
            "passed": self.judge(value),
        }


@dataclass(frozen=True)
class Experiment:
    name: str
    system: str  # key into nanorepro.experiments.SYSTEMS
    summary: str
    profiles: dict[str, Profile]
    run: Callable[[Any, RunContext], Metrics]
    checks: tuple[ClaimCheck, ...]
    plot: Callable[[list[Metrics]], dict[str, Figure]] | None = None  # name -> figure
    tables: Callable[[list[Metrics]], list[Table]] | None = None
    threads: int | None = None  # measured best torch thread count (None: torch's default)
    device: str = "auto"  # "cpu" for work too small for a GPU to pay off

    def config_class(self) -> type:
        return type(self.profiles["smoke"].config)


@dataclass
class RunContext:
    """What a run function gets besides its config: seed, device, progress, checkpoints."""

    seed: int
    device: torch.device
    board: ProgressBoard
    checkpoint_path: Path | None = None
    config_hash: str = ""
    resumed: bool = field(default=False, init=False)

    def task(self, description: str, total: float) -> ProgressTask:
        return self.board.task(description, total)

    def load_checkpoint(self) -> Any | None:
        """The state saved by an interrupted run of the same config, or None."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return None
        saved = load_checkpoint(self.checkpoint_path)
        if saved.get("config_hash") != self.config_hash:
            self.board.log(f"ignoring checkpoint {self.checkpoint_path}: it belongs to a different config")
            return None
        self.resumed = True
        self.board.log(f"resuming from {self.checkpoint_path}")
        return saved["state"]

    def save_checkpoint(self, state: Any) -> None:
        if self.checkpoint_path is not None:
            save_checkpoint(self.checkpoint_path, {"config_hash": self.config_hash, "state": state})
