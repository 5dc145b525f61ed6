"""The committed full-profile results are valid, and rerunning a seed reproduces them."""

from pathlib import Path

import pytest

from nanorepro.common.config import config_hash
from nanorepro.common.progress import ProgressBoard
from nanorepro.experiments import registry
from nanorepro.report.store import load_runs
from nanorepro.runner import run_one

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize("name", sorted(registry()))
def test_committed_full_results_match_the_current_profile(name):
    exp = registry()[name]
    runs = load_runs(RESULTS, name, "full")
    assert len(runs) == exp.profiles["full"].seeds, f"commit the full results of {name}"
    assert {r["config_hash"] for r in runs} == {config_hash(exp.profiles["full"].config)}, (
        f"{name}: the full profile changed since its results were committed; rerun "
        f"`nanorepro reproduce --only {name} --profile full --force`")


def test_rerunning_a_committed_seed_reproduces_its_metrics(tmp_path):
    """`nanorepro run dual_qdm_cliff --profile full --seed 0` gives the committed numbers (~25 s)."""
    exp = registry()["dual_qdm_cliff"]
    [committed] = [r for r in load_runs(RESULTS, exp.name, "full") if r["seed"] == 0]
    with ProgressBoard(enabled=False) as board:
        fresh = run_one(exp, "full", 0, results_root=tmp_path, board=board).result
    assert fresh["metrics"]["horizons"] == committed["metrics"]["horizons"]
    for H, horizon in committed["metrics"]["per_horizon"].items():
        for learner, values in horizon["learners"].items():
            for key in ("gap_greedy", "gap_stochastic", "uncovered_pi_star_sum"):
                assert fresh["metrics"]["per_horizon"][H]["learners"][learner][key] == pytest.approx(
                    values[key], abs=1e-6), (H, learner, key)
        assert fresh["metrics"]["per_horizon"][H]["bc_datasets_gap_sum"] == pytest.approx(
            horizon["bc_datasets_gap_sum"], rel=1e-9)
    assert [c["passed"] for c in fresh["claim_checks"]] == [c["passed"] for c in committed["claim_checks"]]
