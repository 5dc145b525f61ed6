"""The results store: ``results/NAME/PROFILE/seedS.json``, written atomically, validated on read.

A result holds the metrics, the full config, the package version and git commit, the
device, the wall time and the claim checks evaluated on that seed alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nanorepro.common.errors import UserError
from nanorepro.common.io import atomic_write_json, read_json

SCHEMA_VERSION = 1
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema": int,
    "experiment": str,
    "system": str,
    "profile": str,
    "seed": int,
    "config": dict,
    "config_hash": str,
    "overrides": list,
    "metrics": dict,
    "claim_checks": list,
    "version": str,
    "git_commit": str,
    "device": dict,
    "wall_time_s": (int, float),
    "started_at": str,
    "finished_at": str,
    "resumed": bool,
}
_SEED_FILE = re.compile(r"^seed(\d+)\.json$")


def run_dir(root: str | Path, experiment: str, profile: str) -> Path:
    return Path(root) / experiment / profile


def result_path(root: str | Path, experiment: str, profile: str, seed: int) -> Path:
    return run_dir(root, experiment, profile) / f"seed{seed}.json"


def checkpoint_path(root: str | Path, experiment: str, profile: str, seed: int) -> Path:
    return run_dir(root, experiment, profile) / f"seed{seed}.ckpt.safetensors"


def validate_result(result: Any, path: str | Path) -> dict:
    """Check the schema; a bad file is a UserError naming the file and the field."""
    if not isinstance(result, dict):
        raise UserError(f"{path}: a result must be a JSON object")
    for key, tp in REQUIRED_FIELDS.items():
        if key not in result:
            raise UserError(f"{path}: missing field '{key}'")
        if not isinstance(result[key], tp) or (tp is int and isinstance(result[key], bool)):
            raise UserError(f"{path}: field '{key}' has type {type(result[key]).__name__}")
    if result["schema"] != SCHEMA_VERSION:
        raise UserError(f"{path}: schema {result['schema']} (this nanorepro reads {SCHEMA_VERSION})")
    for check in result["claim_checks"]:
        if not isinstance(check, dict) or not {"key", "statement", "value", "passed"} <= check.keys():
            raise UserError(f"{path}: malformed claim check {check!r}")
    return result


def write_result(root: str | Path, result: dict) -> Path:
    validate_result(result, "<new result>")
    path = result_path(root, result["experiment"], result["profile"], result["seed"])
    return atomic_write_json(path, result)


def load_result(path: str | Path) -> dict:
    return validate_result(read_json(path, "result file"), path)


def load_runs(root: str | Path, experiment: str, profile: str) -> list[dict]:
    """All stored seeds of one experiment and profile, ordered by seed."""
    folder = run_dir(root, experiment, profile)
    if not folder.is_dir():
        return []
    seeded = []
    for path in folder.iterdir():
        match = _SEED_FILE.match(path.name)
        if match:
            seeded.append((int(match.group(1)), load_result(path)))
    return [result for _, result in sorted(seeded, key=lambda item: item[0])]
