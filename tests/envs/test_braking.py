import math

import numpy as np
import pytest

from nanorepro.common.errors import UserError
from nanorepro.envs.braking import (
    SURFACES,
    BrakingEnv,
    BrakingSim,
    Randomisation,
    Road,
    SimConfig,
    Surface,
    TyreCurve,
    Vehicle,
    _mu_and_slope,
    blend,
    parse_road,
    parse_surface,
)

QUIET = dict(randomisation=Randomisation(0.0, 0.0, 0.0), config=SimConfig(speed_noise=0.0))


@pytest.mark.parametrize("name", ["dry_asphalt", "wet_asphalt", "dry_concrete", "dry_cobblestone", "wet_cobblestone",
                                  "snow"])
def test_burckhardt_peak_slip_matches_closed_form(name):
    curve = SURFACES[name].curves[0][1]
    c1, c2, c3 = curve.params
    slip, mu = curve.peak()
    assert slip == pytest.approx(math.log(c1 * c2 / c3) / c2)
    grid = np.linspace(0, 1, 200001)
    assert grid[np.argmax(curve.mu(grid))] == pytest.approx(slip, abs=1e-4)
    assert mu == pytest.approx(curve.mu(grid).max(), abs=1e-7)


def test_textbook_values():
    assert SURFACES["dry_asphalt"].peak() == pytest.approx((0.170, 1.170), abs=2e-3)
    assert SURFACES["snow"].peak() == pytest.approx((0.060, 0.190), abs=2e-3)
    assert SURFACES["ice"].peak()[0] == 1.0  # c3 = 0: friction keeps rising, no interior peak


@pytest.mark.parametrize("kind, params", [("burckhardt", (1.2801, 23.99, 0.52)), ("pacejka", (10.0, 1.9, 1.0, 0.97)),
                                          ("pacejka", (12.0, 2.3, 0.82, 1.0))])
def test_analytic_slope_matches_finite_differences(kind, params):
    slip = np.linspace(0.01, 0.99, 50)
    p = np.array((*params, 0.0)[:4])
    kind_id = 0 if kind == "burckhardt" else 1
    mu, slope = _mu_and_slope(slip, kind_id, p)
    h = 1e-6
    numeric = (_mu_and_slope(slip + h, kind_id, p)[0] - _mu_and_slope(slip - h, kind_id, p)[0]) / (2 * h)
    assert np.allclose(slope, numeric, rtol=1e-5, atol=1e-6)
    assert np.allclose(mu, TyreCurve(kind, params).mu(slip))


def test_blend_is_the_weighted_mixture():
    slush = blend("slush", (0.25, SURFACES["wet_asphalt"]), (0.75, SURFACES["snow"]))
    slip = np.linspace(0, 1, 11)
    assert np.allclose(slush.mu(slip), 0.25 * SURFACES["wet_asphalt"].mu(slip) + 0.75 * SURFACES["snow"].mu(slip))


def stop(u_fn, road="dry_asphalt", v0=25.0, n=1, **kwargs):
    sim = BrakingSim(n, **{**QUIET, **kwargs})
    sim.reset(np.full(n, v0), [parse_road(road)] * n, np.random.default_rng(0))
    history = []
    while not sim.done.all():
        history.append((sim.v.copy(), sim.w.copy(), sim.slip().copy(), sim.p.copy()))
        sim.step(u_fn(len(history)))
    return sim, history


def test_energy_never_increases_and_the_wheel_never_outruns_the_car():
    rng = np.random.default_rng(1)
    sim, history = stop(lambda _: rng.random(1))
    veh = Vehicle()
    energy = [0.5 * veh.mass_kg * v[0] ** 2 + 0.5 * veh.wheel_inertia * w[0] ** 2 for v, w, _, _ in history]
    assert np.all(np.diff(energy) <= 1e-6)
    assert all(0 <= s[0] <= 1 for *_, s, _ in history)
    assert all(w[0] * veh.wheel_radius_m <= v[0] * 1.02 + 1e-9 for v, w, _, _ in history)


def test_locked_wheels_stop_like_the_sliding_friction_predicts():
    for name in ("dry_asphalt", "wet_asphalt", "snow"):
        sim, _ = stop(lambda _: np.ones(1), road=name, v0=20.0)
        ideal = 20.0**2 / (2 * 9.81 * SURFACES[name].locked_mu())
        # the brake needs ~30 ms to build up and drag helps a little: within 6%
        assert sim.stats.distance[0] == pytest.approx(ideal, rel=0.06)
        assert sim.stats.locked_time[0] / sim.t[0] > 0.9


def test_stopping_distance_is_monotone_in_speed_and_grip():
    distances = {}
    for name in ("dry_asphalt", "wet_asphalt", "snow"):
        sim = BrakingSim(3, **QUIET)
        sim.reset(np.array([15.0, 20.0, 25.0]), [Road(SURFACES[name])] * 3, np.random.default_rng(0))
        while not sim.done.all():
            sim.step(np.ones(3))
        assert np.all(np.diff(sim.stats.distance) > 0)
        distances[name] = sim.stats.distance[1]
    assert distances["dry_asphalt"] < distances["wet_asphalt"] < distances["snow"]


def test_dead_time_delays_the_brake():
    sim = BrakingSim(1, vehicle=Vehicle(dead_time_s=0.01), **QUIET)
    sim.reset(np.array([20.0]), [Road(SURFACES["dry_asphalt"])], np.random.default_rng(0))
    sim.step(np.ones(1))
    assert sim.p[0] == 0.0  # a 10 ms dead time: nothing reaches the calliper in the first control step
    sim.step(np.ones(1))
    assert 0 < sim.p[0] < 1  # then the first-order lag


def test_mid_stop_surface_change():
    road = parse_road({"before": "dry_asphalt", "after": "ice", "switch_s": 0.5})
    sim_change, _ = stop(lambda _: np.ones(1), road=road, v0=20.0)
    sim_dry, _ = stop(lambda _: np.ones(1), road="dry_asphalt", v0=20.0)
    assert sim_change.stats.distance[0] > 2 * sim_dry.stats.distance[0]


def test_surface_specs_and_errors():
    assert parse_surface('{"c1": 1.0, "c2": 20, "c3": 0.4}').peak()[0] == pytest.approx(math.log(50) / 20)
    assert isinstance(parse_surface({"blend": [[1, "snow"], [1, {"B": 10, "C": 1.9, "D": 1, "E": 0.97}]]}), Surface)
    with pytest.raises(UserError, match="unknown surface"):
        parse_surface("lava")
    with pytest.raises(UserError, match="c1 > 0"):
        parse_surface({"c1": -1, "c2": 20, "c3": 0.4})
    with pytest.raises(UserError, match="not a physical tyre"):
        parse_surface({"c1": 5, "c2": 20, "c3": 0.4})
    with pytest.raises(UserError, match="expected keys"):
        parse_surface({"mu": 0.8})


@pytest.mark.parametrize("change, message", [({"mass_kg": -1.0}, "mass_kg"),
                                             ({"actuator_lag_s": 0.0}, "actuator_lag_s"),
                                             ({"dead_time_s": 0.5}, "dead_time_s")])
def test_impossible_vehicles_are_rejected(change, message):
    with pytest.raises(UserError, match=message):
        BrakingSim(1, vehicle=Vehicle(**change))


def test_gymnasium_env_checker_passes():
    from gymnasium.utils.env_checker import check_env

    env = BrakingEnv()
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0, options={"road": "wet_cobblestone", "speed": 20.0})
    assert env.observation_space.contains(obs) and info["road"] == "wet_cobblestone"
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(np.array([0.4], dtype=np.float32))
        total += reward
        done = terminated or truncated
    assert terminated and info["stopping_distance"] > 0
    assert -total >= info["stopping_distance"] * 0.99  # reward is minus distance, minus penalties
