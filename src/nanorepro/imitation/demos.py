"""Expert demonstrations for continuous control: a compact ``.npz`` plus a JSON sidecar.

File layout (all arrays length T = total transitions, episodes stored back to back):

    observations       float32 (T, obs_dim)
    actions            float32 (T, act_dim)
    next_observations  float32 (T, obs_dim)
    rewards            float32 (T,)
    terminated         bool    (T,)   the env terminated (e.g. Hopper fell)
    truncated          bool    (T,)   the time limit cut the episode
    episode_starts     int64   (N,)   index of each episode's first transition (0 first)

The sidecar ``<name>.json`` records env id, package versions, the expert's and a uniform
random policy's mean returns (the normalisation (R - R_random) / (R_expert - R_random)),
the seed and the command that made the file. ``load_demos`` validates everything and
raises one ``UserError`` naming the problem; files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from nanorepro.common.errors import UserError
from nanorepro.common.io import atomic_write_bytes, atomic_write_json, read_json

FIELDS: dict[str, tuple[type, int]] = {  # name -> (dtype, ndim)
    "observations": (np.float32, 2),
    "actions": (np.float32, 2),
    "next_observations": (np.float32, 2),
    "rewards": (np.float32, 1),
    "terminated": (np.bool_, 1),
    "truncated": (np.bool_, 1),
    "episode_starts": (np.int64, 1),
}


@dataclass(frozen=True)
class Demos:
    """Expert transitions as arrays (see the module docstring) plus the sidecar's metadata."""

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_starts: np.ndarray
    meta: dict

    @property
    def n_episodes(self) -> int:
        return len(self.episode_starts)

    def episode_returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)

    def episode_slices(self) -> list[slice]:
        ends = [*self.episode_starts[1:], len(self.rewards)]
        return [slice(int(a), int(b)) for a, b in zip(self.episode_starts, ends, strict=True)]

    def subsample(self, episodes: int, every: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """The first ``episodes`` episodes, every ``every``-th transition from a random offset (GAIL/DAC protocol).

        Returns obs, act, rew, next_obs, terminated tensors; each kept transition stays whole
        (its own next observation), so subsampling never invents a transition.
        """
        if not 1 <= episodes <= self.n_episodes:
            raise UserError(f"asked for {episodes} demonstration episodes; the file has {self.n_episodes}")
        index = np.concatenate([np.arange(s.start + rng.integers(every), s.stop, every)
                                for s in self.episode_slices()[:episodes]])
        return {"obs": torch.from_numpy(self.observations[index]), "act": torch.from_numpy(self.actions[index]),
                "rew": torch.from_numpy(self.rewards[index]),
                "next_obs": torch.from_numpy(self.next_observations[index]),
                "terminated": torch.from_numpy(self.terminated[index])}


def save_demos(path: str | Path, demos: Demos) -> Path:
    """Write ``path`` (.npz, compressed) and its JSON sidecar, each atomically."""
    path = Path(path)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: getattr(demos, k) for k in FIELDS})
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_json(path.with_suffix(".json"), demos.meta)
    return path


def load_demos(path: str | Path, env: gym.Env | None = None) -> Demos:
    """Read and validate a demo file (and its sidecar); with ``env``, also check it matches its spaces."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"demo file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"demo file {path} is not a readable .npz: {exc}") from None
    sidecar = path.with_suffix(".json")
    meta = read_json(sidecar, "demo sidecar") if sidecar.exists() else {}
    validate_arrays(arrays, str(path))
    demos = Demos(**{k: arrays[k] for k in FIELDS}, meta=meta)
    if env is not None:
        check_matches_env(demos, env, str(path))
    return demos


def validate_arrays(arrays: dict[str, np.ndarray], name: str) -> None:
    missing, extra = set(FIELDS) - set(arrays), set(arrays) - set(FIELDS)
    if missing or extra:
        raise UserError(f"{name}: wrong keys (missing {sorted(missing)}, unexpected {sorted(extra)})")
    for key, (dtype, ndim) in FIELDS.items():
        a = arrays[key]
        if a.dtype != dtype or a.ndim != ndim:
            raise UserError(f"{name}: '{key}' must be {np.dtype(dtype).name} with {ndim} dims, "
                            f"got {a.dtype} with shape {a.shape}")
        if a.dtype == np.float32 and not np.isfinite(a).all():
            raise UserError(f"{name}: '{key}' contains NaN or inf")
    T = len(arrays["rewards"])
    if T == 0:
        raise UserError(f"{name}: no transitions")
    for key in FIELDS:
        if key != "episode_starts" and len(arrays[key]) != T:
            raise UserError(f"{name}: '{key}' has {len(arrays[key])} rows, 'rewards' has {T}")
    if arrays["observations"].shape[1] != arrays["next_observations"].shape[1]:
        raise UserError(f"{name}: 'observations' and 'next_observations' widths differ")
    starts = arrays["episode_starts"]
    if len(starts) == 0 or starts[0] != 0 or (np.diff(starts) <= 0).any() or starts[-1] >= T:
        raise UserError(f"{name}: 'episode_starts' must start at 0 and increase strictly below {T}")
    ends = np.append(starts[1:], T) - 1
    if not (arrays["terminated"][ends] | arrays["truncated"][ends]).all():
        raise UserError(f"{name}: an episode does not end with terminated or truncated")


def check_matches_env(demos: Demos, env: gym.Env, name: str) -> None:
    obs_space, act_space = env.observation_space, env.action_space
    if demos.observations.shape[1:] != obs_space.shape:
        raise UserError(f"{name}: observations have shape {demos.observations.shape[1:]}, "
                        f"the env's are {obs_space.shape}")
    if demos.actions.shape[1:] != act_space.shape:
        raise UserError(f"{name}: actions have shape {demos.actions.shape[1:]}, the env's are {act_space.shape}")
    tol = 1e-5
    if (demos.actions < act_space.low - tol).any() or (demos.actions > act_space.high + tol).any():
        raise UserError(f"{name}: actions lie outside the env's action box [{act_space.low}, {act_space.high}]")
    env_name = getattr(env.spec, "id", None)
    if env_name and demos.meta.get("env_id") and demos.meta["env_id"] != env_name:
        raise UserError(f"{name}: demonstrations of {demos.meta['env_id']}, not {env_name}")


def bundled_demos_path(env_name: str) -> Path:
    """The demo file shipped with the package for ``env_name`` (``nanorepro/imitation/data``)."""
    path = Path(str(resources.files("nanorepro.imitation") / "data" / f"{env_name}.npz"))
    if not path.exists():
        shipped = sorted(p.stem for p in path.parent.glob("*.npz"))
        raise UserError(f"no bundled demonstrations for {env_name} (shipped: {', '.join(shipped) or 'none'}); "
                        f"make them with `nanorepro imitation make-experts {env_name}`")
    return path
