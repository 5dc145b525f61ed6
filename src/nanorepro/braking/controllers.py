"""Brake controllers, vectorised over a batch of stops: the baselines ReinVBC is measured against.

Every controller has ``reset(n, rng)`` and ``act(meas_N5) -> u_N`` where ``meas`` holds the
measurements of ``nanorepro.envs.braking.MEASUREMENTS`` (vehicle speed, wheel speed,
wheel acceleration, slip estimate, last command) and ``u`` is the pressure command in [0, 1].

- ``LockedWheels``: full pressure throughout.
- ``SlipPI``: PI control of the slip estimate to a fixed target (or, as the oracle, to each
  surface's true optimal slip).
- ``RuleBasedABS``: the stand-in for a production ABS, a per-wheel hold / release /
  re-apply state machine on wheel-deceleration and slip thresholds (the classic
  Bosch-style logic, see docs/reinvbc.md). It must be tuned (``tune_abs``): untuned, it
  stops longer than locked wheels.
- ``NoisyABS``: the behaviour policy that logs the offline data: the ABS with thresholds
  perturbed per stop, action noise, random pulses, and some open-loop pressure ramps.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace
from typing import Protocol

import numpy as np

APPLY, HOLD, RELEASE, REAPPLY = 0, 1, 2, 3


class Controller(Protocol):
    def reset(self, n: int, rng: np.random.Generator) -> None: ...

    def act(self, meas: np.ndarray) -> np.ndarray: ...


class LockedWheels:
    def reset(self, n: int, rng: np.random.Generator) -> None:
        self.n = n

    def act(self, meas: np.ndarray) -> np.ndarray:
        return np.ones(len(meas))


class SlipPI:
    """u_t = clip(u_{t-1} - kp (e_t - e_{t-1}) - ki dt e_t), e = slip - target (velocity form, no wind-up)."""

    def __init__(self, target: float | np.ndarray = 0.12, kp: float = 2.0, ki: float = 60.0, dt: float = 0.01):
        self.target, self.kp, self.ki, self.dt = target, kp, ki, dt

    def reset(self, n: int, rng: np.random.Generator) -> None:
        self.u = np.ones(n)
        self.prev_error = np.zeros(n)

    def act(self, meas: np.ndarray) -> np.ndarray:
        error = meas[:, 3] - self.target
        self.u = np.clip(self.u - self.kp * (error - self.prev_error) - self.ki * self.dt * error, 0.0, 1.0)
        self.prev_error = error
        return self.u.copy()


@dataclass(frozen=True)
class ABSParams:
    """Thresholds of the rule-based ABS (wheel accelerations in m/s^2, slips as fractions)."""

    hold_decel: float = 30.0  # hold pressure once the wheel decelerates faster than this
    release_slip: float = 0.2  # release when the slip estimate exceeds this ...
    release_decel: float = 80.0  # ... or the wheel decelerates faster than this
    reapply_accel: float = 5.0  # stop releasing once the wheel re-accelerates faster than this
    reapply_slip: float = 0.08  # ... or the slip falls below this
    release_rate: float = 0.25  # pressure drop per control step while releasing
    reapply_step: float = 0.05  # pressure rise per control step while re-applying
    reapply_fraction: float = 0.8  # on re-apply, jump to this share of the pressure that caused the release
    accel_filter: float = 0.5  # exponential smoothing of the wheel acceleration (0: none)


class RuleBasedABS:
    """Hold / release / re-apply state machine; one phase per stop, updated every control step.

    APPLY   full pressure until the wheel decelerates hard (-a threshold) -> HOLD
    HOLD    keep pressure; slip or deep deceleration over threshold -> RELEASE;
            wheel stops decelerating (the surface holds) -> REAPPLY
    RELEASE dump pressure until the wheel re-accelerates (+a) or slip recovers -> REAPPLY
    REAPPLY jump back to a share of the pressure that caused the release (the ABS's pressure
            memory), then raise it in steps until the wheel decelerates hard again -> HOLD
    """

    def __init__(self, params: ABSParams = ABSParams()):
        self.params = params

    def reset(self, n: int, rng: np.random.Generator) -> None:
        self.phase = np.full(n, APPLY)
        self.u = np.ones(n)
        self.accel = np.zeros(n)
        self.release_u = np.ones(n)

    def act(self, meas: np.ndarray) -> np.ndarray:
        p = self.params
        slip = meas[:, 3]
        self.accel = p.accel_filter * self.accel + (1.0 - p.accel_filter) * meas[:, 2]
        decel = -self.accel
        phase = self.phase
        hard_decel = decel > p.hold_decel
        too_much = (slip > p.release_slip) | (decel > p.release_decel)
        recovered = (self.accel > p.reapply_accel) | (slip < p.reapply_slip)
        new = phase.copy()
        new[(phase == APPLY) & hard_decel] = HOLD
        new[(phase == HOLD) & too_much] = RELEASE
        new[(phase == HOLD) & ~too_much & ~hard_decel] = REAPPLY
        new[(phase == RELEASE) & recovered & ~too_much] = REAPPLY
        new[(phase == REAPPLY) & too_much] = RELEASE
        new[(phase == REAPPLY) & hard_decel & ~too_much] = HOLD
        starts_release = (new == RELEASE) & (phase != RELEASE)
        starts_reapply = (new == REAPPLY) & (phase == RELEASE)
        self.release_u = np.where(starts_release, self.u, self.release_u)
        self.phase = new
        self.u = np.where(new == APPLY, 1.0, self.u)
        self.u = np.where(new == RELEASE, self.u - p.release_rate, self.u)
        self.u = np.where(starts_reapply, np.maximum(self.u, p.reapply_fraction * self.release_u),
                          np.where(new == REAPPLY, self.u + p.reapply_step, self.u))
        self.u = np.clip(self.u, 0.0, 1.0)
        return self.u.copy()


@dataclass(frozen=True)
class BehaviourNoise:
    """How the data-logging ABS is perturbed (our design, after NeoRL's noisy behaviour policies)."""

    threshold_frac: float = 0.3  # each threshold scaled by U[1 - f, 1 + f] per stop
    action_noise: tuple[float, ...] = (0.05, 0.1, 0.2)  # Gaussian std, one drawn per stop
    pulse_prob: float = 0.1  # share of stops with random hold/release pulses
    ramp_prob: float = 0.1  # share of stops that are open-loop pressure ramps


class NoisyABS:
    """The behaviour policy: a perturbed ``RuleBasedABS`` per stop (vectorised over stops)."""

    def __init__(self, params: ABSParams, noise: BehaviourNoise = BehaviourNoise()):
        self.params, self.noise = params, noise

    def reset(self, n: int, rng: np.random.Generator) -> None:
        f = self.noise.threshold_frac
        names = [fl.name for fl in fields(ABSParams) if fl.name != "accel_filter"]
        scales = {name: rng.uniform(1 - f, 1 + f, n) for name in names}
        self.abs = RuleBasedABS(replace(self.params, **{k: getattr(self.params, k) * scales[k] for k in names}))
        self.abs.reset(n, rng)
        self.rng = rng
        self.sigma = rng.choice(self.noise.action_noise, n)
        self.pulsed = rng.random(n) < self.noise.pulse_prob
        self.ramp = rng.random(n) < self.noise.ramp_prob
        self.ramp_rate = rng.uniform(0.01, 0.1, n)
        self.ramp_u = np.zeros(n)
        self.pulse_left = np.zeros(n, dtype=int)
        self.pulse_u = np.zeros(n)

    def act(self, meas: np.ndarray) -> np.ndarray:
        n = len(meas)
        u = self.abs.act(meas) + self.sigma * self.rng.normal(size=n)
        start = self.pulsed & (self.pulse_left == 0) & (self.rng.random(n) < 0.03)
        self.pulse_left = np.where(start, self.rng.integers(3, 15, n), np.maximum(self.pulse_left - 1, 0))
        self.pulse_u = np.where(start, self.rng.choice([0.0, 1.0], n), self.pulse_u)
        u = np.where(self.pulse_left > 0, self.pulse_u, u)
        self.ramp_u = np.minimum(self.ramp_u + self.ramp_rate, 1.0)
        u = np.where(self.ramp, self.ramp_u, u)
        return np.clip(u, 0.0, 1.0)


@dataclass(frozen=True)
class ABSGrid:
    """The documented tuning grid: every combination is scored on the training surfaces only."""

    hold_decel: tuple[float, ...] = (5.0, 10.0, 20.0)
    release_slip: tuple[float, ...] = (0.2, 0.25, 0.3, 0.4)
    reapply_accel: tuple[float, ...] = (0.0, 10.0)
    reapply_slip: tuple[float, ...] = (0.03, 0.06)
    reapply_step: tuple[float, ...] = (0.005, 0.01, 0.02)
    release_rate: tuple[float, ...] = (0.1, 0.2, 0.35)
    reapply_fraction: tuple[float, ...] = (0.4, 0.6, 0.8)

    def candidates(self) -> list[ABSParams]:
        names = [f.name for f in fields(self)]
        return [ABSParams(**dict(zip(names, values, strict=True)))
                for values in itertools.product(*(getattr(self, n) for n in names))]
