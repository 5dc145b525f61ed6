import numpy as np
import pytest

from nanorepro.common.errors import UserError
from nanorepro.embodied.demos import (
    CASUAL_SPEED,
    PRECISE_SPEED,
    Waypoint,
    _line,
    chunked,
    load_demos,
    make_demos,
    save_demos,
    select_episodes,
)
from nanorepro.envs.tabletop import Task, sample_task


def test_pacing_casual_then_precise_near_the_end():
    path = _line(np.array([0.1, 0.5]), np.array([0.7, 0.5]), 0.0, dt=0.1)
    xs = np.array([0.1] + [w.x for w in path])
    steps = np.diff(xs)
    precise = np.array([w.precise for w in path])
    assert path[-1].x == 0.7 and path[-1].precise
    np.testing.assert_allclose(steps[~precise], CASUAL_SPEED * 0.1)
    assert (steps[precise][:-1] == pytest.approx(PRECISE_SPEED * 0.1))
    assert (0.7 - xs[1:][precise] <= 0.1 + 1e-9).all()         # precise only within the careful radius
    assert precise.argmax() > 0 and precise[precise.argmax():].all()


def test_chunks_pad_with_the_final_waypoint():
    path = [Waypoint(float(i), 0.0, 0.0, False) for i in range(10)]
    chunks = chunked(path, 4)
    assert chunks.shape == (3, 4, 3)
    assert chunks[2, :, 0].tolist() == [8, 9, 9, 9]


@pytest.fixture(scope="module")
def demos():
    rng = np.random.default_rng(0)
    tasks = [sample_task("train", rng) for _ in range(12)] + [Task("place", 1, zone="top right")]
    return tasks, make_demos(tasks, seed=0, max_steps=300)


def test_demonstrations_solve_the_tasks_and_are_well_formed(demos, tmp_path):
    tasks, data = demos
    assert data["success"].mean() >= 0.75 and data["success"][-1]
    assert (np.diff(data["episode"]) >= 0).all() and set(data["episode"]) == set(range(len(tasks)))
    assert 0.2 < data["precise"].mean() < 0.9
    grip = data["action"][:, 2]
    assert set(np.unique(grip)) <= {0.0, 1.0}
    path = save_demos(tmp_path / "demos.npz", data)
    loaded = load_demos(path)
    for key, value in data.items():
        np.testing.assert_array_equal(loaded[key], value)


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d.pop("precise"), "missing arrays precise"),
    (lambda d: d.__setitem__("state", d["state"].astype(np.int32)), "'state' has dtype"),
    (lambda d: d.__setitem__("action", np.where(np.arange(len(d["action"]))[:, None] == 3, np.nan, d["action"])
                             .astype(np.float32)), "NaN"),
    (lambda d: d.__setitem__("episode", d["episode"][::-1].copy()), "non-decreasing"),
    (lambda d: d.__setitem__("wrist", d["wrist"][:-1]), "'wrist' has"),
    (lambda d: d.__setitem__("chunk", np.array(0)), "'chunk' must be a positive scalar"),
])
def test_validation_names_the_problem(demos, tmp_path, corrupt, message):
    data = dict(demos[1])
    corrupt(data)
    path = save_demos(tmp_path / "bad.npz", data)
    with pytest.raises(UserError, match=message):
        load_demos(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_demos(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable"):
        load_demos(tmp_path / "junk.npz")


def test_selecting_episodes_keeps_their_rows_in_order_and_reindexes_them(demos, tmp_path):
    _, data = demos
    part = select_episodes(data, np.array([7, 2]))
    for new, old in enumerate([2, 7]):
        np.testing.assert_array_equal(part["state"][part["episode"] == new], data["state"][data["episode"] == old])
        np.testing.assert_array_equal(part["instruction"][new], data["instruction"][old])
        assert part["success"][new] == data["success"][old]
    save_demos(tmp_path / "part.npz", part)
    assert load_demos(tmp_path / "part.npz")["episode"].max() == 1   # still a valid file
