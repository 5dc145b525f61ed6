import numpy as np
import pytest
import torch

from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.vlgor import (
    DELTA_RANGE,
    DYNAMIC,
    GeneratorConfig,
    RolloutGenerator,
    counterfactual_task,
    disagreement,
    from_bins,
    from_delta_bins,
    full_states,
    label_success,
    paraphrase_task,
    replay,
    rollout_arrays,
    to_bins,
    to_delta_bins,
)
from nanorepro.envs.tabletop import RELATIONS, ZONES, Tabletop, Task, _unseen, sample_task

SMALL = GeneratorConfig(horizon=4, chunks=3, bins=16, d_model=32, layers=1, heads=2, steps=2, batch_size=4)


@pytest.fixture(scope="module")
def demos():
    rng = np.random.default_rng(0)
    return make_demos([sample_task("train", rng) for _ in range(6)], seed=0, horizon=4)


def test_rollout_arrays_sample_every_chunk_and_hold_the_end(demos):
    data = rollout_arrays(demos, horizon=4, chunks=30)
    first = np.searchsorted(demos["episode"], 0, side="right")   # episode 0 has this many steps
    assert data["states"].shape == (6, 31, 13) and data["chunks"].shape == (6, 30, 4, 3)
    np.testing.assert_array_equal(data["states"][0, 1], demos["state"][4][DYNAMIC])
    np.testing.assert_array_equal(data["chunks"][0, 0], demos["action"][:4])
    assert data["length"][0] == min(-(-first // 4), 30)
    np.testing.assert_array_equal(data["states"][0, -1], demos["state"][first - 1][DYNAMIC])  # held after the end
    np.testing.assert_array_equal(data["first_state"][0], demos["state"][0])


def test_bins_round_trip_within_half_a_bin():
    x = torch.rand(1000)
    assert (from_bins(to_bins(x, 64), 64) - x).abs().max() <= 0.5 / 64 + 1e-6
    assert to_bins(torch.tensor([-0.1, 1.0, 1.5]), 64).tolist() == [0, 63, 63]


def test_counterfactual_edits_never_reproduce_a_training_combination_and_name_objects_in_the_scene():
    rng = np.random.default_rng(1)
    sim = Tabletop(1, views=False)
    seen = 0
    for _ in range(200):
        task = sample_task("train", rng)
        state = sim.reset([task], rng)["state"][0]
        edited = counterfactual_task(state, task, rng)
        if edited is None:
            continue
        seen += 1
        slot = list(RELATIONS).index(edited.relation) if edited.kind == "push" else list(ZONES).index(edited.zone)
        assert edited.kind == task.kind and _unseen(edited.colour, slot)
        colours = set(sim.colour[0][sim.active[0]].tolist())
        assert edited.colour in colours and (edited.other in colours or edited.kind == "place")
        if edited.kind == "place":   # the named object is a block in this scene
            assert sim.shape[0][list(sim.colour[0]).index(edited.colour)] == 1
    assert seen > 100
    assert counterfactual_task(state, Task("gather"), rng) is None
    para = paraphrase_task(task, rng)
    assert para.phrasing in (1, 2) and (para.kind, para.colour, para.zone, para.relation) == (
        task.kind, task.colour, task.zone, task.relation)


def test_full_states_and_labels_agree_with_the_suite_on_real_states():
    rng = np.random.default_rng(2)
    tasks = [sample_task("train", rng) for _ in range(8)]
    data = make_demos(tasks, seed=2, horizon=4)
    ends = np.searchsorted(data["episode"], np.arange(8), side="right") - 1
    starts = np.searchsorted(data["episode"], np.arange(8))
    # dynamic dims of the state before each episode's last step -> full states -> the real labels
    real = torch.as_tensor(data["state"][ends])
    rebuilt = full_states(real[:, None, DYNAMIC], torch.as_tensor(data["state"][starts]))[:, 0]
    assert torch.allclose(rebuilt[:, DYNAMIC], real[:, DYNAMIC])
    sim = Tabletop(8, views=False)
    sim.load_state(data["state"][ends], tasks)
    assert label_success(rebuilt[:, None], tasks)[:, 0].tolist() == sim.success().tolist()
    # a closed gripper on an object holds it (and a held object is never a success)
    closed = rebuilt[:1, None].clone()
    closed[..., 2] = 1.0
    closed[..., 5:7] = closed[..., :2]
    assert full_states(closed[..., DYNAMIC], rebuilt[:1])[0, 0, 9] == 1.0


def test_generator_losses_fall_and_sampling_is_deterministic_under_a_seed(demos):
    torch.manual_seed(0)
    data = rollout_arrays(demos, horizon=4, chunks=3)
    gen = RolloutGenerator(SMALL)
    batch = {k: torch.as_tensor(data[k]) for k in ("head", "wrist", "instruction", "states", "chunks")}
    losses = gen.losses(batch, torch.Generator().manual_seed(0))
    assert set(losses) == {"rollout", "caption", "dynamics", "loss"}
    assert losses["rollout"].item() == pytest.approx(np.log(16), rel=0.3)
    curve = RolloutGenerator(GeneratorConfig(**{**SMALL.__dict__, "steps": 150, "lr": 3e-3})).fit(data)
    assert np.mean(curve[-10:]) < 0.7 * np.mean(curve[:5])
    args = (batch["head"], batch["wrist"], batch["instruction"])
    a = gen.sample(*args, generator=torch.Generator().manual_seed(5))
    b = gen.sample(*args, generator=torch.Generator().manual_seed(5))
    c = gen.sample(*args, generator=torch.Generator().manual_seed(6))
    assert a.shape == (6, gen.length) and torch.equal(a, b) and not torch.equal(a, c)
    states, chunks = gen.decode(a)
    assert states.shape == (6, 4, 13) and chunks.shape == (6, 3, 4, 3)
    assert torch.equal(gen.encode(*gen.decode(gen.encode(batch["states"], batch["chunks"]))),
                       gen.encode(batch["states"], batch["chunks"]))
    blind = RolloutGenerator(GeneratorConfig(**{**SMALL.__dict__, "see_image": False}))
    other = {**batch, "head": torch.zeros_like(batch["head"])}
    assert torch.equal(blind.losses(batch, torch.Generator().manual_seed(0))["rollout"],
                       blind.losses(other, torch.Generator().manual_seed(0))["rollout"])


def test_a_state_prompted_generator_opens_with_the_given_first_state_and_is_not_scored_on_it(demos):
    data = rollout_arrays(demos, horizon=4, chunks=3)
    batch = {k: torch.as_tensor(data[k]) for k in ("head", "wrist", "instruction", "states", "chunks")}
    torch.manual_seed(0)
    gen = RolloutGenerator(GeneratorConfig(**{**SMALL.__dict__, "state_prompt": True}))
    first = batch["states"][:, 0]
    tokens = gen.sample(batch["head"], batch["wrist"], batch["instruction"], torch.Generator().manual_seed(0),
                        first_state=first)
    assert tokens.shape == (6, gen.length) and torch.equal(tokens[:, :13], to_bins(first, 16))
    with pytest.raises(ValueError, match="needs the first state"):
        gen.sample(batch["head"], batch["wrist"], batch["instruction"])
    # s_0 is context: the rollout loss is the cross-entropy of every token after it, written out by hand.
    out = gen.losses(batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ids = gen.encode(batch["states"], batch["chunks"])
        x = torch.cat([gen._words(batch["instruction"]), gen._prompt(batch["head"], batch["wrist"]),
                       gen._rollout(ids)[:, :-1]], 1)
        logits = gen.bin_head(gen._run(x))[:, 16 + 2 * gen.patches - 1 + 13:]
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 13:].flatten())
    assert out["rollout"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_disagreement_filter_and_replay_of_real_chunks(demos):
    data = rollout_arrays(demos, horizon=4, chunks=3)

    class Fake:
        """A world model that predicts the imagined next state exactly, disagreeing by the chunk index."""

        def __init__(self, full):
            self.full = full

        def predict(self, state, instruction, chunk):
            B, K = self.full.shape[0], self.full.shape[1] - 1
            return self.full[:, 1:].reshape(B * K, -1), torch.zeros(B * K), torch.arange(K).float().repeat(B)

    full = full_states(torch.as_tensor(data["states"]), torch.as_tensor(data["first_state"]))
    worst, error = disagreement(Fake(full), full, torch.as_tensor(data["instruction"]),
                                torch.as_tensor(data["chunks"]), torch.tensor([1, 2, 3, 3, 3, 3]))
    assert worst.tolist() == [0.0, 1.0, 2.0, 2.0, 2.0, 2.0] and error.abs().max() == 0
    # replaying the demonstrated chunks from the real first state reproduces the demonstrated states
    rng = np.random.default_rng(0)   # the demonstrations' tasks (the fixture's)
    tasks = [sample_task("train", rng) for _ in range(6)]
    out = replay(data["first_state"], tasks, data["chunks"])
    assert np.abs(out["states"][:, 0] - data["states"][:, 1]).max() < 1e-4


def test_end_waypoint_chunks_interpolate_from_the_gripper_and_waypoint_chunks_keep_every_waypoint():
    states = torch.full((1, 4, 13), 0.5)
    states[0, 1, :2] = torch.tensor([0.2, 0.8])
    chunks = torch.zeros(1, 3, 4, 3)
    chunks[0, 1, :, :2] = torch.tensor([0.3, 0.6])           # chunk 1 ends at (0.3, 0.6), grip closed
    chunks[0, 1, :, 2] = 1.0
    end = RolloutGenerator(SMALL)
    s, c = end.decode(end.encode(states, chunks))
    start, stop = s[0, 1, :2], c[0, 1, -1, :2]
    expected = torch.stack([start + (h + 1) / 4 * (stop - start) for h in range(4)])
    assert torch.allclose(c[0, 1, :, :2], expected) and c[0, 1, :, 2].tolist() == [1.0] * 4
    assert (stop - torch.tensor([0.3, 0.6])).abs().max() <= 0.5 * 2 * DELTA_RANGE / (16 - 2) + 1e-6
    full = RolloutGenerator(GeneratorConfig(**{**SMALL.__dict__, "chunk_tokens": "waypoints", "values": "absolute"}))
    assert full.length == end.length + 3 * 9
    chunks[0, 1, 0, :2] = torch.tensor([0.9, 0.1])
    assert (full.decode(full.encode(states, chunks))[1][0, 1, 0, :2] - torch.tensor([0.9, 0.1])).abs().max() < 0.04
    with pytest.raises(ValueError, match="chunk_tokens"):
        RolloutGenerator(GeneratorConfig(chunk_tokens="keypoints"))
    with pytest.raises(ValueError, match="delta"):
        RolloutGenerator(GeneratorConfig(chunk_tokens="waypoints"))


def test_delta_tokens_have_an_exact_zero_and_their_rounding_never_accumulates():
    gen = RolloutGenerator(GeneratorConfig(chunks=10, d_model=16, layers=1))
    step = 2 * DELTA_RANGE / (64 - 2)
    assert from_delta_bins(to_delta_bins(torch.zeros(3), 64), 64).abs().max() == 0
    walk = torch.rand(4, 1, 13).mul(0.6).add(0.2) + torch.randn(4, 11, 13).mul(0.03).cumsum(1)
    walk = walk.clamp(0, 1)
    walk[..., 2] = (torch.rand(4, 11) > 0.5).float()
    walk[:, :, 7:] = walk[:, :1, 7:]                                  # these objects never move
    chunks = torch.rand(4, 10, 8, 3)
    chunks[..., :2] = (walk[:, :10, None, :2] + 0.2 * (chunks[..., :2] - 0.5)).clamp(0, 1)  # within reach
    chunks[..., 2] = (chunks[..., 2] > 0.5).float()
    ids = gen.encode(walk, chunks)
    states, decoded = gen.decode(ids)
    assert (states[:, 1:, [0, 1, 3, 4, 5, 6]] - walk[:, 1:, [0, 1, 3, 4, 5, 6]]).abs().max() <= step / 2 + 1e-5
    assert torch.equal(states[..., 2], walk[..., 2]) and torch.equal(decoded[:, :, -1, 2], chunks[:, :, -1, 2])
    assert (decoded[:, :, -1, :2] - chunks[:, :, -1, :2]).abs().max() <= step / 2 + 1e-5
    moves = ids[:, 13:].view(4, 10, 16)[:, :, 3 + 7:]                # state changes of the static objects
    assert (moves == 64 // 2 - 1).all()
