"""Running experiments: one (experiment, profile, seed) at a time, or a whole profile.

``run_one`` writes ``results/NAME/PROFILE/seedS.json`` atomically and keeps a checkpoint
beside it while it runs, so a killed run resumes where it stopped. A run with ``--set``
overrides is stored under ``PROFILE-custom-<hash>`` so it never overwrites a profile's
results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from nanorepro.common.config import apply_overrides, config_dict, config_hash, validate
from nanorepro.common.device import describe_device, pick_device, set_threads
from nanorepro.common.errors import UserError
from nanorepro.common.experiment import PROFILES, Experiment, RunContext
from nanorepro.common.progress import ProgressBoard
from nanorepro.common.provenance import git_commit, package_version
from nanorepro.common.seeding import seed_everything
from nanorepro.experiments import get_experiment, registry
from nanorepro.report.store import checkpoint_path, load_result, result_path, write_result


@dataclass(frozen=True)
class RunOutcome:
    result: dict
    path: Path
    skipped: bool  # an up-to-date stored result was reused


def check_profile(profile: str, exp: Experiment | None = None) -> str:
    """Every experiment has the profiles in PROFILES; some add their own (hybrid_lm's "gpu")."""
    known = list(exp.profiles) if exp is not None else \
        [*PROFILES, *sorted({p for e in registry().values() for p in e.profiles} - set(PROFILES))]
    if profile not in known:
        where = f" for {exp.name}" if exp is not None else ""
        raise UserError(f"unknown profile '{profile}'{where} (choose from {', '.join(known)})")
    return profile


def resolve_config(exp: Experiment, profile: str, overrides: list[str]):
    config = exp.profiles[check_profile(profile, exp)].config
    if not overrides:
        validate(config)
        return config, profile
    config = apply_overrides(config, overrides)
    return config, f"{profile}-custom-{config_hash(config)}"


def run_one(
    exp: Experiment,
    profile: str,
    seed: int,
    *,
    results_root: str | Path,
    board: ProgressBoard,
    overrides: list[str] | None = None,
    skip_existing: bool = False,
    threads: int | None = None,
    device: str | None = None,
) -> RunOutcome:
    if seed < 0:
        raise UserError(f"seed must be >= 0, got {seed}")
    config, label = resolve_config(exp, profile, overrides or [])
    digest = config_hash(config)
    path = result_path(results_root, exp.name, label, seed)
    if skip_existing and path.exists():
        stored = load_result(path)
        if stored["config_hash"] == digest:
            return RunOutcome(stored, path, skipped=True)
        board.log(f"{path}: stored config differs from the current one; running again")

    previous_threads = torch.get_num_threads()
    set_threads(threads if threads is not None else exp.threads)
    torch_device = pick_device(device or exp.device)
    seed_everything(seed)
    ctx = RunContext(
        seed=seed,
        device=torch_device,
        board=board,
        checkpoint_path=checkpoint_path(results_root, exp.name, label, seed),
        config_hash=digest,
    )
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        metrics = exp.run(config, ctx)
    finally:
        wall = time.perf_counter() - t0
        device_info = describe_device(torch_device)
        torch.set_num_threads(previous_threads)
    result = {
        "schema": 1,
        "experiment": exp.name,
        "system": exp.system,
        "profile": label,
        "seed": seed,
        "config": config_dict(config),
        "config_hash": digest,
        "overrides": list(overrides or []),
        "metrics": metrics,
        "claim_checks": [check.evaluate([metrics]) for check in exp.checks],
        "version": package_version(),
        "git_commit": git_commit(),
        "device": device_info,
        "wall_time_s": round(wall, 3),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "resumed": ctx.resumed,
    }
    path = write_result(results_root, result)
    ctx.checkpoint_path.unlink(missing_ok=True)  # only once the result is safely on disk
    return RunOutcome(result, path, skipped=False)


def select_experiments(only: list[str] | None) -> list[Experiment]:
    if not only:
        return list(registry().values())
    return [get_experiment(name) for name in only]


def reproduce(
    profile: str,
    *,
    only: list[str] | None,
    force: bool,
    results_root: str | Path,
    board: ProgressBoard,
) -> list[str]:
    """Run every seed of every selected experiment (finished runs are skipped unless ``force``).

    Returns the failures as ``"name seed S: error"`` lines; one failure does not stop the rest.
    """
    check_profile(profile)
    experiments = [exp for exp in select_experiments(only) if profile in exp.profiles]
    jobs = [(exp, seed) for exp in experiments for seed in range(exp.profiles[profile].seeds)]
    overall = board.task(f"reproduce --profile {profile}", total=len(jobs))
    failures = []
    for exp, seed in jobs:
        try:
            outcome = run_one(exp, profile, seed, results_root=results_root, board=board, skip_existing=not force)
        except UserError:
            raise
        except Exception as exc:  # keep going: one broken experiment must not hide the others
            board.log(f"[red]FAILED[/red] {exp.name} seed {seed}: {type(exc).__name__}: {exc}")
            failures.append(f"{exp.name} seed {seed}: {type(exc).__name__}: {exc}")
        else:
            status = "up to date" if outcome.skipped else f"{outcome.result['wall_time_s']:.1f}s"
            board.log(f"{exp.name} seed {seed}: {status} -> {outcome.path}")
        overall.advance()
    return failures
