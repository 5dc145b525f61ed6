"""Straight-line emergency braking: a quarter-car with a tyre curve, a lagging brake and noisy sensors.

Physics (our reconstruction of the textbook quarter-car; ``docs/reinvbc.md``):

    m dv/dt = -mu(lambda) m g - c_d v^2                     vehicle
    J dw/dt = r mu(lambda) m g - T_b,   w >= 0               wheel
    lambda  = (v - w r) / max(v, v_min)                      longitudinal slip, in [0, 1]
    T_b     = T_max p,  dp/dt = (u(t - tau_d) - p) / tau_a   brake: dead time, then first-order lag

integrated at 1 ms with control every 10 ms. The wheel mode is stiff at low speed
(d(dw/dt)/dw ~ -r^2 m g mu'(lambda) / (J v)), so the wheel update is linearly implicit
(one Newton step of backward Euler), which stays stable where explicit Euler blows up.

Road surfaces are data: a ``Surface`` is a weighted blend of tyre curves (Burckhardt or
Pacejka), and a ``Road`` may switch surface mid-stop. ``SURFACES`` ships the standard
Burckhardt table. ``BrakingSim`` runs N stops at once (vectorised NumPy);
``BrakingEnv`` is the single-stop Gymnasium environment.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from nanorepro.common.errors import UserError

# --------------------------------------------------------------------------- tyre curves and surfaces

TyreKind = Literal["burckhardt", "pacejka"]
_BURCKHARDT, _PACEJKA = 0, 1
_SLIP_GRID = np.linspace(0.0, 1.0, 20001)


@dataclass(frozen=True)
class TyreCurve:
    """mu(lambda) for lambda in [0, 1].

    Burckhardt: mu = c1 (1 - exp(-c2 lambda)) - c3 lambda, peak at ln(c1 c2 / c3) / c2.
    Pacejka:    mu = D sin(C atan(B lambda - E (B lambda - atan(B lambda)))).
    """

    kind: TyreKind
    params: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind == "burckhardt":
            if len(self.params) != 3:
                raise UserError(f"a Burckhardt curve needs (c1, c2, c3), got {self.params}")
            c1, c2, c3 = self.params
            if c1 <= 0 or c2 <= 0 or c3 < 0:
                raise UserError(f"Burckhardt parameters must have c1 > 0, c2 > 0, c3 >= 0, got {self.params}")
        elif self.kind == "pacejka":
            if len(self.params) != 4:
                raise UserError(f"a Pacejka curve needs (B, C, D, E), got {self.params}")
            B, C, D, E = self.params
            if B <= 0 or C <= 0 or D <= 0 or E > 1:
                raise UserError(f"Pacejka parameters need B > 0, C > 0, D > 0, E <= 1, got {self.params}")
        else:
            raise UserError(f"unknown tyre model '{self.kind}' (burckhardt or pacejka)")
        if not all(math.isfinite(p) for p in self.params):
            raise UserError(f"tyre parameters must be finite, got {self.params}")
        mu = self.mu(_SLIP_GRID)
        if mu.max() > 2.0 or mu.min() < -1e-9:
            raise UserError(f"{self.kind} {self.params} gives friction outside [0, 2]: not a physical tyre")

    def mu(self, slip: np.ndarray) -> np.ndarray:
        return _mu(np.asarray(slip, dtype=float), _KIND[self.kind], np.array(self._padded()),
                   pacejka=self.kind == "pacejka")

    def _padded(self) -> tuple[float, float, float, float]:
        return (*self.params, 0.0)[:4] if self.kind == "burckhardt" else self.params

    def peak(self) -> tuple[float, float]:
        """(lambda*, mu*); closed form for Burckhardt (lambda* = 1 when c3 = 0 or c1 c2 <= c3)."""
        if self.kind == "burckhardt":
            c1, c2, c3 = self.params
            slip = min(1.0, math.log(c1 * c2 / c3) / c2) if c3 > 0 and c1 * c2 > c3 else 1.0
            return slip, float(self.mu(np.array(slip)))
        return _grid_peak(self.mu(_SLIP_GRID))


_KIND = {"burckhardt": _BURCKHARDT, "pacejka": _PACEJKA}


def _mu(slip: np.ndarray, kind: np.ndarray | int, p: np.ndarray, pacejka: bool = True) -> np.ndarray:
    """Vectorised mu for parameter rows ``p[..., 0:4]`` (Burckhardt rows use the first three)."""
    return _mu_and_slope(slip, kind, p, pacejka)[0]


def _mu_and_slope(slip: np.ndarray, kind: np.ndarray | int, p: np.ndarray, pacejka: bool = True):
    """mu(lambda) and d mu / d lambda, analytically; ``pacejka=False`` skips the Pacejka branch."""
    a, b, c, d = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    decay = np.exp(-b * slip)
    mu = a * (1.0 - decay) - c * slip
    slope = a * b * decay - c
    if pacejka:  # (a, b, c, d) = (B, C, D, E)
        bx = a * slip
        phi = bx - d * (bx - np.arctan(bx))
        angle = b * np.arctan(phi)
        mu_p = c * np.sin(angle)
        slope_p = c * np.cos(angle) * b / (1.0 + phi * phi) * (a - d * (a - a / (1.0 + bx * bx)))
        is_b = kind == _BURCKHARDT
        mu, slope = np.where(is_b, mu, mu_p), np.where(is_b, slope, slope_p)
    return mu, slope


def _grid_peak(mu_grid: np.ndarray) -> tuple[float, float]:
    i = int(np.argmax(mu_grid))
    return float(_SLIP_GRID[i]), float(mu_grid[i])


@dataclass(frozen=True)
class Surface:
    """A road surface: a blend ``sum_i w_i mu_i(lambda)`` of tyre curves (weights sum to 1)."""

    name: str
    curves: tuple[tuple[float, TyreCurve], ...]

    def __post_init__(self) -> None:
        if not self.curves:
            raise UserError(f"surface '{self.name}' has no tyre curve")
        weights = [w for w, _ in self.curves]
        if min(weights) < 0 or abs(sum(weights) - 1.0) > 1e-6:
            raise UserError(f"surface '{self.name}': blend weights must be >= 0 and sum to 1, got {weights}")

    @classmethod
    def burckhardt(cls, name: str, c1: float, c2: float, c3: float) -> Surface:
        return cls(name, ((1.0, TyreCurve("burckhardt", (c1, c2, c3))),))

    @classmethod
    def pacejka(cls, name: str, B: float, C: float, D: float, E: float) -> Surface:
        return cls(name, ((1.0, TyreCurve("pacejka", (B, C, D, E))),))

    def mu(self, slip: np.ndarray) -> np.ndarray:
        return sum(w * curve.mu(slip) for w, curve in self.curves)

    def peak(self) -> tuple[float, float]:
        if len(self.curves) == 1:
            return self.curves[0][1].peak()
        return _grid_peak(self.mu(_SLIP_GRID))

    def locked_mu(self) -> float:
        return float(self.mu(np.array(1.0)))


def blend(name: str, *parts: tuple[float, Surface]) -> Surface:
    """Mix surfaces (a wet patch over asphalt, slush over snow): weights are renormalised."""
    total = sum(w for w, _ in parts)
    if total <= 0:
        raise UserError("blend weights must sum to a positive number")
    return Surface(name, tuple((w / total * cw, curve) for w, s in parts for cw, curve in s.curves))


# Burckhardt parameters (c1, c2, c3), the commonly tabulated values (Burckhardt 1993; e.g.
# Kiencke & Nielsen, Automotive Control Systems). Pacejka presets: MathWorks' Magic Formula block.
SURFACES: dict[str, Surface] = {
    s.name: s
    for s in (
        Surface.burckhardt("dry_asphalt", 1.2801, 23.99, 0.52),
        Surface.burckhardt("wet_asphalt", 0.857, 33.822, 0.347),
        Surface.burckhardt("dry_concrete", 1.1973, 25.168, 0.5373),
        Surface.burckhardt("dry_cobblestone", 1.3713, 6.4565, 0.6691),
        Surface.burckhardt("wet_cobblestone", 0.4004, 33.708, 0.1204),
        Surface.burckhardt("snow", 0.1946, 94.129, 0.0646),
        Surface.burckhardt("ice", 0.05, 306.39, 0.0),
        Surface.pacejka("pacejka_dry_tarmac", 10.0, 1.9, 1.0, 0.97),
        Surface.pacejka("pacejka_wet_tarmac", 12.0, 2.3, 0.82, 1.0),
        Surface.pacejka("pacejka_snow", 5.0, 2.0, 0.3, 1.0),
        Surface.pacejka("pacejka_ice", 4.0, 2.0, 0.1, 1.0),
    )
}


@dataclass(frozen=True)
class Road:
    """What one stop drives on: ``before`` until ``switch_s`` seconds into the stop, then ``after``."""

    before: Surface
    after: Surface | None = None
    switch_s: float = math.inf

    def __post_init__(self) -> None:
        if self.after is not None and not (self.switch_s >= 0 and math.isfinite(self.switch_s)):
            raise UserError(f"a surface change needs a finite switch time >= 0, got {self.switch_s}")

    @property
    def name(self) -> str:
        if self.after is None:
            return self.before.name
        return f"{self.before.name}->{self.after.name}@{self.switch_s:g}s"

    def surface_at(self, t: float) -> Surface:
        return self.before if self.after is None or t < self.switch_s else self.after


def parse_surface(spec: Any, name: str = "custom") -> Surface:
    """A surface from a name in ``SURFACES`` or a JSON object (or its text).

    {"c1": .., "c2": .., "c3": ..}                     Burckhardt
    {"B": .., "C": .., "D": .., "E": ..}               Pacejka
    {"blend": [[0.5, "wet_asphalt"], [0.5, {...}]]}    a blend of surfaces
    """
    if isinstance(spec, Surface):
        return spec
    if isinstance(spec, str):
        if spec in SURFACES:
            return SURFACES[spec]
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            raise UserError(f"unknown surface '{spec}' (known: {', '.join(SURFACES)}; or give JSON)") from None
    if not isinstance(spec, dict):
        raise UserError(f"a surface must be a name or a JSON object, got {spec!r}")
    keys = set(spec) - {"name"}
    name = spec.get("name", name)
    try:
        if keys == {"c1", "c2", "c3"}:
            return Surface.burckhardt(name, *(float(spec[k]) for k in ("c1", "c2", "c3")))
        if keys == {"B", "C", "D", "E"}:
            return Surface.pacejka(name, *(float(spec[k]) for k in ("B", "C", "D", "E")))
        if keys == {"blend"}:
            return blend(name, *((float(w), parse_surface(s)) for w, s in spec["blend"]))
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad surface {spec!r}: {exc}") from None
    raise UserError(f"bad surface {spec!r}: expected keys c1,c2,c3 or B,C,D,E or blend")


def parse_road(spec: Any) -> Road:
    """A road: a surface spec, or {"before": surface, "after": surface, "switch_s": seconds}."""
    if isinstance(spec, Road):
        return spec
    if isinstance(spec, str) and spec not in SURFACES:
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            pass
    if isinstance(spec, dict) and "before" in spec:
        if set(spec) - {"before", "after", "switch_s"}:
            raise UserError(f"bad road {spec!r}: expected keys before, after, switch_s")
        return Road(parse_surface(spec["before"]), parse_surface(spec["after"]), float(spec.get("switch_s", 1.0)))
    return Road(parse_surface(spec))


# --------------------------------------------------------------------------- vehicle and simulation settings


@dataclass(frozen=True)
class Vehicle:
    """One corner of a passenger car (quarter-car); the notes' typical values."""

    mass_kg: float = 350.0
    wheel_radius_m: float = 0.31
    wheel_inertia: float = 1.2  # kg m^2
    max_brake_torque: float = 2500.0  # N m at full pressure
    actuator_lag_s: float = 0.02  # first-order lag tau_a
    dead_time_s: float = 0.01  # tau_d, <= 3 control periods
    drag: float = 0.1  # N / (m/s)^2: a quarter of 0.5 rho c_d A
    friction_scale: float = 1.0  # multiplies mu (tyre wear, temperature)

    def validate(self, control_dt_s: float) -> None:
        positive = ("mass_kg", "wheel_radius_m", "wheel_inertia", "max_brake_torque", "actuator_lag_s",
                    "friction_scale")
        for name in positive:
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise UserError(f"vehicle {name} must be positive and finite, got {value}")
        if self.drag < 0 or not 0 <= self.dead_time_s <= 3 * control_dt_s:
            raise UserError(f"need drag >= 0 and 0 <= dead_time_s <= {3 * control_dt_s:g}, "
                            f"got {self.drag}, {self.dead_time_s}")


@dataclass(frozen=True)
class Randomisation:
    """Per-stop uniform perturbations, as fractions of the nominal value (+-)."""

    mass: float = 0.1
    friction: float = 0.1
    actuator_lag: float = 0.1


@dataclass(frozen=True)
class SimConfig:
    dt_s: float = 0.001  # integration step
    control_dt_s: float = 0.01  # one action per control step
    stop_speed: float = 0.5  # m/s: the stop is over
    max_time_s: float = 70.0  # truncation (a stop on ice from 30 m/s takes ~61 s)
    slip_speed_floor: float = 0.5  # v_min in lambda = (v - w r) / max(v, v_min)
    speed_noise: float = 0.02  # sensor noise std, m/s, on both measured speeds
    lock_ratio: float = 0.05  # "locked" when w r < lock_ratio * v
    deep_slip: float = 0.35  # slip above this counts as a deep-slip step
    reward_distance_scale: float = 1.0  # r = -(v dt) / scale - c_s [deep slip] - c_l [locked] - c_u |du|
    reward_deep_slip: float = 0.05  # per step: comparable to the distance cost at ~5-20 m/s,
    reward_locked: float = 0.2  # so that a locked wheel (no steering) is never worth it
    reward_chatter: float = 0.01

    @property
    def substeps(self) -> int:
        return int(round(self.control_dt_s / self.dt_s))

    def validate(self) -> None:
        if self.dt_s <= 0 or self.control_dt_s < self.dt_s or abs(self.substeps * self.dt_s - self.control_dt_s) > 1e-9:
            raise UserError("control_dt_s must be a positive multiple of dt_s")
        if self.stop_speed <= 0 or self.max_time_s <= 0 or self.slip_speed_floor <= 0:
            raise UserError("stop_speed, max_time_s and slip_speed_floor must be positive")


# Measurements the controller sees each control step (what a wheel-speed ABS can know).
MEASUREMENTS = ("vehicle_speed", "wheel_speed", "wheel_accel", "slip", "last_command")


# --------------------------------------------------------------------------- the vectorised simulator


@dataclass
class StopStats:
    """Per-stop accumulators (control-step resolution), filled while the stop runs."""

    distance: np.ndarray
    time: np.ndarray
    locked_time: np.ndarray
    deep_slip_time: np.ndarray
    slip_error_sum: np.ndarray  # sum over steps of |lambda - lambda*(surface now)|
    chatter: np.ndarray  # sum |u_t - u_{t-1}|
    steps: np.ndarray


class BrakingSim:
    """N independent stops integrated together. ``reset`` then ``step(u)`` until ``done.all()``.

    Finished stops freeze (their state stops changing); ``step`` keeps accepting actions
    for them so that a batch can run in lockstep.
    """

    def __init__(self, n: int, vehicle: Vehicle = Vehicle(), config: SimConfig = SimConfig(),
                 randomisation: Randomisation = Randomisation()):
        config.validate()
        vehicle.validate(config.control_dt_s)
        self.n, self.vehicle, self.config, self.randomisation = n, vehicle, config, randomisation
        self._history_len = int(math.ceil(3 * config.control_dt_s / config.dt_s / config.substeps)) + 2

    # -- setup ---------------------------------------------------------------------------------

    def reset(self, v0: np.ndarray, roads: list[Road], rng: np.random.Generator, randomise: bool = True) -> np.ndarray:
        """Start N stops at speeds ``v0`` (m/s) on ``roads``; returns the first measurements (N, 5)."""
        n, veh, cfg = self.n, self.vehicle, self.config
        v0 = np.broadcast_to(np.asarray(v0, dtype=float), (n,)).copy()
        if len(roads) != n:
            raise UserError(f"need one road per stop: {n} stops, {len(roads)} roads")
        if np.any(~np.isfinite(v0)) or np.any(v0 <= cfg.stop_speed) or np.any(v0 > 80):
            raise UserError(f"initial speeds must be in ({cfg.stop_speed}, 80] m/s")
        self.rng = rng
        rand = self.randomisation if randomise else Randomisation(0.0, 0.0, 0.0)

        def perturb(value: float, frac: float) -> np.ndarray:
            return value * (1.0 + rng.uniform(-frac, frac, n)) if frac > 0 else np.full(n, value)

        self.mass = perturb(veh.mass_kg, rand.mass)
        self.mu_scale = perturb(veh.friction_scale, rand.friction)
        self.lag = perturb(veh.actuator_lag_s, rand.actuator_lag)
        self.dead_substeps = int(round(veh.dead_time_s / cfg.dt_s))
        self.roads = list(roads)
        self.kind_before, self.params_before, self.weight_before = _pack([r.before for r in roads])
        after = [r.after or r.before for r in roads]
        self.kind_after, self.params_after, self.weight_after = _pack(after)
        self.switch_s = np.array([r.switch_s for r in roads])
        self.has_switch = bool(np.isfinite(self.switch_s).any())
        self.has_pacejka = bool((self.kind_before == _PACEJKA).any() or (self.kind_after == _PACEJKA).any())
        peaks_before = np.array([r.before.peak()[0] for r in roads])
        peaks_after = np.array([(r.after or r.before).peak()[0] for r in roads])
        self.peak_slip = (peaks_before, peaks_after)

        self.v = v0.copy()
        self.w = v0 / veh.wheel_radius_m  # rolling freely
        self.p = np.zeros(n)
        self.t = np.zeros(n)
        self.u_history = np.zeros((n, self._history_len))  # [0] = newest command
        self.done = np.zeros(n, dtype=bool)
        self.truncated = np.zeros(n, dtype=bool)
        self.stats = StopStats(*(np.zeros(n) for _ in range(7)))
        self._last_wheel_meas = self.w * veh.wheel_radius_m
        return self._measure(np.zeros(n))

    # -- dynamics ------------------------------------------------------------------------------

    def friction(self, slip: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mu(lambda) and its slope for each stop's surface at time t, times its friction scale."""
        mu, slope = self._blend(slip, self.kind_before, self.params_before, self.weight_before)
        if self.has_switch:
            mu_a, slope_a = self._blend(slip, self.kind_after, self.params_after, self.weight_after)
            after = t >= self.switch_s
            mu, slope = np.where(after, mu_a, mu), np.where(after, slope_a, slope)
        return self.mu_scale * mu, self.mu_scale * slope

    def _blend(self, slip, kind, params, weight):
        if kind.shape[1] == 1:
            return _mu_and_slope(slip, kind[:, 0], params[:, 0], self.has_pacejka)
        mu, slope = _mu_and_slope(slip[:, None], kind, params, self.has_pacejka)
        return (weight * mu).sum(-1), (weight * slope).sum(-1)

    def slip(self) -> np.ndarray:
        r = self.vehicle.wheel_radius_m
        return np.clip((self.v - self.w * r) / np.maximum(self.v, self.config.slip_speed_floor), 0.0, 1.0)

    def step(self, u: np.ndarray):
        """Apply pressure commands u in [0, 1] for one control period.

        Returns (measurements (N, 5), reward (N,), terminated (N,), truncated (N,)).
        """
        veh, cfg = self.vehicle, self.config
        u = np.clip(np.nan_to_num(np.asarray(u, dtype=float), nan=0.0), 0.0, 1.0)
        live = ~self.done
        prev_u = self.u_history[:, 0].copy()
        self.u_history = np.roll(self.u_history, 1, axis=1)
        self.u_history[:, 0] = u
        r, J, dt = veh.wheel_radius_m, veh.wheel_inertia, cfg.dt_s
        lag_gain = 1.0 - np.exp(-dt / self.lag)
        normal = self.mass * 9.81
        v0 = self.v.copy()
        for j in range(cfg.substeps):
            # The command acting now was issued tau_d ago: k control periods back.
            k = max(0, -((j - self.dead_substeps) // cfg.substeps))
            self.p += lag_gain * (self.u_history[:, k] - self.p)
            slip = self.slip()
            mu, slope = self.friction(slip, self.t)
            dv = -(mu * normal + veh.drag * self.v**2) / self.mass * dt
            # Linearly implicit wheel step: dw = dt f / (1 - dt df/dw), df/dw = -r^2 N mu'(lambda) / (J v).
            stiffness = dt * r * r * normal * slope / (J * np.maximum(self.v, cfg.slip_speed_floor))
            dw = dt * (r * mu * normal - veh.max_brake_torque * self.p) / J / np.maximum(1.0 + stiffness, 0.5)
            moving = live & (self.v > cfg.stop_speed)
            self.stats.distance += moving * self.v * dt
            self.v = np.where(moving, np.maximum(self.v + dv, 0.0), self.v)
            self.w = np.where(moving, np.clip(self.w + dw, 0.0, self.v / r * 1.02), self.w)
            self.t += moving * dt

        slip = self.slip()
        locked = self.w * r < cfg.lock_ratio * self.v
        deep = slip > cfg.deep_slip
        target = np.where(self.t >= self.switch_s, self.peak_slip[1], self.peak_slip[0])
        s = self.stats
        s.locked_time += np.where(live, locked * cfg.control_dt_s, 0.0)
        s.deep_slip_time += np.where(live, deep * cfg.control_dt_s, 0.0)
        s.slip_error_sum += np.where(live, np.abs(slip - target), 0.0)
        s.chatter += np.where(live, np.abs(u - prev_u), 0.0)
        s.steps += live
        s.time = self.t.copy()

        reward = -(0.5 * (v0 + self.v) * cfg.control_dt_s) / cfg.reward_distance_scale
        reward -= cfg.reward_deep_slip * deep + cfg.reward_locked * locked + cfg.reward_chatter * np.abs(u - prev_u)
        terminated = live & (self.v <= cfg.stop_speed)
        truncated = live & ~terminated & (self.t >= cfg.max_time_s - 1e-9)
        self.truncated |= truncated
        self.done |= terminated | truncated
        return self._measure(u), np.where(live, reward, 0.0), terminated, truncated

    def _measure(self, u: np.ndarray) -> np.ndarray:
        """Noisy wheel-speed-sensor view: (v, w r, d(w r)/dt, slip estimate, last command)."""
        cfg, r = self.config, self.vehicle.wheel_radius_m
        noise = self.rng.normal(0.0, cfg.speed_noise, (2, self.n)) if cfg.speed_noise > 0 else np.zeros((2, self.n))
        v_meas = np.maximum(self.v + noise[0], 0.0)
        wheel_meas = np.maximum(self.w * r + noise[1], 0.0)
        accel = (wheel_meas - self._last_wheel_meas) / cfg.control_dt_s
        self._last_wheel_meas = wheel_meas
        slip = np.clip((v_meas - wheel_meas) / np.maximum(v_meas, cfg.slip_speed_floor), 0.0, 1.0)
        return np.stack([v_meas, wheel_meas, accel, slip, u], axis=1)


def _pack(surfaces: list[Surface]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Surfaces as arrays: kinds (N, K), parameters (N, K, 4), weights (N, K); K = most curves."""
    K = max(len(s.curves) for s in surfaces)
    kinds = np.zeros((len(surfaces), K), dtype=int)
    params = np.zeros((len(surfaces), K, 4))
    weights = np.zeros((len(surfaces), K))
    for i, surface in enumerate(surfaces):
        for k, (w, curve) in enumerate(surface.curves):
            kinds[i, k], params[i, k], weights[i, k] = _KIND[curve.kind], curve._padded(), w
    return kinds, params, weights


# --------------------------------------------------------------------------- Gymnasium environment


@dataclass(frozen=True)
class EnvConfig:
    roads: tuple[str, ...] = ("dry_asphalt", "wet_asphalt", "snow")  # one drawn per episode
    speed_range: tuple[float, float] = (15.0, 30.0)  # initial speed, m/s
    history: int = 4  # measurement steps stacked into the observation
    randomise: bool = True
    sim: SimConfig = field(default_factory=SimConfig)
    vehicle: Vehicle = field(default_factory=Vehicle)


class BrakingEnv(gym.Env):
    """One stop per episode. Observation: the last ``history`` measurement vectors, newest last.

    Action: brake-pressure command in [0, 1]. Reward: minus the distance covered (plus small
    deep-slip, lock and chatter penalties, ``SimConfig``). Terminates when the car stops.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig = EnvConfig()):
        self.config = config
        self._roads = [parse_road(r) for r in config.roads]
        self.sim = BrakingSim(1, config.vehicle, config.sim)
        width = len(MEASUREMENTS) * config.history
        high = np.array([80.0, 80.0, 1e4, 1.0, 1.0] * config.history, dtype=np.float32)
        low = np.array([0.0, 0.0, -1e4, 0.0, 0.0] * config.history, dtype=np.float32)
        self.observation_space = gym.spaces.Box(low, high, shape=(width,), dtype=np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "road" in options:
            road = parse_road(options["road"])
        else:
            road = self._roads[self.np_random.integers(len(self._roads))]
        v0 = float(options.get("speed", self.np_random.uniform(*self.config.speed_range)))
        first = self.sim.reset(np.array([v0]), [road], self.np_random, randomise=self.config.randomise)[0]
        self._history = np.repeat(first[None], self.config.history, axis=0)
        return self._obs(), {"road": road.name}

    def step(self, action):
        meas, reward, terminated, truncated = self.sim.step(np.asarray(action, dtype=float).reshape(1))
        self._history = np.concatenate([self._history[1:], meas])
        info = {}
        if terminated[0] or truncated[0]:
            info = {"stopping_distance": float(self.sim.stats.distance[0]), "stopping_time": float(self.sim.t[0])}
        return self._obs(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def _obs(self) -> np.ndarray:
        return np.clip(self._history.reshape(-1), self.observation_space.low, self.observation_space.high).astype(
            np.float32)
