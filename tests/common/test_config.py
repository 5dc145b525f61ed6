from dataclasses import dataclass
from typing import Literal

import pytest

from nanorepro.common.config import apply_overrides, config_hash
from nanorepro.common.errors import UserError


@dataclass(frozen=True)
class Demo:
    steps: int = 10
    lr: float = 0.1
    flag: bool = False
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)

    def validate(self):
        if self.steps < 1:
            raise ValueError("steps must be >= 1")


def test_overrides_parse_each_type():
    cfg = apply_overrides(Demo(), ["steps=5", "lr=1e-3", "flag=true", "name=y", "mode=b", "sizes=10,20,40"])
    assert cfg == Demo(steps=5, lr=1e-3, flag=True, name="y", mode="b", sizes=(10, 20, 40))


@pytest.mark.parametrize(
    "override, message",
    [
        ("nope=1", "unknown config key 'nope'"),
        ("steps=ten", "bad value for 'steps'"),
        ("flag=maybe", "expected true or false"),
        ("mode=c", "choose from a, b"),
        ("steps", "expected key=value"),
        ("steps=0", "steps must be >= 1"),
    ],
)
def test_bad_overrides_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(Demo(), [override])


def test_config_hash_tracks_values():
    assert config_hash(Demo()) == config_hash(Demo())
    assert config_hash(Demo()) != config_hash(Demo(steps=11))
