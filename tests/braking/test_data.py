import numpy as np
import pytest

from nanorepro.braking import data as logs
from nanorepro.braking.controllers import ABSParams, NoisyABS
from nanorepro.common.errors import UserError
from nanorepro.envs.braking import SURFACES, Road


@pytest.fixture(scope="module")
def dataset():
    roads = [Road(SURFACES["dry_asphalt"]), Road(SURFACES["snow"])]
    return logs.generate(NoisyABS(ABSParams()), roads, 10, np.random.default_rng(0), batch=4)


def test_generated_logs_round_trip(tmp_path, dataset):
    path = logs.save(tmp_path / "logs.npz", dataset)
    back = logs.load(path)
    assert np.array_equal(back.obs, dataset.obs) and np.array_equal(back.episode, dataset.episode)
    assert list(back.split).count("val") == 2 and set(back.surface) == {"dry_asphalt", "snow"}
    assert back.n_episodes == 10 and np.all(back.distance > 0)
    ends = np.flatnonzero(back.terminated | back.truncated)
    assert np.array_equal(back.episode[ends], np.arange(10))  # one end per stop, in order


def test_histories_pad_stop_starts_with_the_first_measurement(dataset):
    hist = logs.histories(dataset, 3)
    start = dataset.episode_starts()[1]
    assert np.array_equal(hist[start], np.repeat(dataset.obs[start][None], 3, axis=0))
    assert np.array_equal(hist[start + 2], dataset.obs[start:start + 3])
    w = logs.windows(dataset, 3, 4)
    assert w["hist"].shape[1:] == (3, 5) and w["action"].shape[1] == 4 and w["next_obs"].shape[1:] == (4, 5)


def raw(dataset, **changes):
    base = {"obs": dataset.obs, "action": dataset.action, "next_obs": dataset.next_obs,
            "terminated": dataset.terminated, "truncated": dataset.truncated, "episode": dataset.episode,
            "control_dt": np.float64(0.01)}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("changes, message", [
    ({"action": None}, "missing array 'action'"),
    ({"obs": np.zeros((3, 5), np.float32)}, "must have shape"),
    ({"action": "nan"}, "NaN"),
    ({"action": "big"}, "must lie in \\[0, 1\\]"),
    ({"episode": "shuffled"}, "'episode' must start at 0"),
    ({"terminated": "no_end"}, "must end with terminated or truncated"),
    ({"control_dt": np.float64(0.0)}, "control_dt"),
])
def test_validation_names_the_problem(dataset, changes, message):
    for key, value in list(changes.items()):
        if not isinstance(value, str):
            continue
        if value == "nan":
            changes[key] = dataset.action.copy()
            changes[key][5] = np.nan
        elif value == "big":
            changes[key] = dataset.action * 3
        elif value == "shuffled":
            changes[key] = dataset.episode[::-1].copy()
        elif value == "no_end":
            changes[key] = np.zeros_like(dataset.terminated)
            changes["truncated"] = np.zeros_like(dataset.truncated)
    with pytest.raises(UserError, match=message):
        logs.validate(raw(dataset, **changes))


def test_unreadable_and_pickled_files_are_rejected(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable .npz"):
        logs.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "obj.npz", obs=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UserError, match="not a readable .npz"):
        logs.load(tmp_path / "obj.npz")
