import numpy as np
import pytest

from nanorepro.common.seeding import rng_stream
from nanorepro.imitation.cliff import (
    CHECKS,
    CliffConfig,
    bc_gap_growth,
    bc_gap_over_datasets,
    dqdm_ail_difference,
    expected_bc_gap,
    iq_e_matches_bc,
)


def test_expected_bc_gap_by_hand():
    # S=2, N=1: one state per step is undemonstrated (q = 1/2); BC guesses right half the time there.
    assert expected_bc_gap(1, n_states=2, n_actions=2, n_demos=1) == pytest.approx(0.25)
    # Two steps: E[m] = 3/4, V = 3/4 + 9/16.
    assert expected_bc_gap(2, n_states=2, n_actions=2, n_demos=1) == pytest.approx(2 - 0.75 - 0.5625)


def test_bc_monte_carlo_matches_closed_form():
    cfg = CliffConfig(n_states=5, n_demos=5)
    gaps = bc_gap_over_datasets(cfg, 8, 4000, rng_stream(0, "test"))
    expected = expected_bc_gap(8, 5, 2, 5)
    assert abs(gaps.mean() - expected) <= 4 * gaps.std() / np.sqrt(gaps.size)


def test_bc_gap_is_superlinear_in_horizon():
    """The compounding-error signature the paper starts from: ~ H^2 while errors are rare."""
    ratio = expected_bc_gap(80, 10, 2, 50) / expected_bc_gap(10, 10, 2, 50)
    assert 50 < ratio < 64  # quadratic would be 80*81 / (10*11) = 58.9 before saturation


def fake_runs():
    """Two seeds, two horizons, hand-chosen numbers for the claim-check measures."""
    def learner(gap, dist=0.0):
        return {"gap_greedy": gap, "gap_stochastic": gap, "uncovered_pi_star_sum": 1.0,
                "uncovered_greedy_pi_star_sum": 1.0, "greedy_dist_to_bc": dist, "curve": []}

    def horizon(dqdm, ail, dist, bc_sum):
        return {"n_uncovered": 2, "bc_datasets_gap_sum": bc_sum, "bc_datasets": 10, "bc_gap_expected": 1.0,
                "learners": {"bc": learner(1.0), "iq_e": learner(1.0, dist), "iq_m": learner(0.0),
                             "dqdm": learner(dqdm), "ail": learner(ail)}}

    return [
        {"horizons": [10, 80], "per_horizon": {"10": horizon(0.0, 0.1, 0.0, 1.0), "80": horizon(0.0, 0.0, 0.5, 50.0)}},
        {"horizons": [10, 80], "per_horizon": {"10": horizon(0.0, 0.0, 0.0, 1.0), "80": horizon(0.02, 0.0, 0.0, 30.0)}},
    ]


def test_claim_measures_on_hand_made_metrics():
    runs = fake_runs()
    assert iq_e_matches_bc(runs) == pytest.approx(3 / 4)
    assert bc_gap_growth(runs) == pytest.approx((80 / 20) / (2 / 20))
    assert dqdm_ail_difference(runs) == pytest.approx(0.05)  # H=10: |0 - 0.05|; H=80: |0.01 - 0|
    checks = {c.key: c.evaluate(runs) for c in CHECKS}
    assert checks["A1a"]["passed"] is False and checks["A2"]["passed"] is True
    assert checks["A3a"]["value"] == pytest.approx(0.01) and checks["A3a"]["passed"] is True
    assert checks["A3b"]["value"] == pytest.approx(0.5)  # pooled: 2 * 2 * 1.0 / (2 * 2 * 2)
    assert checks["R1"]["passed"] is None  # reported, never judged
    assert checks["A1a"]["seed_std"] == pytest.approx(np.std([0.5, 1.0], ddof=1))


def test_config_validation_rejects_nonsense():
    with pytest.raises(ValueError, match="horizons"):
        CliffConfig(horizons=(20, 10)).validate()
    with pytest.raises(ValueError, match="box_low"):
        CliffConfig(box_low=1.0, box_high=-1.0).validate()
