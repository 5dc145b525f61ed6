"""A scripted Tabletop demonstrator with human-like pacing, and the demonstration file format.

The planner solves every task by pick-and-place (our design): it moves the named object
(or every ball, for gather / line up) to a target computed from the initial scene. Each
move is: transit to the object, a careful approach, close, carry, a careful approach to
the target, open, back off. Waypoints are spaced by speed × dt: **casual** steps move at
0.25 table/s, **precise** steps (within 0.1 of a contact, and the grip changes) at
0.08 table/s; every step carries its label (the ground truth SuP's scheduler should find:
casual steps can be sped up, precise ones cannot).

Demonstrations are executed in the simulator and stored, one row per control step, in a
compressed ``.npz`` with these arrays (``load_demos`` checks every one):

| key | shape, dtype | meaning |
|---|---|---|
| state | (N, 30) float32 | the state before the step's action |
| head, wrist | (N, P, P, 3) uint8 | the two views before the action |
| action | (N, 3) float32 | the waypoint (x, y, grip) |
| precise | (N,) bool | the planner's label |
| solved | (N,) bool | the task is solved after the step's action |
| episode | (N,) int32 | episode index, 0..E-1, non-decreasing |
| instruction | (E, 16) int64 | word ids of each episode's instruction |
| success | (E,) bool | whether the episode ended solved |
| chunk | () int64 | H, the chunk length the data was made for |
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanorepro.common.errors import UserError
from nanorepro.common.io import atomic_write_bytes
from nanorepro.envs.tabletop import MAX_WORDS, RELATIONS, ZONE_SIZE, ZONES, Tabletop, TabletopConfig, Task

CASUAL_SPEED = 0.25   # table widths per second
PRECISE_SPEED = 0.08
CAREFUL_RADIUS = 0.1  # the last stretch before a contact is precise
GRIP_STEPS = 2
STATE_DIM = 30


@dataclass(frozen=True)
class Waypoint:
    x: float
    y: float
    grip: float
    precise: bool


def _line(start: np.ndarray, end: np.ndarray, grip: float, dt: float) -> list[Waypoint]:
    """Waypoints from ``start`` to ``end``: casual, then precise within CAREFUL_RADIUS of the end."""
    out, p = [], start.astype(float)
    while True:
        gap = np.linalg.norm(end - p)
        precise = gap <= CAREFUL_RADIUS + 1e-9
        step = (PRECISE_SPEED if precise else CASUAL_SPEED) * dt
        if gap <= step:
            out.append(Waypoint(*end, grip, True))
            return out
        p = p + (end - p) / gap * step
        out.append(Waypoint(*p, grip, bool(precise)))


def _move(gripper: np.ndarray, source: np.ndarray, target: np.ndarray, dt: float) -> tuple[list[Waypoint], np.ndarray]:
    """Pick the object at ``source`` and place it at ``target``; returns waypoints and the final gripper point."""
    path = _line(gripper, source, 0.0, dt)
    path += [Waypoint(*source, 1.0, True)] * GRIP_STEPS
    path += _line(source, target, 1.0, dt)
    path += [Waypoint(*target, 0.0, True)] * GRIP_STEPS
    away = target + np.array([0.0, 0.08 if target[1] < 0.5 else -0.08])
    path += _line(target, away, 0.0, dt)
    return path, away


def plan(sim: Tabletop, b: int) -> list[Waypoint]:
    """Waypoints that solve scene ``b`` of ``sim`` from its current state."""
    task, dt = sim.tasks[b], sim.cfg.control_dt
    pos = {int(c): sim.objects[b, k].copy() for k, c in enumerate(sim.colour[b]) if sim.active[b, k]}
    moves: list[tuple[np.ndarray, np.ndarray]] = []
    if task.kind == "push":
        u = np.array(RELATIONS[task.relation])
        anchor = pos[task.other]
        lo, hi = 0.12 + 0.2 * np.maximum(0, -u), 0.88 - 0.2 * np.maximum(0, u)  # room for the moved ball
        moved_anchor = np.clip(anchor, lo, hi)
        if np.linalg.norm(moved_anchor - anchor) > 1e-9:
            moves.append((anchor, moved_anchor))
        moves.append((pos[task.colour], moved_anchor + 0.2 * u))
    elif task.kind == "place":
        x0, y0 = ZONES[task.zone]
        moves.append((pos[task.colour], np.array([x0, y0]) + ZONE_SIZE / 2))
    else:
        balls = [pos[c] for c in sorted(pos)]
        n = len(balls)
        if task.kind == "gather":
            centre = np.clip(np.mean(balls, 0), 0.25, 0.75)
            angles = 2 * np.pi * np.arange(n) / n
            targets = centre + 0.11 * np.stack([np.cos(angles), np.sin(angles)], 1)
        else:
            height = float(np.clip(np.mean([p[1] for p in balls]), 0.2, 0.8))
            targets = np.stack([np.linspace(0.15, 0.85, n), np.full(n, height)], 1)
            order = np.argsort([p[0] for p in balls])
            targets = targets[np.argsort(order)]  # keep left-to-right order: shorter, crossing-free moves
        moves += list(zip(balls, targets, strict=True))
    path, gripper = [], sim.gripper[b].copy()
    for source, target in moves:
        segment, gripper = _move(gripper, source, target, dt)
        path += segment
    return path


def chunked(path: list[Waypoint], horizon: int) -> np.ndarray:
    """(n_chunks, H, 3) waypoints; the last chunk is padded by repeating the final waypoint."""
    rows = np.array([[w.x, w.y, w.grip] for w in path], dtype=np.float32)
    pad = (-len(rows)) % horizon
    rows = np.concatenate([rows, np.repeat(rows[-1:], pad, 0)])
    return rows.reshape(-1, horizon, 3)


def make_demos(tasks: list[Task], seed: int, horizon: int = 8, config: TabletopConfig = TabletopConfig(),
               max_steps: int | None = None) -> dict[str, np.ndarray]:
    """Plan and execute one demonstration per task (in one batch); the arrays of the file format."""
    rng = np.random.default_rng(seed)
    sim = Tabletop(len(tasks), config)
    obs = sim.reset(tasks, rng)
    plans = [plan(sim, b) for b in range(len(tasks))]
    limit = max_steps or config.max_steps
    length = np.array([min(len(p), limit) for p in plans])
    rows: dict[str, list] = {k: [] for k in ("state", "head", "wrist", "action", "precise", "solved", "episode")}
    for t in range(int(length.max())):
        act = np.array([[p[min(t, len(p) - 1)].x, p[min(t, len(p) - 1)].y, p[min(t, len(p) - 1)].grip]
                        for p in plans])
        live = np.flatnonzero(t < length)
        rows["state"].append(obs["state"][live])
        rows["head"].append(obs["head"][live])
        rows["wrist"].append(obs["wrist"][live])
        rows["action"].append(act[live].astype(np.float32))
        rows["precise"].append(np.array([plans[b][t].precise for b in live]))
        rows["episode"].append(live.astype(np.int32))
        obs, success = sim.step(act)
        rows["solved"].append(success[live])
    order = np.argsort(np.concatenate(rows["episode"]), kind="stable")  # group by episode, in time order
    data = {k: np.concatenate(v)[order] for k, v in rows.items()}
    data["instruction"] = obs["instruction"]
    ends = np.searchsorted(data["episode"], np.arange(len(tasks)), side="right") - 1
    data["success"] = data["solved"][ends]   # solved after the episode's last step
    data["chunk"] = np.array(horizon)
    return data


def select_episodes(data: dict[str, np.ndarray], episodes: np.ndarray) -> dict[str, np.ndarray]:
    """The file-format arrays of the given episodes only (in increasing order, re-indexed from 0)."""
    episodes = np.unique(episodes)
    rows = np.isin(data["episode"], episodes)
    out = {k: data[k][rows] for k in ("state", "head", "wrist", "action", "precise", "solved")}
    out["episode"] = np.searchsorted(episodes, data["episode"][rows]).astype(np.int32)
    out.update(instruction=data["instruction"][episodes], success=data["success"][episodes], chunk=data["chunk"])
    return out


def save_demos(path: str | Path, data: dict[str, np.ndarray]) -> Path:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **data)
    return atomic_write_bytes(path, buffer.getvalue())


_SPEC = {  # key: (dtype kind, shape after the first axis; None: checked separately below)
    "state": ("f", (STATE_DIM,)), "action": ("f", (3,)), "precise": ("b", ()), "solved": ("b", ()),
    "episode": ("i", ()),
    "head": ("u", None), "wrist": ("u", None), "instruction": ("i", (MAX_WORDS,)), "success": ("b", ()),
    "chunk": ("i", None),
}


def load_demos(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a demonstration file; one UserError naming the first problem."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise UserError(f"demonstration file not found: {path}") from None
    except (ValueError, OSError) as exc:
        raise UserError(f"{path} is not a readable .npz demonstration file: {exc}") from None
    missing = sorted(set(_SPEC) - set(data))
    if missing:
        raise UserError(f"{path}: missing arrays {', '.join(missing)}")
    for key, (kind, trailing) in _SPEC.items():
        if data[key].dtype.kind != kind:
            raise UserError(f"{path}: '{key}' has dtype {data[key].dtype}, expected kind '{kind}'")
        if trailing is not None and data[key].shape[1:] != trailing:
            expected = ", ".join(map(str, ("n", *trailing)))
            raise UserError(f"{path}: '{key}' has shape {data[key].shape}, expected ({expected})")
    n = len(data["state"])
    for key in ("head", "wrist", "action", "precise", "solved", "episode"):
        if len(data[key]) != n:
            raise UserError(f"{path}: '{key}' has {len(data[key])} rows, 'state' has {n}")
    if data["head"].ndim != 4 or data["head"].shape[1:] != data["wrist"].shape[1:] or data["head"].shape[3] != 3:
        raise UserError(f"{path}: views must be (n, P, P, 3) of one size, got {data['head'].shape} and "
                        f"{data['wrist'].shape}")
    for key in ("state", "action"):
        if not np.isfinite(data[key]).all():
            raise UserError(f"{path}: '{key}' contains NaN or infinite values")
    episodes = len(data["instruction"])
    if len(data["success"]) != episodes:
        raise UserError(f"{path}: 'success' has {len(data['success'])} episodes, 'instruction' has {episodes}")
    ep = data["episode"]
    if n and (ep.min() < 0 or ep.max() >= episodes or (np.diff(ep) < 0).any()):
        raise UserError(f"{path}: 'episode' must be non-decreasing indices in [0, {episodes})")
    if data["chunk"].ndim != 0 or int(data["chunk"]) < 1:
        raise UserError(f"{path}: 'chunk' must be a positive scalar, got {data['chunk']}")
    return data
