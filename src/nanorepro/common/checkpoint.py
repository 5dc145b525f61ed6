"""Checkpoints as one safetensors file: tensors as tensors, everything else as JSON in its header.

Any nested state (a model's and an optimiser's ``state_dict()``, step counters, RNG
states, learning curves) round-trips: tensors are lifted out into safetensors under
their dotted path, and the rest is kept as a JSON skeleton in the file's metadata.
Loading never unpickles anything. Writes are atomic (see ``common.io``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from nanorepro.common.errors import UserError
from nanorepro.common.io import atomic_write_bytes

_STATE_KEY = "nanorepro_state"


def flatten_state(obj: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state into ``{path: tensor}`` and a JSON-able skeleton.

    Dicts with non-string keys (optimiser states are keyed by int) and tuples are tagged
    so that they come back exactly as they went in.
    """
    if isinstance(obj, torch.Tensor):  # one copy: tied weights (one storage, two names) are two tensors on disk
        return ({prefix: obj.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)},
                {"__tensor__": prefix})
    if isinstance(obj, dict):
        tensors, items = {}, []
        for key, value in obj.items():
            sub_t, sub_s = flatten_state(value, f"{prefix}.{key}" if prefix else str(key))
            tensors.update(sub_t)
            items.append([key, sub_s])
        if all(isinstance(k, str) for k in obj):
            return tensors, {"__dict__": items}
        return tensors, {"__keyed__": items}
    if isinstance(obj, (list, tuple)):
        tensors, items = {}, []
        for i, value in enumerate(obj):
            sub_t, sub_s = flatten_state(value, f"{prefix}.{i}")
            tensors.update(sub_t)
            items.append(sub_s)
        return tensors, {"__tuple__" if isinstance(obj, tuple) else "__list__": items}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {}, obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at '{prefix}'")


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    if not isinstance(skeleton, dict):
        return skeleton
    if "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if "__dict__" in skeleton or "__keyed__" in skeleton:
        items = skeleton.get("__dict__", skeleton.get("__keyed__"))
        return {key: unflatten_state(tensors, value) for key, value in items}
    if "__tuple__" in skeleton:
        return tuple(unflatten_state(tensors, v) for v in skeleton["__tuple__"])
    return [unflatten_state(tensors, v) for v in skeleton["__list__"]]


def save_checkpoint(path: str | Path, state: Any) -> Path:
    tensors, skeleton = flatten_state(state)
    data = safetensors_bytes(tensors, metadata={_STATE_KEY: json.dumps(skeleton)})
    return atomic_write_bytes(path, data)


def load_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint written by ``save_checkpoint``; a foreign or corrupt file is a UserError."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            if _STATE_KEY not in metadata:
                raise UserError(f"{path} is not a nanorepro checkpoint (no '{_STATE_KEY}' metadata)")
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except UserError:
        raise
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise UserError(f"cannot read checkpoint {path}: {exc}") from None
    return unflatten_state(tensors, json.loads(metadata[_STATE_KEY]))


def load_owned_checkpoint(path: str | Path, owner: dict, log=lambda message: None) -> dict | None:
    """The checkpoint at ``path`` if it holds ``owner``'s fields unchanged (a run to resume), else None.

    A checkpoint written for other settings is ignored, and ``log`` says so; none is None.
    """
    path = Path(path)
    if not path.exists():
        return None
    saved = load_checkpoint(path)
    if isinstance(saved, dict) and {k: saved.get(k) for k in owner} == owner:
        return saved
    log(f"ignoring {path}: it was written for other settings or data")
    return None
