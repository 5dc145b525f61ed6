"""Config dataclasses: ``key=value`` overrides with type checking, and a stable hash.

Configs are flat, frozen dataclasses whose fields are bool, int, float, str, a
``Literal`` of strings, or a tuple of those. ``--set key=value`` goes through
``apply_overrides``; an unknown key or an unparsable value is a one-line UserError.
A config may define ``validate()`` raising ``ValueError`` for values that parse but make
no sense (a negative horizon); that too becomes a UserError.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, Literal

from nanorepro.common.errors import UserError


def _parse(text: str, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if text not in choices:
            raise UserError(f"bad value for '{key}': {text!r} (choose from {', '.join(map(str, choices))})")
        return text
    if origin is tuple:
        args = typing.get_args(tp)
        parts = [p for p in text.replace(" ", "").strip("()[]").split(",") if p]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(p, args[0], key) for p in parts)
        if len(parts) != len(args):
            raise UserError(f"bad value for '{key}': {text!r} (expected {len(args)} comma-separated values)")
        return tuple(_parse(p, a, key) for p, a in zip(parts, args, strict=True))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        return _parse(text, args[0], key)
    if tp is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise UserError(f"bad value for '{key}': {text!r} (expected true or false)")
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            raise UserError(f"bad value for '{key}': {text!r} (expected {tp.__name__})") from None
    if tp is str:
        return text
    raise TypeError(f"config field '{key}' has unsupported type {tp}")


def apply_overrides(config: Any, overrides: list[str] | tuple[str, ...]) -> Any:
    """Return a copy of ``config`` with each ``key=value`` applied, then validated."""
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"bad override {item!r}: expected key=value")
        if key not in names:
            raise UserError(f"unknown config key '{key}' for {type(config).__name__} (known: {', '.join(names)})")
        changes[key] = _parse(text.strip(), hints[key], key)
    new = dataclasses.replace(config, **changes)
    validate(new)
    return new


def validate(config: Any) -> None:
    check = getattr(config, "validate", None)
    if check is None:
        return
    try:
        check()
    except ValueError as exc:
        raise UserError(f"invalid {type(config).__name__}: {exc}") from None


def config_dict(config: Any) -> dict[str, Any]:
    """The config's fields as plain values (nested dataclasses, e.g. per-env settings, become dicts)."""
    return dataclasses.asdict(config)


def config_hash(config: Any) -> str:
    """Short stable digest of the config's values (decides whether a stored run still matches)."""
    payload = json.dumps(config_dict(config), sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
