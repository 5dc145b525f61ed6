import copy

import numpy as np
import pytest

from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.sup import (
    RATES,
    ChunkDensity,
    SchedulerConfig,
    ScriptedChunks,
    entropy_scheduler,
    execute,
    fixed_rate,
    next_chunks,
    oracle_scheduler,
    paired,
    random_rates,
    segment_oracle,
    train_scheduler,
    true_deviations,
    world_model_costs,
)
from nanorepro.embodied.sup_experiment import _dominated_share
from nanorepro.envs.tabletop import Tabletop, TabletopConfig, sample_task

TASKS = [sample_task("train", np.random.default_rng(0)) for _ in range(6)]


def test_scripted_chunks_at_rate_one_match_the_demonstrations():
    out = execute(ScriptedChunks, TASKS, seed=3, scheduler=fixed_rate(1), max_steps=300)
    demos = make_demos(TASKS, seed=3, horizon=8)
    assert np.array_equal(out["success"], demos["success"])
    solved_at = [int(np.argmax(demos["solved"][demos["episode"] == e])) + 1 for e in range(len(TASKS))]
    assert [int(s) for s, ok in zip(out["steps"], out["success"], strict=True) if ok] == \
        [s for s, ok in zip(solved_at, demos["success"], strict=True) if ok]


def test_faster_rates_use_fewer_control_steps():
    slow = execute(ScriptedChunks, TASKS, 1, fixed_rate(1))
    fast = execute(ScriptedChunks, TASKS, 1, fixed_rate(2))
    both = slow["success"] & fast["success"]
    assert both.any() and (fast["steps"][both] < slow["steps"][both]).all()


def test_recorded_rows_chain_chunk_to_chunk():
    out = execute(ScriptedChunks, TASKS, 2, random_rates(0), record=True)
    rows = out["rows"]
    assert set(np.unique(rows["rate"])) <= set(RATES)
    for i, j in enumerate(rows["following"]):
        if j >= 0:
            assert rows["episode"][j] == rows["episode"][i] and j > i
            assert np.allclose(rows["next_state"][i], rows["state"][j])
    ends = rows["following"] < 0
    assert ends.sum() == len(TASKS)  # exactly one last chunk per episode


def test_true_deviations_leave_the_simulator_untouched_and_are_zero_at_rate_one():
    sim = Tabletop(3)
    sim.reset(TASKS[:3], np.random.default_rng(0))
    before = copy.deepcopy(sim.state())
    chunk = np.tile(np.array([[0.9, 0.9, 0.0]]), (2, 8, 1)) * np.linspace(0.5, 1, 8)[None, :, None]
    dev = true_deviations(sim, np.array([0, 2]), chunk)
    assert dev.shape == (2, len(RATES)) and np.allclose(dev[:, 0], 0) and (dev[:, -1] > 0).all()
    assert np.array_equal(before, sim.state())


def test_oracles_and_heuristics_choose_only_allowed_rates():
    loose = execute(ScriptedChunks, TASKS[:2], 0, oracle_scheduler(1e9), record=True)
    assert (loose["rows"]["rate"] == RATES[-1]).all()
    strict = execute(ScriptedChunks, TASKS[:2], 0, oracle_scheduler(-1.0), record=True)
    assert (strict["rows"]["rate"] == 1).all()
    segment = execute(ScriptedChunks, TASKS[:2], 0, segment_oracle, record=True)
    assert set(np.unique(segment["rows"]["rate"])) <= {1, RATES[-1]}


def test_entropy_heuristic_speeds_up_high_entropy_chunks_more():
    density = ChunkDensity(30, 8)
    states = np.random.default_rng(0).random((5, 30)).astype(np.float32)
    sim = Tabletop(5)
    sim.reset(TASKS[:5], np.random.default_rng(0))
    h = density.entropy(states, sim._instruction)
    thresholds = np.sort(h)[[0, 2, 4]] - 1e-6
    k = entropy_scheduler(density, thresholds)(states, None, {"sim": sim, "rows": np.arange(5)})
    assert list(k[np.argsort(h)]) == sorted(k) and k.min() >= 1 and k.max() <= 4


def test_lagrangian_scheduler_meets_the_budget_on_a_one_step_problem():
    n = 400
    rng = np.random.default_rng(0)
    # one state and chunk for every row: Q(s, k) must learn r_k - lambda c_k exactly, and one rate is best
    rows = {"state": np.zeros((n, 30), np.float32), "chunk": np.zeros((n, 8, 3), np.float32),
            "rate": rng.choice(RATES, n), "following": np.full(n, -1)}
    costs = np.tile(np.array([0.0, 0.2, 0.5, 1.0]), (n, 1))
    cfg = SchedulerConfig(dual_iterations=15, q_steps=150)
    free = train_scheduler(rows, costs, budget=10.0, cfg=cfg)
    assert free.lam == 0.0 and (free(rows["state"], rows["chunk"]) == 4).all()
    tight = train_scheduler(rows, costs, budget=0.25, cfg=cfg)
    assert tight.lambdas[0] > 0  # the first greedy choice (k = 4, cost 1) is over budget: the price rises
    assert tight.cost <= 0.25 and (tight(rows["state"], rows["chunk"]) == 2).all()  # k = 2 costs 0.2: the best within


def test_paired_statistics_by_hand():
    base = {"success": np.array([1, 1, 0, 1], bool), "steps": np.array([10, 20, 30, 40])}
    method = {"success": np.array([1, 0, 1, 1], bool), "steps": np.array([5, 10, 15, 20])}
    out = paired(base, method)
    assert out["speedup"] == pytest.approx(25 / 12.5)
    assert out["success_diff"] == 0.0
    assert out["success_diff_lower95"] == pytest.approx(-1.645 * np.sqrt(2 / 3) / 2)


def test_pareto_dominance_share():
    def run(points):
        return {"results": {"demonstrator": {"test": {name: {"speedup": s, "success": q}
                                                      for name, (s, q) in points.items()}}}}

    runs = [run({"sup_a": (1.0, 0.95), "sup_b": (2.0, 0.9), "fixed_2": (1.5, 0.9), "entropy_0": (1.8, 0.95),
                 "fixed_4": (3.0, 0.1)})]
    # frontier at 1.5: 0.925 >= 0.9 - 0.01; at 1.8: 0.91 < 0.95 - 0.01; fixed_4 lies outside SuP's range
    assert _dominated_share(runs) == pytest.approx(0.5)


def test_slow_grasps_only_with_the_speed_limit():
    assert TabletopConfig().grasp_max_speed == float("inf")
    fast = execute(ScriptedChunks, TASKS, 0, fixed_rate(4), config=TabletopConfig(grasp_max_speed=0.15))
    slow = execute(ScriptedChunks, TASKS, 0, fixed_rate(1), config=TabletopConfig(grasp_max_speed=0.15))
    assert slow["success"].sum() > fast["success"].sum()


class ShiftWM:
    """A hand-made world model: the end state's x moves by the chunk's mean x, its vx (excluded) by 100."""

    def predict(self, state, instruction, chunk):
        end = state.clone()
        end[:, 0] += chunk[:, :, 0].mean(1)
        end[:, 3] += 100 * chunk[:, :, 0].mean(1)
        return end, None, None


def test_world_model_costs_by_hand_with_and_without_the_next_chunk():
    state = np.zeros((2, 30), np.float32)
    chunk = np.tile(np.arange(8, dtype=np.float32)[None, :, None], (2, 1, 3))  # x = 0..7, mean 3.5
    costs = world_model_costs(ShiftWM(), state, np.zeros((2, 16), np.int64), chunk)
    # k = 2 keeps 0, 2, 4, 6, 7 then holds 7: mean (0+2+4+6+7*4)/8 = 5; k = 4: (0+4+7*6)/8 = 5.75
    assert np.allclose(costs[0], [0.0, 1.5, (0 + 3 + 6 + 7 * 5) / 8 - 3.5, 2.25])
    following = np.stack([chunk[1], np.full((8, 3), np.nan, np.float32)])
    rolled = world_model_costs(ShiftWM(), state, np.zeros((2, 16), np.int64), chunk, following)
    assert np.allclose(rolled, costs)  # a shift-invariant model: the next chunk adds the same to both
    rows = {"chunk": chunk, "following": np.array([1, -1])}
    assert np.array_equal(next_chunks(rows)[0], chunk[1]) and np.isnan(next_chunks(rows)[1]).all()
