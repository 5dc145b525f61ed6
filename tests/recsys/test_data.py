import importlib.util

import numpy as np
import pytest

from nanorepro.common.errors import UserError
from nanorepro.recsys.data import (
    DEFAULT_INSTRUCTION,
    HOLIDAYS,
    TASKS,
    WorldConfig,
    leave_out,
    load_atomic,
    longtail_mask,
    make_world,
    next_holiday,
    recbole_example_files,
    season_of,
)

SMALL = WorldConfig(n_items=300, n_users=80, n_brands=12, min_length=5, max_length=12)


@pytest.fixture(scope="module")
def world():
    return make_world(SMALL, seed=3)


def test_held_out_targets_never_appear_in_training_histories(world):
    held_out = {(u, t) for split in (world.valid, world.test) for u, t in zip(split.user, split.target, strict=True)}
    for user, history, target in zip(world.train.user, world.train.history, world.train.target, strict=True):
        assert not any((user, item) in held_out for item in history)
        assert (user, target) not in held_out
    # and each user's validation and test targets are the last two interactions of their sequence
    for split, offset in ((world.valid, 2), (world.test, 1)):
        for user, history, target in zip(split.user, split.history, split.target, strict=True):
            sequence = world.sequences[user]
            assert target == sequence[-offset]
            np.testing.assert_array_equal(history, sequence[:-offset])


def test_instructed_targets_satisfy_their_instruction(world):
    cat = world.catalogue
    for split in (world.train, world.test):
        for task, argument, target, week, history in zip(split.task, split.argument, split.target, split.week,
                                                        split.history, strict=True):
            name = TASKS[task]
            assert target not in history  # nothing is bought twice
            if name == "Category":
                assert cat.leaf[target] == argument
            elif name == "Season":
                assert argument == season_of(week) and cat.season[target] == argument
            elif name == "Holiday":
                assert argument == next_holiday(week) and cat.holiday[target] == argument
            elif name == "Longtail":
                assert world.longtail[target]


def test_world_is_deterministic_per_seed():
    a, b, c = make_world(SMALL, seed=1), make_world(SMALL, seed=1), make_world(SMALL, seed=2)
    assert a.catalogue.titles == b.catalogue.titles and a.test.target == b.test.target
    assert a.catalogue.titles != c.catalogue.titles


def test_calendar():
    assert [season_of(w) for w in (0, 12, 13, 51, 52)] == [0, 0, 1, 3, 0]
    assert HOLIDAYS[next_holiday(3)][0] == "valentine"
    assert HOLIDAYS[next_holiday(50)][0] == "christmas"
    assert HOLIDAYS[next_holiday(51 + 1)][0] == "newyear"  # wraps around the year


def test_longtail_mask_is_the_least_popular_fraction(world):
    pop = world.catalogue.popularity
    assert world.longtail.mean() == pytest.approx(0.8, abs=1 / len(pop))
    assert pop[world.longtail].max() <= pop[~world.longtail].min()


def test_atomic_loader_orders_by_time_and_reads_item_text(tmp_path):
    inter = tmp_path / "toy.inter"
    inter.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     "u1\ti9\t5\t30\nu1\ti7\t3\t10\nu2\ti7\t4\t5\nu1\ti8\t1\t20\n")
    item = tmp_path / "toy.item"
    item.write_text("item_id:token\ttitle:token_seq\tyear:float\ni7\tToy Story\t1995\ni9\tHeat\t1995\n")
    data = load_atomic(inter, item)
    assert data.user_ids == ["u1", "u2"] and data.item_ids == ["i9", "i7", "i8"]
    np.testing.assert_array_equal(data.sequences[0], [1, 2, 0])  # i7 (t=10), i8 (t=20), i9 (t=30)
    assert data.item_text == ["heat", "toy story", ""]
    assert data.item_fields == {"title": ["Heat", "Toy Story", ""], "year": ["1995", "1995", ""]}


def test_leave_out_holds_out_the_last_items_of_long_enough_users():
    train, (valid, test) = leave_out([np.array([5, 6, 7, 8, 9]), np.array([1, 2, 3])], 2)
    # user 0: targets 6, 7 train; 8 validation (history 5 6 7); 9 test. User 1 (3 < 2 + 2): training only
    assert train.target == [6, 7, 2, 3] and train.user == [0, 0, 1, 1]
    np.testing.assert_array_equal(train.history[1], [5, 6])
    assert valid.target == [8] and test.target == [9] and valid.user == test.user == [0]
    np.testing.assert_array_equal(test.history[0], [5, 6, 7, 8])
    assert set(train.instruction) == {DEFAULT_INSTRUCTION} and set(train.task) == {0}


def test_longtail_mask_is_the_least_popular_share():
    np.testing.assert_array_equal(longtail_mask(np.array([5, 1, 9, 3, 7]), 0.6), [True, True, False, True, False])


def test_missing_recbole_data_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps recbole==1.2.1"):
        recbole_example_files("ml-100k")


def test_movielens_100k_from_the_recbole_wheel():
    if importlib.util.find_spec("recbole") is None:  # `make install` installs it (data only)
        pytest.skip("MovieLens-100k needs `pip install --no-deps recbole==1.2.1`")
    data = load_atomic(*recbole_example_files("ml-100k"))
    assert (len(data.user_ids), len(data.item_ids)) == (943, 1682)
    assert sum(map(len, data.sequences)) == 100_000 and min(map(len, data.sequences)) >= 20
    assert data.item_fields["movie_title"][data.item_ids.index("1")] == "Toy Story"


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("user:token\titem_id:token\nu\ti\n", "no 'user_id' column"),
    ("user_id\titem_id:token\nu\ti\n", "is not name:type"),
    ("user_id:token\titem_id:token\nu\ti\tx\n", "line 2: 3 fields"),
    ("user_id:token\titem_id:token\ttimestamp:float\nu\ti\tnoon\n", "timestamp 'noon' is not a number"),
    ("user_id:token\titem_id:token\n", "no interactions"),
])
def test_atomic_loader_errors_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.inter"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_atomic(path)
    with pytest.raises(UserError, match="not found"):
        load_atomic(tmp_path / "missing.inter")
