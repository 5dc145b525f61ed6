"""Offline RL for the chunked policy: IQL critics over chunks, advantage weights, mixed-pool regression."""

import numpy as np
import torch

from nanorepro.embodied.offline_rl import advantage_weights, critic_inputs, fit_critics
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, Pool, fit_policy
from nanorepro.embodied.vlgor import label_success
from nanorepro.embodied.vlgor_experiment import _prompts, _solved_steps
from nanorepro.envs.tabletop import MAX_WORDS, RELATIONS, ZONES, Tabletop, _unseen, sample_task


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
    assert _solved_steps(solved).tolist() == [2, 3, 1]


def test_counterfactual_prompts_are_unseen_combinations_of_real_first_frames():
    rng = np.random.default_rng(0)
    tasks = [sample_task("train", rng) for _ in range(40)]
    sim = Tabletop(len(tasks), views=False)
    first = sim.reset(tasks, rng)["state"]
    rows, prompts = _prompts("counterfactual", first, tasks, 25, np.random.default_rng(1))
    assert len(rows) == len(prompts) == 25
    assert not label_success(torch.as_tensor(first[rows])[:, None], prompts).any()   # nothing solved already
    for row, task in zip(rows, prompts, strict=True):
        slot = list(RELATIONS).index(task.relation) if task.kind == "push" else list(ZONES).index(task.zone)
        assert task.kind == tasks[row].kind and _unseen(task.colour, slot)
    rows, prompts = _prompts("paraphrase", first, tasks, 10, np.random.default_rng(1))
    assert all(p.kind == tasks[r].kind and p.colour == tasks[r].colour and p.phrasing > 0
               for r, p in zip(rows, prompts, strict=True))
