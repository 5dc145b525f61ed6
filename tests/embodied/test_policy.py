import numpy as np
import torch

from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, bc_quality, chunk_targets, evaluate, train_bc
from nanorepro.envs.tabletop import Task


def test_chunk_targets_stay_inside_their_episode():
    action = np.arange(5, dtype=np.float32)[:, None].repeat(3, 1)
    targets = chunk_targets(action, np.array([0, 0, 0, 1, 1]), horizon=3)
    assert targets[:, :, 0].tolist() == [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [4, 4, 4]]


def test_policy_shapes_and_bc_fits_a_few_demonstrations():
    torch.manual_seed(0)
    tasks = [Task("place", 0, zone="top left"), Task("place", 2, zone="bottom right")]
    data = make_demos(tasks, seed=0)
    policy = ChunkPolicy(PolicyConfig(horizon=4, channels=8, hidden=64))
    before = bc_quality(policy, data)
    curve = train_bc(policy, data, steps=300, batch_size=32, lr=2e-3)
    assert np.mean(curve[-10:]) < np.mean(curve[:10])
    assert bc_quality(policy, data) < 0.8 * before   # before: ~ the stay-still error (offsets start at 0)
    waypoints, log_std, grip_logits = policy({k: torch.as_tensor(v[:3]) for k, v in
                            {**data, "instruction": data["instruction"][data["episode"]]}.items()
                            if k in ("state", "head", "wrist", "instruction")})
    assert waypoints.shape == log_std.shape == (3, 4, 2) and grip_logits.shape == (3, 4)
    solved = evaluate(policy, tasks, seed=0, max_steps=16)
    assert solved.shape == (2,) and solved.dtype == bool
