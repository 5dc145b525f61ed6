import numpy as np
import pytest
import torch

from nanorepro.common.errors import UserError
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


def _scenes(n, seed):
    """Random 3-object place scenes: the state and the instruction naming one object's colour."""
    from nanorepro.envs.tabletop import Tabletop, sample_task

    rng = np.random.default_rng(seed)
    tasks = [sample_task("train", rng) for _ in range(n)]
    tasks = [Task("place", t.colour, zone="top left") for t in tasks]
    obs = Tabletop(n, views=False).reset(tasks, rng)
    return torch.as_tensor(obs["state"]), torch.as_tensor(obs["instruction"]), tasks


def _view_obs(n):
    """Observation tensors (state, both views, instruction) of n random place scenes."""
    from nanorepro.envs.tabletop import Tabletop

    _, _, tasks = _scenes(n, 0)
    return {k: torch.as_tensor(v) for k, v in Tabletop(n).reset(tasks, np.random.default_rng(0)).items()
            if k in ("state", "head", "wrist", "instruction")}


def test_object_encoder_ignores_slot_order_and_absent_objects():
    torch.manual_seed(0)
    policy = ChunkPolicy(PolicyConfig(horizon=4, encoder="objects", object_dim=32, hidden=32))
    state, instruction, _ = _scenes(8, 0)
    obs = {"state": state, "instruction": instruction}
    base = policy.features(obs)
    slots = state[:, 5:].view(8, 5, 5)[:, [3, 0, 4, 2, 1]].reshape(8, 25)
    assert torch.allclose(policy.features({**obs, "state": torch.cat([state[:, :5], slots], 1)}), base, atol=1e-5)
    absent = state.clone()
    empty = (absent[:, 5:].view(8, 5, 5)[..., :2] == 0).all(-1)
    assert empty.any()
    absent[:, 5:].view(8, 5, 5)[..., 2][empty] = 0.75        # an absent slot's colour field is not read
    assert torch.allclose(policy.features({**obs, "state": absent}), base, atol=1e-6)
    with pytest.raises(UserError, match="encoder"):
        ChunkPolicy(PolicyConfig(encoder="pixels"))


def test_object_policy_learns_to_point_at_the_named_object():
    """Waypoints at the object whose colour the instruction names: attention binds words to objects."""
    torch.manual_seed(0)
    state, instruction, tasks = _scenes(512, 1)
    target = torch.stack([state[b, 5:].view(5, 5)[(state[b, 5:].view(5, 5)[:, 2] * 4).round() == t.colour][0, :2]
                          for b, t in enumerate(tasks)])
    chunk = torch.cat([target[:, None].expand(-1, 4, 2), torch.zeros(512, 4, 1)], -1)
    policy = ChunkPolicy(PolicyConfig(horizon=4, encoder="objects", object_dim=32, hidden=64))
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(400):
        idx = torch.randint(384, (64,), generator=gen)
        loss = policy.loss({"state": state[idx], "instruction": instruction[idx]}, chunk[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        waypoints, _, _ = policy({"state": state[384:], "instruction": instruction[384:]})
    error = (waypoints[:, -1] - target[384:]).abs().mean().item()
    chance = (state[384:, None, 5:].view(128, 5, 5)[..., :2] - target[384:, None]).abs().mean().item()
    assert error < 0.2 * chance, (error, chance)


VIEW_POLICIES = {
    "view_tokens": PolicyConfig(horizon=4, encoder="view_tokens", object_dim=32, hidden=32, channels=8),
    "query_views": PolicyConfig(horizon=4, encoder="query_views", hidden=64, channels=8, queries=3),
    "query_tokens": PolicyConfig(horizon=4, encoder="query_tokens", object_dim=32, hidden=32, channels=8),
}


@pytest.mark.parametrize("encoder", sorted(VIEW_POLICIES))
def test_view_policies_read_both_views_and_the_instruction(encoder):
    torch.manual_seed(0)
    policy = ChunkPolicy(VIEW_POLICIES[encoder])
    obs = _view_obs(4)
    waypoints, log_std, grip_logits = policy(obs)
    assert waypoints.shape == log_std.shape == (4, 4, 2) and grip_logits.shape == (4, 4)
    base = policy.features(obs)
    for key in ("head", "wrist", "instruction"):
        changed = {**obs, key: obs[key].roll(1, 0)}   # another scene's view / words
        assert not torch.allclose(policy.features(changed), base), key


def test_view_token_encoder_needs_a_view_size_divisible_by_4():
    with pytest.raises(UserError, match="divisible by 4"):
        ChunkPolicy(PolicyConfig(encoder="view_tokens", view_size=30))


def test_film_scale_multiplies_the_instruction_condition_only():
    from nanorepro.envs.tabletop import Tabletop

    torch.manual_seed(0)
    policy = ChunkPolicy(PolicyConfig(horizon=4, channels=8, hidden=32, film_scale=0.0))
    torch.nn.init.normal_(policy.head.film.weight)            # a FiLM layer that has been trained
    _, _, tasks = _scenes(2, 0)
    head = torch.as_tensor(Tabletop(2).reset(tasks, np.random.default_rng(0))["head"])
    words, other = torch.randn(2, 256), torch.randn(2, 256)
    assert torch.allclose(policy.head(head, words), policy.head(head, other))   # scale 0: words do not reach it
    policy.head.condition_scale = 1.0
    assert not torch.allclose(policy.head(head, words), policy.head(head, other))


def test_expected_coordinates_of_a_peak_is_its_position():
    from nanorepro.embodied.policy import expected_coordinates, spatial_softmax

    attention = torch.zeros(1, 1, 4, 5)
    attention[0, 0, 1, 3] = 1.0                      # row 1 of 4, column 3 of 5
    np.testing.assert_allclose(expected_coordinates(attention)[0, 0], [0.5, -1 / 3], atol=1e-6)
    peaks = torch.zeros(1, 2, 4, 5)
    peaks[0, 0, 1, 3] = peaks[0, 1, 3, 0] = 50.0     # softmax ~ one-hot: keypoints (0.5, -1/3) and (-1, 1)
    np.testing.assert_allclose(spatial_softmax(peaks)[0], [0.5, -1.0, -1 / 3, 1.0], atol=1e-4)  # all x, then all y


def test_query_view_keypoints_lie_in_the_image_and_bad_settings_are_refused():
    torch.manual_seed(0)
    policy = ChunkPolicy(VIEW_POLICIES["query_views"])
    obs = _view_obs(4)
    keypoints = policy.head(obs["head"], (policy.words(obs["instruction"]) + policy.word_pos).flatten(1))[:, :6]
    assert keypoints.abs().max() <= 1.0              # 3 queries' (x, y) inside the image
    with pytest.raises(UserError, match="must exceed"):
        ChunkPolicy(PolicyConfig(encoder="query_views", hidden=16, queries=4))
    with pytest.raises(UserError, match="policy encoder must be one of"):
        ChunkPolicy(PolicyConfig(encoder="film"))


def test_linear_readout_adds_a_linear_map_of_the_features_to_the_head():
    torch.manual_seed(0)
    policy = ChunkPolicy(PolicyConfig(horizon=4, encoder="query_views", hidden=64, channels=8, linear_readout=True))
    features = torch.randn(3, policy.feature_dim)
    torch.testing.assert_close(policy.head_output(features) - policy.out(features), policy.readout(features))
    assert not hasattr(ChunkPolicy(PolicyConfig(horizon=4, hidden=64, channels=8)), "readout")  # off by default


def test_relative_keypoints_are_table_positions_minus_the_gripper():
    policy = ChunkPolicy(PolicyConfig(horizon=4, encoder="query_views", hidden=64, channels=8, queries=2,
                                      relative_keypoints=True))
    head = torch.zeros(1, 32)
    head[0, :4] = torch.tensor([0.0, 0.0, -1.0, 1.0])     # image centre and bottom-left corner
    state = torch.zeros(1, 30)
    state[0, :2] = torch.tensor([0.2, 0.7])
    torch.testing.assert_close(policy.keypoints_from_gripper(head, state), torch.tensor([[0.3, -0.2, -0.2, 0.3]]))
    assert policy.features(_view_obs(2)).shape[1] == policy.feature_dim
    with pytest.raises(UserError, match="needs encoder='query_views'"):
        ChunkPolicy(PolicyConfig(relative_keypoints=True))


def test_query_token_slots_hold_head_keypoints_relative_to_the_gripper():
    torch.manual_seed(0)
    policy = ChunkPolicy(VIEW_POLICIES["query_tokens"])
    obs = _view_obs(4)
    slots, present = policy.query_tokens.scene(obs)
    assert slots.shape == (4, 2 * 4, 32) and present.all()
    moved = obs["state"].clone()
    moved[:, :2] += 0.1                                   # moving the gripper changes the head slots only
    moved_slots, _ = policy.query_tokens.scene({**obs, "state": moved})
    assert not torch.allclose(moved_slots[:, :4], slots[:, :4]) and torch.allclose(moved_slots[:, 4:], slots[:, 4:])
