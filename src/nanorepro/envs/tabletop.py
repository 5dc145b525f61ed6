"""Tabletop: a fast 2-D, two-view, language-conditioned manipulation suite (our design, ``docs/tabletop.md``).

A point gripper (x, y, grip) in the unit square tracks **absolute waypoints** through a
velocity- and acceleration-limited PD controller (slightly under-damped): spreading
waypoints further apart really speeds motion up, and large jumps overshoot near contacts.
3–5 coloured balls and blocks are pushed kinematically (a closed, empty gripper shoves
what it runs into; an open one passes over objects; objects separate pairwise, walls
contain them) or grasped (closing within reach attaches the nearest object; opening
releases it). Four corner zones are targets.

Observations: a low-dimensional state and two rendered RGB views — a top-down **head**
view of the whole table and a gripper-centred **wrist** view (a 0.4 × 0.4 window) — plus
the instruction as token ids. Instructions come from templates with paraphrases:

    push the {colour} ball {left of | right of | behind | in front of} the {colour} ball
    put the {colour} block in the {top left | top right | bottom left | bottom right} corner
    gather all the balls / line up the balls                     (novel behaviours)

Splits: ``train`` (15 of 20 colour × relation and colour × zone combinations, first
phrasing), ``unseen`` (the other 5 of each), ``paraphrase`` (train combinations, other
phrasings), ``novel`` (gather, line up). Image coordinates: x to the right, y downwards;
"behind" is up the image (smaller y).

``Tabletop`` is the batch simulator (NumPy, every array has the batch first);
``TabletopEnv`` is a one-scene Gymnasium environment on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from nanorepro.common.errors import UserError
from nanorepro.common.seeding import rng_stream

COLOURS = ("red", "green", "blue", "yellow", "purple")
RGB = np.array([[220, 50, 50], [40, 170, 60], [50, 90, 220], [230, 200, 40], [150, 60, 190]], np.uint8)
SHAPES = ("ball", "block")
RELATIONS = {"left of": (-1.0, 0.0), "right of": (1.0, 0.0), "behind": (0.0, -1.0), "in front of": (0.0, 1.0)}
ZONES = {"top left": (0.0, 0.0), "top right": (0.7, 0.0), "bottom left": (0.0, 0.7), "bottom right": (0.7, 0.7)}
ZONE_SIZE = 0.3
KINDS = ("push", "place", "gather", "line_up")
TEMPLATES = {
    "push": ("push the {c} ball {r} the {o} ball", "move the {c} ball so it is {r} the {o} ball",
             "slide the {c} ball {r} the {o} ball"),
    "place": ("put the {c} block in the {z} corner", "place the {c} block in the {z} corner",
              "move the {c} block to the {z} corner"),
    "gather": ("gather all the balls", "bring the balls together", "collect the balls in one place"),
    "line_up": ("line up the balls", "put the balls in a row", "arrange the balls in a line"),
}
SPLITS = ("train", "unseen", "paraphrase", "novel")
MAX_OBJECTS = 5
MAX_WORDS = 16  # the longest paraphrase has 13 words (tested)
PAD, UNK = 0, 1


def _vocabulary() -> dict[str, int]:
    words = {w for phrasings in TEMPLATES.values() for t in phrasings for w in t.split() if "{" not in w}
    words |= set(COLOURS) | {w for r in RELATIONS for w in r.split()} | {w for z in ZONES for w in z.split()}
    return {w: n + 2 for n, w in enumerate(sorted(words))}


VOCAB = _vocabulary()


def tokenize(text: str, length: int = MAX_WORDS) -> np.ndarray:
    """Word ids padded with PAD to ``length``; unknown words are UNK; too many words is an error."""
    ids = [VOCAB.get(w, UNK) for w in text.lower().split()]
    if len(ids) > length:
        raise UserError(f"instruction has {len(ids)} words, at most {length}: {text!r}")
    return np.array(ids + [PAD] * (length - len(ids)), dtype=np.int64)


@dataclass(frozen=True)
class Task:
    kind: str
    colour: int = -1         # the object to move (push, place)
    other: int = -1          # the reference ball (push)
    relation: str = ""       # push
    zone: str = ""           # place
    phrasing: int = 0

    @property
    def text(self) -> str:
        template = TEMPLATES[self.kind][self.phrasing]
        other = COLOURS[self.other] if self.other >= 0 else ""
        colour = COLOURS[self.colour] if self.colour >= 0 else ""
        return template.format(c=colour, o=other, r=self.relation, z=self.zone)


def _every_task() -> list[Task]:
    slotted = [Task("push", c, o, relation=r, phrasing=p) for c in range(len(COLOURS)) for o in range(len(COLOURS))
               if o != c for r in RELATIONS for p in range(3)]
    slotted += [Task("place", c, zone=z, phrasing=p) for c in range(len(COLOURS)) for z in ZONES for p in range(3)]
    return slotted + [Task(kind, phrasing=p) for kind in ("gather", "line_up") for p in range(3)]


def parse_instruction(ids: np.ndarray) -> Task:
    """The task whose instruction tokenizes to ``ids`` (the inverse of ``tokenize(task.text)``); a UserError
    for word ids that are not one of the suite's instructions."""
    key = tuple(int(i) for i in np.asarray(ids).ravel())
    if len(key) != MAX_WORDS or key not in _TASK_BY_TOKENS:
        words = {i: w for w, i in VOCAB.items()}
        text = " ".join(words.get(i, "<unk>") for i in key if i != PAD)
        raise UserError(f"instruction {text!r} is not one of the Tabletop suite's task instructions")
    return _TASK_BY_TOKENS[key]


def _unseen(colour: int, slot: int) -> bool:
    """5 of the 20 (colour, relation/zone) combinations are held out: one per colour."""
    return (colour + slot) % 4 == 0


def sample_task(split: str, rng: np.random.Generator) -> Task:
    if split not in SPLITS:
        raise UserError(f"unknown tabletop split '{split}' (choose from {', '.join(SPLITS)})")
    if split == "novel":
        return Task(str(rng.choice(["gather", "line_up"])))
    while True:
        kind = str(rng.choice(["push", "place"]))
        colour = int(rng.integers(len(COLOURS)))
        slot = int(rng.integers(4))
        if _unseen(colour, slot) == (split == "unseen"):
            break
    phrasing = int(rng.integers(1, 3)) if split == "paraphrase" else 0
    if kind == "push":
        other = int(rng.choice([c for c in range(len(COLOURS)) if c != colour]))
        return Task("push", colour, other, relation=list(RELATIONS)[slot], phrasing=phrasing)
    return Task("place", colour, zone=list(ZONES)[slot], phrasing=phrasing)


_TASK_BY_TOKENS = {tuple(tokenize(t.text).tolist()): t for t in _every_task()}


def sample_tasks(split: str, n: int, seed: int) -> list:
    """``n`` tasks of ``split``; with the same ``seed`` for ``execute``, the scenes are fixed by ``seed``."""
    if n < 1:
        raise UserError(f"need at least one episode, got {n}")
    rng = np.random.default_rng(seed)
    return [sample_task(split, rng) for _ in range(n)]


def scene_seed(seed: int, purpose: str) -> int:
    """An independent scene seed per purpose (e.g. SuP's "log" and "validation"), so that work seeded ``seed``
    never runs on the scenes that ``make-demos --seed`` (``sample_tasks(split, n, seed)``) demonstrated."""
    return int(rng_stream(seed, "embodied", purpose).integers(2**31))


@dataclass(frozen=True)
class TabletopConfig:
    view_size: int = 32          # pixels per side of each view
    wrist_window: float = 0.4    # side of the wrist view's window on the table
    control_dt: float = 0.1      # 10 Hz waypoints
    substeps: int = 5
    kp: float = 60.0             # PD gains of the waypoint tracker (per s^2); kd < 2 sqrt(kp): under-damped
    kd: float = 11.0
    max_speed: float = 1.0       # table widths per second
    max_accel: float = 8.0
    gripper_radius: float = 0.04
    object_radius: float = 0.05  # balls; blocks have this half-side
    grasp_reach: float = 0.06
    grasp_max_speed: float = float("inf")  # closing faster than this (table/s) grasps nothing (SuP's suite: 0.15)
    max_steps: int = 300          # demonstrations of the novel tasks take up to ~300 steps

    def validate(self) -> None:
        if not 8 <= self.view_size <= 256:
            raise UserError(f"view_size must be in [8, 256], got {self.view_size}")
        for name in ("control_dt", "kp", "kd", "max_speed", "max_accel", "gripper_radius", "object_radius",
                     "grasp_reach", "grasp_max_speed", "wrist_window"):
            if getattr(self, name) <= 0:
                raise UserError(f"tabletop {name} must be positive, got {getattr(self, name)}")
        if self.substeps < 1 or self.max_steps < 1:
            raise UserError("tabletop substeps and max_steps must be at least 1")


class Tabletop:
    """B scenes stepped together. State arrays: gripper (B, 2), velocity (B, 2), grip (B,), held (B,),
    objects (B, K, 2), colour (B, K), shape (B, K), active (B, K). ``views=False`` skips rendering (the
    observations then hold the state and the instruction only) for state-based work."""

    def __init__(self, batch: int, config: TabletopConfig = TabletopConfig(), views: bool = True):
        config.validate()
        self.B, self.cfg, self.views = batch, config, views
        self.gripper = np.full((batch, 2), 0.5)
        self.velocity = np.zeros((batch, 2))
        self.grip = np.zeros(batch, bool)
        self.held = np.full(batch, -1)
        self.objects = np.zeros((batch, MAX_OBJECTS, 2))
        self.colour = np.zeros((batch, MAX_OBJECTS), np.int64)
        self.shape = np.zeros((batch, MAX_OBJECTS), np.int64)
        self.active = np.zeros((batch, MAX_OBJECTS), bool)
        self._set_tasks([Task("gather")] * batch)
        self.steps = np.zeros(batch, np.int64)
        P = config.view_size
        self._pix = (np.arange(P) + 0.5) / P  # pixel centres in [0, 1]

    # ------------------------------------------------------------------ reset

    def reset(self, tasks: list[Task], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """New scenes for ``tasks`` (one per scene): objects placed apart, the task not already solved."""
        if len(tasks) != self.B:
            raise ValueError(f"need {self.B} tasks, got {len(tasks)}")
        self._set_tasks(tasks)
        for b, task in enumerate(tasks):
            self._layout(b, task, rng)
        self.gripper[:] = rng.uniform(0.3, 0.7, (self.B, 2))
        self.velocity[:] = 0.0
        self.grip[:] = False
        self.held[:] = -1
        self.steps[:] = 0
        return self.observe()

    def _set_tasks(self, tasks: list[Task]) -> None:
        """The tasks, and their slots as arrays for the vectorised ``success``."""
        self.tasks = list(tasks)
        self._task_kind = np.array([KINDS.index(t.kind) for t in tasks])
        self._task_colour = np.array([t.colour for t in tasks])
        self._task_other = np.array([t.other for t in tasks])
        self._relation = np.array([RELATIONS.get(t.relation, (0.0, 0.0)) for t in tasks]).reshape(-1, 2)
        self._zone = np.array([ZONES.get(t.zone, (0.0, 0.0)) for t in tasks]).reshape(-1, 2)
        self._instruction = np.stack([tokenize(t.text) for t in tasks])

    def _layout(self, b: int, task: Task, rng: np.random.Generator) -> None:
        n = int(rng.integers(3, MAX_OBJECTS + 1))
        required = [c for c in (task.colour, task.other) if c >= 0]
        rest = [int(c) for c in rng.permutation(len(COLOURS)) if c not in required]
        colours = rng.permutation(np.array(required + rest[: n - len(required)]))
        shapes = np.zeros(n, np.int64)
        if task.kind == "place":
            shapes = rng.integers(0, 2, n)
            shapes[colours == task.colour] = 1
        for _ in range(1000):
            pos = rng.uniform(0.12, 0.88, (n, 2))
            gaps = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(n)
            if gaps.min() < 0.15:
                continue
            self.objects[b] = 0.0
            self.objects[b, :n] = pos
            self.colour[b] = -1
            self.colour[b, :n] = colours
            self.shape[b] = 0
            self.shape[b, :n] = shapes
            self.active[b] = np.arange(MAX_OBJECTS) < n
            self.held[b] = -1
            if not self._solved(b):
                return
        raise RuntimeError("could not lay out a scene")  # not reached with 3-5 objects

    # ------------------------------------------------------------------ dynamics

    def step(self, waypoints: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Track waypoints (B, 3) = (x, y, grip > 0.5 closes) for one control step; (obs, success)."""
        waypoints = np.asarray(waypoints, dtype=float)
        if waypoints.shape != (self.B, 3) or not np.isfinite(waypoints).all():
            raise ValueError(f"waypoints must be finite and of shape ({self.B}, 3), got {waypoints.shape}")
        cfg, dt = self.cfg, self.cfg.control_dt / self.cfg.substeps
        target = np.clip(waypoints[:, :2], 0.0, 1.0)
        self._set_grip(waypoints[:, 2] > 0.5)
        for _ in range(cfg.substeps):
            accel = cfg.kp * (target - self.gripper) - cfg.kd * self.velocity
            accel *= np.minimum(1.0, cfg.max_accel / np.maximum(np.linalg.norm(accel, axis=1, keepdims=True), 1e-12))
            self.velocity += accel * dt
            speed = np.linalg.norm(self.velocity, axis=1, keepdims=True)
            self.velocity *= np.minimum(1.0, cfg.max_speed / np.maximum(speed, 1e-12))
            self.gripper = np.clip(self.gripper + self.velocity * dt, 0.0, 1.0)
            self._contacts()
        self.steps += 1
        return self.observe(), self.success()

    def _set_grip(self, close: np.ndarray) -> None:
        closing = close & ~self.grip
        if closing.any():
            dist = np.linalg.norm(self.objects - self.gripper[:, None], axis=-1)
            dist[~self.active] = np.inf
            nearest = dist.argmin(1)
            reach = dist[np.arange(self.B), nearest] <= self.cfg.grasp_reach
            reach &= np.linalg.norm(self.velocity, axis=1) <= self.cfg.grasp_max_speed
            self.held = np.where(closing & reach, nearest, self.held)
        self.held = np.where(close, self.held, -1)
        self.grip = close

    def _contacts(self) -> None:
        """Held objects follow the gripper; a closed, empty gripper moving into an object shoves it out of the
        way (an open one passes over objects, so it can grasp them); objects separate pairwise and stay on
        the table (4 rounds of separate-then-clip)."""
        rows = np.arange(self.B)
        holding = self.held >= 0
        self.objects[rows[holding], self.held[holding]] = self.gripper[holding]
        r, rg = self.cfg.object_radius, self.cfg.gripper_radius
        free = self.active.copy()
        free[rows[holding], self.held[holding]] = False
        offset = self.objects - self.gripper[:, None]
        dist = np.linalg.norm(offset, axis=-1)
        approaching = (offset * self.velocity[:, None]).sum(-1) > 0  # contact only pushes (a release never drags)
        hit = free & (dist < r + rg) & approaching & (self.grip & ~holding)[:, None]
        if hit.any():
            normal = offset / np.maximum(dist, 1e-9)[..., None]
            self.objects = np.where(hit[..., None], self.gripper[:, None] + normal * (r + rg), self.objects)
        K = MAX_OBJECTS
        order = np.sign(np.arange(K)[:, None] - np.arange(K)[None, :])       # coincident objects part vertically
        for _ in range(4):
            self.objects = np.clip(self.objects, r, 1 - r)
            delta = self.objects[:, :, None] - self.objects[:, None]            # (B, K, K, 2)
            gap = np.linalg.norm(delta, axis=-1)
            both = self.active[:, :, None] & self.active[:, None] & ~np.eye(K, dtype=bool)
            overlap = np.where(both, np.maximum(2 * r - gap, 0.0), 0.0)
            if not overlap.any():
                break
            direction = np.where((gap > 1e-9)[..., None], delta / np.maximum(gap, 1e-9)[..., None],
                                 np.stack([np.zeros((K, K)), order], -1))
            push = (overlap[..., None] * direction).sum(2) / 2
            push[~free] = 0.0
            self.objects = np.clip(self.objects + push, r, 1 - r)
        self.objects[~self.active] = 0.0
        self.objects[rows[holding], self.held[holding]] = self.gripper[holding]

    # ------------------------------------------------------------------ success

    def _solved(self, b: int) -> bool:
        task, pos, active = self.tasks[b], self.objects[b], self.active[b]
        if self.held[b] >= 0:
            return False
        index = {int(c): k for k, c in enumerate(self.colour[b]) if active[k]}
        if task.kind == "push":
            d = pos[index[task.colour]] - pos[index[task.other]]
            u = np.array(RELATIONS[task.relation])
            along, across = d @ u, abs(d[0] * u[1] - d[1] * u[0])
            return bool(along >= 0.12 and across <= 0.1)
        if task.kind == "place":
            x0, y0 = ZONES[task.zone]
            x, y = pos[index[task.colour]]
            return bool(x0 <= x <= x0 + ZONE_SIZE and y0 <= y <= y0 + ZONE_SIZE)
        balls = pos[active]
        if task.kind == "gather":
            return bool(np.linalg.norm(balls - balls.mean(0), axis=1).max() <= 0.15)
        return bool(np.abs(balls[:, 1] - balls[:, 1].mean()).max() <= 0.04)  # line_up: a horizontal row

    def success(self) -> np.ndarray:
        """(B,) whether each scene's task is solved: ``_solved`` for all scenes at once (tested equal)."""
        rows, pos, active = np.arange(self.B), self.objects, self.active
        target = np.argmax((self.colour == self._task_colour[:, None]) & active, 1)
        other = np.argmax((self.colour == self._task_other[:, None]) & active, 1)
        d, u = pos[rows, target] - pos[rows, other], self._relation
        along, across = (d * u).sum(1), np.abs(d[:, 0] * u[:, 1] - d[:, 1] * u[:, 0])
        push = (along >= 0.12) & (across <= 0.1)
        xy = pos[rows, target]
        place = ((self._zone <= xy) & (xy <= self._zone + ZONE_SIZE)).all(1)
        mean = (pos * active[..., None]).sum(1) / np.maximum(active.sum(1), 1)[:, None]
        gather = np.where(active, np.linalg.norm(pos - mean[:, None], axis=-1), 0.0).max(1) <= 0.15
        line_up = np.where(active, np.abs(pos[..., 1] - mean[:, 1, None]), 0.0).max(1) <= 0.04
        kind = self._task_kind
        solved = np.select([kind == 0, kind == 1, kind == 2], [push, place, gather], line_up)
        return solved & (self.held < 0)

    # ------------------------------------------------------------------ observations

    def state(self) -> np.ndarray:
        """(B, 5 + 5 K) float32: gripper x, y, grip, vx, vy; per object x, y, colour/4, shape, held."""
        held = np.zeros((self.B, MAX_OBJECTS))
        rows = np.flatnonzero(self.held >= 0)
        held[rows, self.held[rows]] = 1.0
        per_object = np.stack([self.objects[..., 0], self.objects[..., 1], self.colour / 4.0, self.shape, held], -1)
        per_object[~self.active] = 0.0
        head = np.concatenate([self.gripper, self.grip[:, None], self.velocity], 1)
        return np.concatenate([head, per_object.reshape(self.B, -1)], 1).astype(np.float32)

    def load_state(self, state: np.ndarray, tasks: list[Task]) -> dict[str, np.ndarray]:
        """Set every scene from ``state()`` vectors (B, 30) and their tasks; the inverse of ``state()``.

        Objects whose position is exactly (0, 0) are absent (``state()`` zeroes inactive
        objects; active ones never touch the corner). Returns the observation.
        """
        state = np.asarray(state, dtype=float)
        if state.shape != (self.B, 5 + 5 * MAX_OBJECTS) or not np.isfinite(state).all():
            raise ValueError(f"state must be finite and of shape ({self.B}, {5 + 5 * MAX_OBJECTS}), got {state.shape}")
        if len(tasks) != self.B:
            raise ValueError(f"need {self.B} tasks, got {len(tasks)}")
        self._set_tasks(tasks)
        per_object = state[:, 5:].reshape(self.B, MAX_OBJECTS, 5)
        self.gripper[:] = state[:, :2]
        self.grip[:] = state[:, 2] > 0.5
        self.velocity[:] = state[:, 3:5]
        self.objects[:] = per_object[..., :2]
        self.active[:] = (per_object[..., :2] != 0).any(-1)
        self.colour[:] = np.where(self.active, np.rint(per_object[..., 2] * 4), -1).astype(np.int64)
        self.shape[:] = np.where(self.active, np.rint(per_object[..., 3]), 0).astype(np.int64)
        held = (per_object[..., 4] > 0.5) & self.active
        self.held[:] = np.where(held.any(1), held.argmax(1), -1)
        self.steps[:] = 0
        return self.observe()

    def render(self, centre: np.ndarray | None = None, window: float = 1.0) -> np.ndarray:
        """(B, P, P, 3) uint8 of the square window of side ``window`` centred at ``centre`` (default: the table)."""
        P, B = self.cfg.view_size, self.B
        centre = np.full((B, 2), 0.5) if centre is None else centre
        xs = centre[:, 0, None] + (self._pix - 0.5) * window                 # (B, P) world x of each column
        ys = centre[:, 1, None] + (self._pix - 0.5) * window
        X, Y = xs[:, None, :], ys[:, :, None]                                 # broadcast to (B, P, P)
        inside = (X >= 0) & (X <= 1) & (Y >= 0) & (Y <= 1)
        img = np.where(inside[..., None], np.uint8(205), np.uint8(0)).astype(np.uint8)
        img = np.broadcast_to(img, (B, P, P, 3)).copy()
        for x0, y0 in ZONES.values():
            zone = inside & (X >= x0) & (X <= x0 + ZONE_SIZE) & (Y >= y0) & (Y <= y0 + ZONE_SIZE)
            img[zone] = (175, 175, 160)
        r = self.cfg.object_radius
        for k in range(MAX_OBJECTS):
            dx = X - self.objects[:, k, 0, None, None]
            dy = Y - self.objects[:, k, 1, None, None]
            ball = dx**2 + dy**2 <= r**2
            block = (np.abs(dx) <= r) & (np.abs(dy) <= r)
            mask = np.where(self.shape[:, k, None, None] == 1, block, ball) & self.active[:, k, None, None]
            img[mask] = RGB[np.broadcast_to(self.colour[:, k, None, None], mask.shape)[mask]]
        d2 = (X - self.gripper[:, 0, None, None]) ** 2 + (Y - self.gripper[:, 1, None, None]) ** 2
        rg = self.cfg.gripper_radius
        ring = (d2 <= rg**2) & ((d2 >= (0.6 * rg) ** 2) | self.grip[:, None, None])  # closed: filled
        img[ring] = (30, 30, 30)
        return img

    def observe(self) -> dict[str, np.ndarray]:
        obs = {"state": self.state(), "instruction": self._instruction.copy()}
        if self.views:
            obs.update(head=self.render(), wrist=self.render(self.gripper, self.cfg.wrist_window))
        return obs


class TabletopEnv(gym.Env):
    """One Tabletop scene: Dict observation (state, head, wrist, instruction), action = waypoint (x, y, grip)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, split: str = "train", config: TabletopConfig = TabletopConfig(),
                 render_mode: str | None = None):
        if split not in SPLITS:
            raise UserError(f"unknown tabletop split '{split}' (choose from {', '.join(SPLITS)})")
        self.split, self.sim, self.render_mode = split, Tabletop(1, config), render_mode
        P, n_state = config.view_size, 5 + 5 * MAX_OBJECTS
        self.observation_space = gym.spaces.Dict({
            "state": gym.spaces.Box(-max(1.0, config.max_speed), max(1.0, config.max_speed), (n_state,), np.float32),
            "head": gym.spaces.Box(0, 255, (P, P, 3), np.uint8),
            "wrist": gym.spaces.Box(0, 255, (P, P, 3), np.uint8),
            "instruction": gym.spaces.Box(0, len(VOCAB) + 1, (MAX_WORDS,), np.int64),
        })
        self.action_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.task: Task | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.task = (options or {}).get("task") or sample_task(self.split, self.np_random)
        obs = self.sim.reset([self.task], self.np_random)
        return {k: v[0] for k, v in obs.items()}, {"instruction": self.task.text}

    def step(self, action):
        obs, success = self.sim.step(np.asarray(action, dtype=float)[None])
        truncated = bool(self.sim.steps[0] >= self.sim.cfg.max_steps) and not success[0]
        return ({k: v[0] for k, v in obs.items()}, float(success[0]), bool(success[0]), truncated,
                {"instruction": self.task.text})

    def render(self):
        return self.sim.render()[0]
