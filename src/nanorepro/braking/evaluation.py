"""Run a controller on a batch of stops in the true simulator; the metrics the report shows.

Per stop: stopping distance (m), stopping time (s), lock-time fraction (w r < 5% of v),
deep-slip fraction, mean |slip - optimal slip|, pressure chatter (total variation of the
command per second). Optionally one stop's traces (speed, wheel speed, slip, pressure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanorepro.braking.controllers import Controller
from nanorepro.envs.braking import BrakingSim, Randomisation, Road, SimConfig, Vehicle


@dataclass
class StopResults:
    road: list[str]
    speed: np.ndarray
    distance: np.ndarray
    time: np.ndarray
    lock_fraction: np.ndarray
    deep_slip_fraction: np.ndarray
    slip_error: np.ndarray
    chatter: np.ndarray  # sum |du| per second
    stopped: np.ndarray  # False where the stop was truncated
    trace: dict[str, list[float]] | None = None

    def by_road(self) -> dict[str, np.ndarray]:
        """Row indices of each road, in first-seen order."""
        names = list(dict.fromkeys(self.road))
        roads = np.array(self.road)
        return {name: np.flatnonzero(roads == name) for name in names}


def run_stops(
    controller: Controller,
    roads: list[Road],
    speeds: np.ndarray,
    rng: np.random.Generator,
    *,
    vehicle: Vehicle = Vehicle(),
    config: SimConfig = SimConfig(),
    randomisation: Randomisation = Randomisation(),
    trace_index: int | None = None,
) -> StopResults:
    """Every (road, speed) pair once, all stops in lockstep."""
    return run_many({"_": controller}, roads, speeds, rng, vehicle=vehicle, config=config,
                    randomisation=randomisation, trace_index=trace_index)["_"]


def run_many(
    controllers: dict[str, Controller],
    roads: list[Road],
    speeds: np.ndarray,
    rng: np.random.Generator,
    *,
    vehicle: Vehicle = Vehicle(),
    config: SimConfig = SimConfig(),
    randomisation: Randomisation = Randomisation(),
    trace_index: int | None = None,
) -> dict[str, StopResults]:
    """Each controller on every (road, speed) pair, all in one simulator batch (one block per
    controller): the simulator's per-step overhead is paid once, not once per controller."""
    pairs = [(road, v) for road in roads for v in speeds]
    n = len(pairs)
    sim = BrakingSim(n * len(controllers), vehicle, config, randomisation)
    meas = sim.reset(np.tile([v for _, v in pairs], len(controllers)), [road for road, _ in pairs] * len(controllers),
                     rng)
    blocks = {name: slice(i * n, (i + 1) * n) for i, name in enumerate(controllers)}
    for ctrl in controllers.values():
        ctrl.reset(n, rng)
    keys = ("t", "speed", "wheel_speed", "slip", "pressure", "command")
    traces = {name: {k: [] for k in keys} for name in controllers} if trace_index is not None else None
    u = np.zeros(sim.n)
    while not sim.done.all():
        for name, ctrl in controllers.items():
            u[blocks[name]] = ctrl.act(meas[blocks[name]])
        if traces is not None:
            slip = sim.slip()
            for name, block in blocks.items():
                i = block.start + trace_index
                if not sim.done[i]:
                    values = (sim.t[i], sim.v[i], sim.w[i] * vehicle.wheel_radius_m, slip[i], sim.p[i], u[i])
                    for key, value in zip(keys, values, strict=True):
                        traces[name][key].append(float(value))
        meas, _, _, _ = sim.step(u)
    s = sim.stats
    duration = np.maximum(s.time, config.control_dt_s)
    results = {}
    for name, block in blocks.items():
        results[name] = StopResults(
            road=[road.name for road, _ in pairs],
            speed=np.array([v for _, v in pairs]),
            distance=s.distance[block].copy(),
            time=s.time[block].copy(),
            lock_fraction=(s.locked_time / duration)[block],
            deep_slip_fraction=(s.deep_slip_time / duration)[block],
            slip_error=(s.slip_error_sum / np.maximum(s.steps, 1))[block],
            chatter=(s.chatter / duration)[block],
            stopped=~sim.truncated[block],
            trace=None if traces is None else traces[name],
        )
    return results


def ideal_distance(road: Road, speed: np.ndarray) -> np.ndarray:
    """v0^2 / (2 g mu*): braking at the surface's peak friction from the first instant."""
    return np.asarray(speed) ** 2 / (2 * 9.81 * road.before.peak()[1])


def tune_abs(grid, roads: list[Road], speeds: np.ndarray, rng: np.random.Generator, **sim_kwargs):
    """Grid search of the rule-based ABS: score = mean over stops of distance / ideal distance.

    All candidates run in one batch (each stop carries its own thresholds). Returns the best
    ``ABSParams`` and every candidate's score, best first.
    """
    from dataclasses import fields

    from nanorepro.braking.controllers import ABSParams, RuleBasedABS

    candidates = grid.candidates()
    per_candidate = len(roads) * len(speeds)
    stacked = ABSParams(**{f.name: np.repeat([getattr(c, f.name) for c in candidates], per_candidate)
                           for f in fields(ABSParams)})
    results = run_stops(RuleBasedABS(stacked), list(roads) * len(candidates), np.asarray(speeds), rng, **sim_kwargs)
    ideal = np.concatenate([ideal_distance(road, speeds) for road in roads] * len(candidates))
    ratio = (results.distance / ideal).reshape(len(candidates), per_candidate)
    scores = np.where(results.stopped.reshape(len(candidates), -1).all(1), ratio.mean(1), np.inf)
    order = np.argsort(scores)
    return candidates[order[0]], [(candidates[i], float(scores[i])) for i in order]
