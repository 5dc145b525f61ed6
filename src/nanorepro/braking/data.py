"""Offline braking logs: generation from a behaviour policy, the file format, validation, windows.

File format (``.npz``, no pickled objects; T transitions, E stops):

    obs         float32 (T, 5)  measurements before the action: vehicle speed (m/s), wheel
                                speed (m/s), wheel acceleration (m/s^2), slip estimate, last command
    action      float32 (T,)    brake-pressure command in [0, 1]
    next_obs    float32 (T, 5)  measurements after one control step
    terminated  bool    (T,)    the car stopped at this step
    truncated   bool    (T,)    the log ends here without a stop
    episode     int32   (T,)    stop index 0..E-1, non-decreasing, transitions in time order
    control_dt  float64 ()      seconds per control step
    optional: split <U (E,) "train"/"val" (default: every 5th stop is "val"),
              surface <U (E,) names, distance float64 (E,) true stopping distances.

A user's own logs only need the required keys.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nanorepro.braking.controllers import Controller
from nanorepro.common.errors import UserError
from nanorepro.common.io import atomic_write_bytes
from nanorepro.envs.braking import MEASUREMENTS, BrakingSim, Road, SimConfig, Vehicle

REQUIRED = {"obs": 2, "action": 1, "next_obs": 2, "terminated": 1, "truncated": 1, "episode": 1, "control_dt": 0}


@dataclass
class BrakingDataset:
    obs: np.ndarray
    action: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode: np.ndarray
    control_dt: float
    split: np.ndarray  # (E,) "train" / "val"
    surface: np.ndarray  # (E,) names ("" if unknown)
    distance: np.ndarray  # (E,) true stopping distances (NaN if unknown)

    @property
    def n_episodes(self) -> int:
        return len(self.split)

    def episode_starts(self) -> np.ndarray:
        return np.flatnonzero(np.r_[True, self.episode[1:] != self.episode[:-1]])

    def select(self, split: str) -> BrakingDataset:
        """The stops of one split, renumbered 0..E'-1."""
        keep_ep = np.flatnonzero(self.split == split)
        rows = np.isin(self.episode, keep_ep)
        renumber = np.full(self.n_episodes, -1)
        renumber[keep_ep] = np.arange(len(keep_ep))
        return BrakingDataset(self.obs[rows], self.action[rows], self.next_obs[rows], self.terminated[rows],
                              self.truncated[rows], renumber[self.episode[rows]].astype(np.int32), self.control_dt,
                              self.split[keep_ep], self.surface[keep_ep], self.distance[keep_ep])


def generate(
    behaviour: Controller,
    roads: list[Road],
    n_stops: int,
    rng: np.random.Generator,
    *,
    speed_range: tuple[float, float] = (15.0, 30.0),
    val_every: int = 5,
    vehicle: Vehicle = Vehicle(),
    config: SimConfig = SimConfig(),
    batch: int = 256,
) -> BrakingDataset:
    """Log ``n_stops`` stops of ``behaviour`` on ``roads`` (cycled), in batches run in lockstep."""
    parts = []
    for start in range(0, n_stops, batch):
        n = min(batch, n_stops - start)
        stop_roads = [roads[(start + i) % len(roads)] for i in range(n)]
        sim = BrakingSim(n, vehicle, config)
        meas = sim.reset(rng.uniform(*speed_range, n), stop_roads, rng)
        behaviour.reset(n, rng)
        rows = []
        while not sim.done.all():
            live = ~sim.done
            u = behaviour.act(meas)
            next_meas, _, terminated, truncated = sim.step(u)
            ids = np.flatnonzero(live)
            rows.append((meas[ids], u[ids], next_meas[ids], terminated[ids], truncated[ids], start + ids))
            meas = next_meas
        cols = [np.concatenate(c) for c in zip(*rows, strict=True)]
        order = np.argsort(cols[5], kind="stable")  # group by stop, keeping time order
        parts.append([c[order] for c in cols] + [[r.name for r in stop_roads], sim.stats.distance.copy()])
    obs, action, next_obs, term, trunc, episode = (np.concatenate([p[i] for p in parts]) for i in range(6))
    split = np.where(np.arange(n_stops) % val_every == val_every - 1, "val", "train")
    return BrakingDataset(obs.astype(np.float32), action.astype(np.float32), next_obs.astype(np.float32),
                          term, trunc, episode.astype(np.int32), config.control_dt_s, split,
                          np.array(sum((p[6] for p in parts), [])), np.concatenate([p[7] for p in parts]))


def save(path: str | Path, ds: BrakingDataset) -> Path:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, obs=ds.obs, action=ds.action, next_obs=ds.next_obs, terminated=ds.terminated,
                        truncated=ds.truncated, episode=ds.episode, control_dt=np.float64(ds.control_dt),
                        split=ds.split.astype("U5"), surface=ds.surface.astype("U64"), distance=ds.distance)
    return atomic_write_bytes(path, buffer.getvalue())


def load(path: str | Path) -> BrakingDataset:
    """Read and validate a log file; every problem is a one-line UserError naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            raw = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise UserError(f"dataset not found: {path}") from None
    except Exception as exc:  # zip/npy format errors, pickled object arrays
        raise UserError(f"{path} is not a readable .npz of plain arrays: {exc}") from None
    return validate(raw, str(path))


def validate(raw: dict[str, np.ndarray], where: str = "dataset") -> BrakingDataset:
    for key, ndim in REQUIRED.items():
        if key not in raw:
            raise UserError(f"{where}: missing array '{key}' (required: {', '.join(REQUIRED)})")
        if raw[key].ndim != ndim:
            raise UserError(f"{where}: '{key}' must have {ndim} dimensions, has shape {raw[key].shape}")
    T = len(raw["obs"])
    width = len(MEASUREMENTS)
    if T == 0:
        raise UserError(f"{where}: no transitions")
    for key in ("obs", "next_obs"):
        if raw[key].shape != (T, width):
            raise UserError(f"{where}: '{key}' must have shape ({T}, {width}) ({', '.join(MEASUREMENTS)}), "
                            f"has {raw[key].shape}")
    for key in ("action", "terminated", "truncated", "episode"):
        if raw[key].shape != (T,):
            raise UserError(f"{where}: '{key}' must have shape ({T},), has {raw[key].shape}")
    for key in ("obs", "next_obs", "action"):
        if not np.issubdtype(raw[key].dtype, np.floating):
            raise UserError(f"{where}: '{key}' must be floating point, is {raw[key].dtype}")
        if not np.isfinite(raw[key]).all():
            bad = int(np.argwhere(~np.isfinite(raw[key]))[0][0])
            raise UserError(f"{where}: '{key}' has NaN or infinite values (first at row {bad})")
    if not np.issubdtype(raw["episode"].dtype, np.integer):
        raise UserError(f"{where}: 'episode' must be integers, is {raw['episode'].dtype}")
    if raw["action"].min() < 0 or raw["action"].max() > 1:
        raise UserError(f"{where}: 'action' must lie in [0, 1] (pressure command), "
                        f"found [{raw['action'].min():.3g}, {raw['action'].max():.3g}]")
    if (raw["obs"][:, :2] < 0).any() or (raw["next_obs"][:, :2] < 0).any():
        raise UserError(f"{where}: speeds (columns 0 and 1 of obs/next_obs) must be >= 0")
    episode = raw["episode"].astype(np.int64)
    if episode[0] != 0 or np.any(np.diff(episode) < 0) or np.any(np.diff(episode) > 1):
        raise UserError(f"{where}: 'episode' must start at 0 and count up by at most 1 per row")
    E = int(episode[-1]) + 1
    ends = np.r_[episode[1:] != episode[:-1], True]
    finished = raw["terminated"].astype(bool) | raw["truncated"].astype(bool)
    if not np.array_equal(finished, ends):
        first = int(np.flatnonzero(finished != ends)[0])
        raise UserError(f"{where}: each stop must end with terminated or truncated on its last row, and only "
                        f"there (row {first}, stop {episode[first]})")
    control_dt = float(raw["control_dt"])
    if not 0 < control_dt <= 1:
        raise UserError(f"{where}: control_dt must be in (0, 1] seconds, got {control_dt}")
    split = raw.get("split", np.where(np.arange(E) % 5 == 4, "val", "train")).astype(str)
    if split.shape != (E,) or not set(split) <= {"train", "val"}:
        raise UserError(f"{where}: 'split' must be ({E},) of 'train'/'val'")
    if (split == "train").sum() == 0 or (split == "val").sum() == 0:
        raise UserError(f"{where}: need at least one 'train' and one 'val' stop")
    surface = raw.get("surface", np.full(E, "")).astype(str)
    distance = raw.get("distance", np.full(E, np.nan)).astype(np.float64)
    if surface.shape != (E,) or distance.shape != (E,):
        raise UserError(f"{where}: 'surface' and 'distance' must have one entry per stop ({E})")
    return BrakingDataset(raw["obs"].astype(np.float32), raw["action"].astype(np.float32),
                          raw["next_obs"].astype(np.float32), raw["terminated"].astype(bool),
                          raw["truncated"].astype(bool), episode.astype(np.int32), control_dt, split, surface,
                          distance)


def histories(ds: BrakingDataset, k: int) -> np.ndarray:
    """For every transition, the last ``k`` measurements ending with ``obs`` (T, k, 5); stop starts
    are padded with their first measurement, as the controllers do."""
    start_of_row = ds.episode_starts()[ds.episode]
    rows = np.arange(len(ds.obs))
    idx = np.maximum(rows[:, None] - np.arange(k - 1, -1, -1)[None, :], start_of_row[:, None])
    return ds.obs[idx]


def windows(ds: BrakingDataset, k: int, unroll: int) -> dict[str, torch.Tensor]:
    """Training windows: history (N, k, 5) at t, actions t..t+L-1 (N, L), next measurements (N, L, 5),
    and the stop each window belongs to (N,).

    Only windows that stay inside one stop are kept.
    """
    hist = histories(ds, k)
    T = len(ds.obs)
    rows = np.arange(T - unroll + 1)
    same = ds.episode[rows + unroll - 1] == ds.episode[rows]
    rows = rows[same]
    steps = rows[:, None] + np.arange(unroll)[None, :]
    return {
        "hist": torch.from_numpy(hist[rows]),
        "action": torch.from_numpy(ds.action[steps]),
        "next_obs": torch.from_numpy(ds.next_obs[steps]),
        "episode": torch.from_numpy(ds.episode[rows].astype(np.int64)),
    }
