import numpy as np
import pytest

from nanorepro.common.errors import UserError
from nanorepro.envs.tabletop import (
    COLOURS,
    MAX_WORDS,
    PAD,
    RELATIONS,
    RGB,
    SPLITS,
    TEMPLATES,
    UNK,
    VOCAB,
    ZONES,
    Tabletop,
    TabletopConfig,
    TabletopEnv,
    Task,
    _unseen,
    parse_instruction,
    sample_task,
    tokenize,
)


def scene(tasks, objects, colours, shapes=None, gripper=(0.5, 0.5), config=TabletopConfig()):
    """A hand-made scene: one task, objects at given positions."""
    sim = Tabletop(1, config)
    sim.reset(tasks, np.random.default_rng(0))
    n = len(objects)
    sim.objects[0] = 0.0
    sim.objects[0, :n] = objects
    sim.colour[0] = -1
    sim.colour[0, :n] = colours
    sim.shape[0] = 0
    sim.shape[0, :n] = shapes if shapes is not None else 0
    sim.active[0] = np.arange(5) < n
    sim.gripper[0] = gripper
    sim.velocity[0] = 0.0
    return sim


def hold(sim, waypoint, steps):
    for _ in range(steps):
        sim.step(np.array([waypoint], dtype=float))


def test_controller_respects_the_speed_limit_converges_and_overshoots_large_jumps():
    sim = scene([Task("gather")], [(0.9, 0.9)], [0], gripper=(0.1, 0.5))
    xs = []
    for _ in range(30):
        before = sim.gripper[0].copy()
        sim.step(np.array([[0.8, 0.5, 0.0]]))
        step = np.linalg.norm(sim.gripper[0] - before)
        assert step <= sim.cfg.max_speed * sim.cfg.control_dt + 1e-9
        xs.append(sim.gripper[0, 0])
    assert max(xs) > 0.8 + 0.005          # an under-damped tracker overshoots a far waypoint
    assert abs(xs[-1] - 0.8) < 0.01       # and settles on it


def test_skipping_waypoints_speeds_motion_up():
    def steps_to_arrive(stride):
        sim = scene([Task("gather")], [(0.9, 0.9)], [0], gripper=(0.1, 0.5))
        path = np.arange(0.1, 0.7 + 1e-9, 0.01)
        for t in range(200):
            x = path[min((t + 1) * stride, len(path) - 1)]
            sim.step(np.array([[x, 0.5, 0.0]]))
            if abs(sim.gripper[0, 0] - 0.7) < 0.02:
                return t + 1
        return 200

    assert steps_to_arrive(4) < 0.5 * steps_to_arrive(1)


def test_grasp_carry_release():
    sim = scene([Task("place", 0, zone="top left")], [(0.5, 0.5), (0.8, 0.8)], [0, 1], shapes=[1, 0],
                gripper=(0.52, 0.5))
    sim.step(np.array([[0.52, 0.5, 1.0]]))
    assert sim.held[0] == 0
    hold(sim, (0.15, 0.15, 1.0), 30)
    np.testing.assert_allclose(sim.objects[0, 0], sim.gripper[0])
    assert not sim.success()[0]            # still held
    sim.step(np.array([[0.15, 0.15, 0.0]]))
    assert sim.held[0] == -1 and sim.success()[0]
    hold(sim, (0.5, 0.5, 0.0), 20)
    assert np.linalg.norm(sim.objects[0, 0] - (0.15, 0.15)) < 0.02  # released objects stay


def test_an_open_gripper_passes_over_objects():
    sim = scene([Task("gather")], [(0.5, 0.5), (0.2, 0.2), (0.2, 0.8)], [0, 1, 2], gripper=(0.3, 0.5))
    hold(sim, (0.7, 0.5, 0.0), 30)
    np.testing.assert_allclose(sim.objects[0, 0], (0.5, 0.5))


def test_closing_out_of_reach_grasps_nothing():
    sim = scene([Task("gather")], [(0.8, 0.8), (0.2, 0.2), (0.2, 0.8)], [0, 1, 2], gripper=(0.5, 0.5))
    sim.step(np.array([[0.5, 0.5, 1.0]]))
    assert sim.held[0] == -1


def test_pushing_moves_balls_and_objects_never_overlap_or_leave_the_table():
    sim = scene([Task("gather")], [(0.5, 0.5), (0.62, 0.5), (0.95, 0.5)], [0, 1, 2], gripper=(0.3, 0.5))
    hold(sim, (0.9, 0.5, 1.0), 40)         # closed out of reach: grasps nothing, pushes
    r = sim.cfg.object_radius
    pos = sim.objects[0, :3]
    assert pos[0, 0] > 0.6                 # pushed along
    gaps = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(3)
    assert gaps.min() >= 2 * r - 0.02
    assert (pos >= r - 1e-9).all() and (pos <= 1 - r + 1e-9).all()


@pytest.mark.parametrize("relation", list(RELATIONS))
def test_push_success_by_relation(relation):
    u = np.array(RELATIONS[relation])
    other = np.array([0.5, 0.5])
    task = Task("push", 0, 1, relation=relation)
    assert scene([task], [other + 0.2 * u, other], [0, 1]).success()[0]
    assert not scene([task], [other - 0.2 * u, other], [0, 1]).success()[0]
    assert not scene([task], [other + 0.05 * u, other], [0, 1]).success()[0]


def test_place_gather_and_line_up_predicates():
    for zone, (x0, y0) in ZONES.items():
        inside = (x0 + 0.15, y0 + 0.15)
        task = Task("place", 2, zone=zone)
        assert scene([task], [inside, (0.5, 0.5)], [2, 0], shapes=[1, 0]).success()[0]
        assert not scene([task], [(0.5, 0.5), inside], [2, 0], shapes=[1, 0]).success()[0]
    assert scene([Task("gather")], [(0.5, 0.5), (0.6, 0.5), (0.55, 0.6)], [0, 1, 2]).success()[0]
    assert not scene([Task("gather")], [(0.2, 0.5), (0.6, 0.5), (0.55, 0.6)], [0, 1, 2]).success()[0]
    assert scene([Task("line_up")], [(0.2, 0.5), (0.5, 0.52), (0.8, 0.49)], [0, 1, 2]).success()[0]
    assert not scene([Task("line_up")], [(0.2, 0.3), (0.5, 0.52), (0.8, 0.49)], [0, 1, 2]).success()[0]


def test_rendering_is_deterministic_and_draws_objects_in_their_colour():
    sim = scene([Task("gather")], [(0.25, 0.25), (0.75, 0.75)], [1, 3], gripper=(0.5, 0.9))
    head = sim.render()
    np.testing.assert_array_equal(head, sim.render())
    P = sim.cfg.view_size
    np.testing.assert_array_equal(head[0, P // 4, P // 4], RGB[1])            # row = y, column = x
    np.testing.assert_array_equal(head[0, 3 * P // 4, 3 * P // 4], RGB[3])
    wrist = sim.observe()["wrist"][0]
    assert (wrist[-1] == 0).all()          # the window reaches past the table's bottom edge: black rows


def test_resets_lay_out_unsolved_scenes_with_the_named_objects():
    rng = np.random.default_rng(3)
    sim = Tabletop(40)
    tasks = [sample_task(split, rng) for split in ("train", "unseen", "paraphrase", "novel") for _ in range(10)]
    sim.reset(tasks, rng)
    assert not sim.success().any()
    for b, task in enumerate(tasks):
        present = set(sim.colour[b][sim.active[b]].tolist())
        assert {c for c in (task.colour, task.other) if c >= 0} <= present
        if task.kind == "place":
            assert sim.shape[b][sim.colour[b] == task.colour][0] == 1


def test_splits_and_instructions():
    rng = np.random.default_rng(0)
    for split in ("train", "unseen", "paraphrase"):
        for _ in range(200):
            task = sample_task(split, rng)
            slot = list(RELATIONS).index(task.relation) if task.kind == "push" else list(ZONES).index(task.zone)
            assert _unseen(task.colour, slot) == (split == "unseen")
            assert (task.phrasing > 0) == (split == "paraphrase")
            assert task.text.split()[1 if task.phrasing == 0 else 0] in {w for t in TEMPLATES.values()
                                                                       for p in t for w in p.split()}
    assert {sample_task("novel", rng).kind for _ in range(50)} == {"gather", "line_up"}
    assert sum(_unseen(c, s) for c in range(len(COLOURS)) for s in range(4)) == 5
    with pytest.raises(UserError, match="unknown tabletop split"):
        sample_task("test", rng)


def test_tokenizer():
    ids = tokenize("push the red ball left of the blue ball")
    assert ids.shape == (MAX_WORDS,) and ids[9:].tolist() == [PAD] * (MAX_WORDS - 9)
    assert ids[0] == VOCAB["push"] and tokenize("push the teal ball")[2] == UNK
    with pytest.raises(UserError, match=f"at most {MAX_WORDS}"):
        tokenize(" ".join(["ball"] * (MAX_WORDS + 1)))


def test_every_instruction_of_every_split_fits_and_has_no_unknown_word():
    rng = np.random.default_rng(0)
    for split in ("train", "unseen", "paraphrase", "novel"):
        for _ in range(300):
            ids = tokenize(sample_task(split, rng).text)
            assert UNK not in ids.tolist()


def test_bad_config_and_actions():
    with pytest.raises(UserError, match="view_size"):
        Tabletop(2, TabletopConfig(view_size=4))
    with pytest.raises(UserError, match="kp must be positive"):
        Tabletop(2, TabletopConfig(kp=0))
    sim = Tabletop(2)
    with pytest.raises(ValueError, match="shape"):
        sim.step(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        sim.step(np.full((2, 3), np.nan))


def test_gymnasium_env_checker_and_episode():
    from gymnasium.utils.env_checker import check_env

    env = TabletopEnv("train")
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["instruction"]
    for _ in range(env.sim.cfg.max_steps):
        obs, reward, terminated, truncated, _ = env.step(np.array([0.5, 0.5, 0.0], np.float32))
        if terminated or truncated:
            break
    assert terminated or truncated


def test_vectorised_success_equals_the_per_scene_predicates():
    rng = np.random.default_rng(3)
    tasks = [sample_task(split, rng) for split in ("train", "unseen", "paraphrase", "novel") for _ in range(100)]
    sim = Tabletop(len(tasks))
    sim.reset(tasks, rng)
    solved_kinds = set()
    for _ in range(30):
        # random, often clustered poses so that every kind is sometimes solved
        centre = rng.uniform(0.2, 0.8, (len(tasks), 1, 2))
        sim.objects = np.where(sim.active[..., None], centre + rng.normal(0, 0.08, sim.objects.shape), 0.0)
        sim.held = np.where(rng.random(len(tasks)) < 0.1, 0, -1)
        expected = np.array([sim._solved(b) for b in range(sim.B)])
        assert np.array_equal(sim.success(), expected)
        solved_kinds |= {tasks[b].kind for b in np.flatnonzero(expected)}
    assert solved_kinds == {"push", "place", "gather", "line_up"}


def test_load_state_restores_scenes_exactly_and_continues_identically():
    rng = np.random.default_rng(3)
    tasks = [sample_task("train", rng) for _ in range(6)]
    sim = Tabletop(6)
    sim.reset(tasks, rng)
    for t in range(25):   # move, grasp some objects on the way
        sim.step(np.concatenate([rng.uniform(0, 1, (6, 2)), np.full((6, 1), float(t > 10))], 1))
    saved, views = sim.state(), sim.observe()
    copy = Tabletop(6)
    obs = copy.load_state(saved, tasks)
    np.testing.assert_array_equal(obs["state"], saved)
    np.testing.assert_array_equal(obs["head"], views["head"])
    np.testing.assert_array_equal(copy.held, sim.held)
    np.testing.assert_array_equal(copy.success(), sim.success())
    action = np.concatenate([rng.uniform(0, 1, (6, 2)), np.zeros((6, 1))], 1)
    np.testing.assert_allclose(copy.step(action)[0]["state"], sim.step(action)[0]["state"], atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        copy.load_state(saved[:, :10], tasks)


def test_parse_instruction_inverts_tokenize_for_every_task_and_names_a_foreign_one():
    rng = np.random.default_rng(0)
    for split in SPLITS:
        for _ in range(60):
            task = sample_task(split, rng)
            assert parse_instruction(tokenize(task.text)) == task
    with pytest.raises(UserError, match="'push the red ball' is not one of"):
        parse_instruction(tokenize("push the red ball"))
    with pytest.raises(UserError, match="'push the <unk> ball' is not one of"):
        parse_instruction(tokenize("push the teal ball"))
