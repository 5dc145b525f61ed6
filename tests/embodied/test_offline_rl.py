"""Offline RL for the chunked policy: IQL critics over chunks, advantage weights, mixed-pool regression."""

import numpy as np
import pytest
import torch

from nanorepro.common.errors import UserError
from nanorepro.embodied.offline_rl import (
    TRANSITION_KEYS,
    advantage_weights,
    awr_pools,
    critic_inputs,
    demo_transitions,
    fit_critics,
)
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, Pool, fit_policy
from nanorepro.embodied.vlgor import label_success, prompt_tasks, solved_steps
from nanorepro.envs.tabletop import MAX_WORDS, RELATIONS, ZONES, Tabletop, Task, _unseen, sample_task


def test_critic_inputs_drop_the_gripper_velocity_only():
    state = torch.arange(30.0).view(1, 30) + 1
    x = critic_inputs(state, torch.zeros(1, MAX_WORDS, dtype=torch.long))
    assert torch.equal(x[0, :3], state[0, :3]) and torch.equal(x[0, 3:5], torch.zeros(2))
    assert torch.equal(x[0, 5:30], state[0, 5:])


def test_critics_weight_the_rewarded_chunk_above_the_unrewarded_one():
    """One state, two chunks: the first solves the task (reward 1, done), the second leads back to it (reward 0)."""
    state = torch.full((2, 30), 0.5)
    chunk = torch.stack([torch.full((4, 3), 0.9), torch.full((4, 3), 0.1)])
    instruction = torch.zeros(2, MAX_WORDS, dtype=torch.long)
    transitions = {"state": state, "instruction": instruction, "chunk": chunk, "reward": torch.tensor([1.0, 0.0]),
                   "next_state": state, "done": torch.tensor([1.0, 0.0])}
    iql, info = fit_critics(transitions, 400, seed=0, generator=torch.Generator().manual_seed(0))
    weights = advantage_weights(iql, state, instruction, chunk)
    assert weights[0] > weights[1] and np.isfinite(info["critic_loss"])


def test_fit_policy_draws_each_pool_in_its_fraction_and_weights_unweighted_rows_by_one():
    policy = ChunkPolicy(PolicyConfig(horizon=4, encoder="objects", object_dim=16, hidden=32))
    pools = [Pool({"state": torch.zeros(50, 30), "instruction": torch.zeros(50, MAX_WORDS, dtype=torch.long)},
                  torch.zeros(50, 4, 3)),
             Pool({"state": torch.ones(20, 30), "instruction": torch.zeros(20, MAX_WORDS, dtype=torch.long)},
                  torch.zeros(20, 4, 3), torch.full((20,), 3.0))]
    seen = []
    original = policy.loss

    def spy(obs, chunk, weights=None):
        seen.append((obs["state"][:, 0].clone(), weights.clone()))
        return original(obs, chunk, weights)

    policy.loss = spy
    fit_policy(policy, pools, steps=3, batch_size=8, lr=1e-3, generator=torch.Generator().manual_seed(0),
               fractions=[0.75, 0.25])
    for first_dims, weights in seen:
        assert (first_dims == 0).sum() == 6 and (first_dims == 1).sum() == 2
        assert torch.equal(weights, torch.where(first_dims == 1, 3.0, 1.0))


def test_rollouts_end_at_the_first_imagined_success():
    solved = torch.tensor([[False, False, True, True], [False, False, False, False], [False, True, False, False]])
    assert solved_steps(solved).tolist() == [2, 3, 1]


def test_counterfactual_prompts_are_unseen_combinations_of_real_first_frames():
    rng = np.random.default_rng(0)
    tasks = [sample_task("train", rng) for _ in range(40)]
    sim = Tabletop(len(tasks), views=False)
    first = sim.reset(tasks, rng)["state"]
    rows, prompts = prompt_tasks("counterfactual", first, tasks, 25, np.random.default_rng(1))
    assert len(rows) == len(prompts) == 25
    assert not label_success(torch.as_tensor(first[rows])[:, None], prompts).any()   # nothing solved already
    for row, task in zip(rows, prompts, strict=True):
        slot = list(RELATIONS).index(task.relation) if task.kind == "push" else list(ZONES).index(task.zone)
        assert task.kind == tasks[row].kind and _unseen(task.colour, slot)
    rows, prompts = prompt_tasks("paraphrase", first, tasks, 10, np.random.default_rng(1))
    assert all(p.kind == tasks[r].kind and p.colour == tasks[r].colour and p.phrasing > 0
               for r, p in zip(rows, prompts, strict=True))


def test_prompting_stops_with_an_error_when_every_draw_is_already_satisfied(monkeypatch):
    from nanorepro.embodied import vlgor

    rng = np.random.default_rng(0)
    tasks = [sample_task("train", rng) for _ in range(4)]
    first = Tabletop(len(tasks), views=False).reset(tasks, rng)["state"]
    monkeypatch.setattr(vlgor, "label_success", lambda states, prompts: torch.ones(len(prompts), 1, dtype=torch.bool))
    with pytest.raises(UserError, match="found 0 of 3 counterfactual prompts"):
        prompt_tasks("counterfactual", first, tasks, 3, np.random.default_rng(0))
    with pytest.raises(UserError, match="edit push or place tasks"):
        prompt_tasks("counterfactual", first, [Task("gather")] * 4, 3, np.random.default_rng(0))


def _hand_made_demos():
    """Two episodes (5 and 3 steps); the task of episode 0 is solved by its fourth action."""
    episode = np.array([0, 0, 0, 0, 0, 1, 1, 1], np.int32)
    state = np.arange(8 * 30, dtype=np.float32).reshape(8, 30)
    action = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    solved = np.array([0, 0, 0, 1, 1, 0, 0, 0], bool)
    instruction = np.arange(2 * MAX_WORDS).reshape(2, MAX_WORDS)
    return {"episode": episode, "state": state, "action": action, "solved": solved, "instruction": instruction}


def test_demo_transitions_are_the_chunks_inside_an_episode_rewarded_where_they_solve_the_task():
    data = _hand_made_demos()
    t = demo_transitions(data, horizon=2)
    starts = [0, 1, 2, 5]   # every start whose end (start + 2) lies in the same episode
    assert torch.equal(t["state"], torch.as_tensor(data["state"][starts]))
    assert torch.equal(t["next_state"], torch.as_tensor(data["state"][[2, 3, 4, 7]]))
    assert torch.equal(t["chunk"][2], torch.as_tensor(data["action"][[2, 3]]))
    assert t["reward"].tolist() == [0, 0, 1, 0] and torch.equal(t["done"], t["reward"])
    assert t["instruction"][:, 0].tolist() == [0, 0, 0, MAX_WORDS]


def test_awr_pools_add_the_imagined_chunks_as_their_share_of_every_batch_only_when_there_are_some():
    real = demo_transitions(_hand_made_demos(), horizon=2)
    obs = {"state": real["state"], "instruction": real["instruction"]}
    gen = torch.Generator().manual_seed(0)
    pools, fractions, info = awr_pools(real, obs, real["chunk"], None, 2, 0, gen)
    assert len(pools) == 1 and fractions is None and "imagined_weight_mean" not in info
    assert pools[0].weights.shape == (4,) and (pools[0].weights > 0).all()
    none = {k: v[:0] for k, v in real.items()}
    assert len(awr_pools(real, obs, real["chunk"], none, 2, 0, gen)[0]) == 1
    imagined = {k: real[k][:3] for k in TRANSITION_KEYS}
    pools, fractions, info = awr_pools(real, obs, real["chunk"], imagined, 2, 0, gen, imagined_fraction=0.25)
    assert len(pools) == 2 and fractions == [0.75, 0.25] and len(pools[1]) == 3
    assert set(pools[1].obs) == {"state", "instruction"} and "imagined_weight_mean" in info
