import numpy as np
import pytest

from nanorepro.braking.controllers import (
    APPLY,
    HOLD,
    REAPPLY,
    RELEASE,
    ABSGrid,
    ABSParams,
    LockedWheels,
    NoisyABS,
    RuleBasedABS,
    SlipPI,
)
from nanorepro.braking.evaluation import ideal_distance, run_many, run_stops, tune_abs
from nanorepro.envs.braking import SURFACES, Randomisation, Road


def meas(slip, accel, u=0.0, v=20.0):
    """One measurement row: (v, w r, wheel accel, slip, last command)."""
    return np.array([[v, v * (1 - slip), accel, slip, u]])


def test_abs_state_machine_on_a_scripted_trace():
    p = ABSParams(hold_decel=20, release_slip=0.2, release_decel=80, reapply_accel=5, reapply_slip=0.05,
                  release_rate=0.3, reapply_step=0.05, reapply_fraction=0.5, accel_filter=0.0)
    abs_ = RuleBasedABS(p)
    abs_.reset(1, np.random.default_rng(0))
    assert abs_.act(meas(0.01, -5)) == 1.0 and abs_.phase[0] == APPLY  # gentle: keep building
    assert abs_.act(meas(0.05, -30)) == 1.0 and abs_.phase[0] == HOLD  # hard wheel deceleration: hold
    assert abs_.act(meas(0.25, -40)) == pytest.approx(0.7) and abs_.phase[0] == RELEASE  # slip too high: dump
    assert abs_.act(meas(0.22, -10)) == pytest.approx(0.4) and abs_.phase[0] == RELEASE
    # the wheel spins back up: re-apply at half the pressure that caused the release
    assert abs_.act(meas(0.1, 20)) == pytest.approx(0.5) and abs_.phase[0] == REAPPLY
    assert abs_.act(meas(0.08, 1)) == pytest.approx(0.55) and abs_.phase[0] == REAPPLY  # then in steps
    assert abs_.act(meas(0.1, -30)) == pytest.approx(0.55) and abs_.phase[0] == HOLD


def test_pi_reduces_pressure_when_slip_exceeds_the_target():
    pi = SlipPI(target=0.1, kp=1.0, ki=10.0, dt=0.01)
    pi.reset(1, np.random.default_rng(0))
    first = pi.act(meas(0.3, 0))[0]
    assert first == pytest.approx(1.0 - 1.0 * 0.2 - 10 * 0.01 * 0.2)
    assert pi.act(meas(0.3, 0))[0] < first


def test_noisy_abs_perturbs_per_stop_but_stays_in_range():
    noisy = NoisyABS(ABSParams())
    noisy.reset(500, np.random.default_rng(0))
    u = noisy.act(np.tile(meas(0.1, -30), (500, 1)))
    assert u.min() >= 0 and u.max() <= 1 and u.std() > 0.01
    assert noisy.abs.params.hold_decel.std() > 0  # thresholds differ stop by stop


def test_tuned_abs_beats_locked_wheels_and_is_documented_by_its_grid():
    roads = [Road(SURFACES["dry_asphalt"]), Road(SURFACES["snow"])]
    grid = ABSGrid(hold_decel=(10.0, 400.0), release_slip=(0.3,), reapply_accel=(10.0,), reapply_slip=(0.03,),
                   reapply_step=(0.01,), release_rate=(0.35,), reapply_fraction=(0.8,))
    best, table = tune_abs(grid, roads, np.array([20.0]), np.random.default_rng(0))
    assert len(table) == 2 and table[0][1] <= table[1][1]
    assert best.hold_decel == 10.0  # never holding (threshold 400 m/s^2) is the worse candidate
    results = run_many({"abs": RuleBasedABS(best), "locked": LockedWheels()}, roads, np.array([20.0]),
                       np.random.default_rng(0))
    assert np.all(results["abs"].distance < results["locked"].distance)
    assert np.all(results["abs"].lock_fraction < 0.1)


def test_run_many_equals_separate_runs_without_noise():
    from nanorepro.envs.braking import SimConfig

    kwargs = dict(randomisation=Randomisation(0, 0, 0), config=SimConfig(speed_noise=0.0))
    roads, speeds = [Road(SURFACES["wet_asphalt"])], np.array([18.0, 24.0])
    together = run_many({"pi": SlipPI(0.12), "locked": LockedWheels()}, roads, speeds, np.random.default_rng(0),
                        **kwargs)
    alone = run_stops(SlipPI(0.12), roads, speeds, np.random.default_rng(0), **kwargs)
    assert np.allclose(together["pi"].distance, alone.distance)
    assert np.all(together["pi"].distance >= ideal_distance(roads[0], speeds))
