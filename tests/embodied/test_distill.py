"""DAgger from a privileged teacher: labels, the growing pool, resume at a round boundary, the command."""

import numpy as np
import pytest
import torch

from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.common.progress import ProgressBoard
from nanorepro.embodied import distill, tools
from nanorepro.embodied.demos import load_demos
from nanorepro.embodied.distill import DAggerConfig, dagger, teacher_labels
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig

TINY = DAggerConfig(bc_steps=2, rounds=2, round_steps=2, round_tasks=2, batch=8, max_steps=16)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "demos.npz"
    tools.make_demo_file(path, episodes=3, split="train", seed=0, horizon=4, view_size=16)
    return path


def policies(seed=0):
    torch.manual_seed(seed)
    teacher = ChunkPolicy(PolicyConfig(horizon=4, view_size=16, encoder="objects", object_dim=16))
    student = ChunkPolicy(PolicyConfig(horizon=4, view_size=16, channels=8))
    return teacher.eval(), student


def test_teacher_labels_are_its_mean_chunk_with_binary_grips(demos):
    teacher, _ = policies()
    data = load_demos(demos)
    visits = {"state": data["state"][:5], "instruction": data["instruction"][data["episode"][:5]]}
    label = teacher_labels(teacher, visits)
    raw = teacher.act(visits)
    assert label.shape == (5, 4, 3)
    np.testing.assert_allclose(label[..., :2], raw[..., :2])
    assert set(np.unique(label[..., 2])) <= {0.0, 1.0}
    np.testing.assert_array_equal(label[..., 2], raw[..., 2] > 0.5)


def test_the_pool_grows_every_round_and_resume_gives_the_same_student(demos, tmp_path):
    data = load_demos(demos)
    teacher, whole = policies()
    history = dagger(whole, teacher, data, TINY, seed=3)
    assert [row["round"] for row in history] == [1, 2]
    assert 0 < history[0]["visits"] < history[1]["visits"]   # visits accumulate (DAgger's aggregate dataset)

    class Killed(Exception):
        pass

    state, ckpt = {}, tmp_path / "dagger.ckpt.safetensors"

    def save_then_die():
        save_checkpoint(ckpt, state)
        raise Killed

    with pytest.raises(Killed):
        dagger(policies()[1], teacher, data, TINY, seed=3, state=state, save=save_then_die)
    saved = load_checkpoint(ckpt)
    assert saved["round"] == 1 and len(saved["visits"]["chunk"]) == history[0]["visits"]
    resumed = policies()[1]
    assert dagger(resumed, teacher, data, TINY, seed=3, state=saved) == history
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_teacher_must_read_the_state(demos):
    _, student = policies()
    with pytest.raises(ValueError, match="teacher must read the object poses"):
        dagger(student, ChunkPolicy(PolicyConfig(horizon=4, view_size=16, channels=8)), load_demos(demos), TINY, 0)


def test_distill_from_the_shell(cli, demos, tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    code, _, err = cli("embodied", "train-policy", "--demos", demos, "--out", teacher, "--steps", 2, "--batch", 8,
                       "--encoder", "objects", "--set", "object_dim=16")
    assert code == 0, err
    student = tmp_path / "student.safetensors"
    code, out, err = cli("embodied", "distill", "--teacher", teacher, "--demos", demos, "--out", student,
                         "--rounds", 1, "--round-steps", 2, "--round-tasks", 2, "--bc-steps", 2,
                         "--set", "channels=8")
    assert code == 0, err
    assert "success on 100 fresh training tasks" in out and "round 1: the student solved" in out + err
    policy = tools.load_policy(student)
    assert policy.cfg.encoder == "query_views" and policy.cfg.linear_readout
    assert not (tmp_path / "student.safetensors.ckpt.safetensors").exists()
    code, _, err = cli("embodied", "distill", "--teacher", student, "--demos", demos, "--out", tmp_path / "x")
    assert code == 2 and "the teacher must read the object poses" in err


def test_a_killed_distill_resumes_from_per_round_visit_shards(demos, tmp_path, monkeypatch):
    """Each round's new visits are written once, to their own shard; the resumed student is the uninterrupted one."""
    teacher_path = tmp_path / "teacher.safetensors"
    board = ProgressBoard(enabled=False)
    tools.train_policy(demos, teacher_path, PolicyConfig(encoder="objects", object_dim=16),
                       tools.BCConfig(steps=2, batch=8), 0, board)
    student_cfg = PolicyConfig(encoder="query_views", channels=8)
    cfg = DAggerConfig(bc_steps=2, rounds=2, round_steps=2, round_tasks=2, batch=8, max_steps=16)
    whole = tools.distill(teacher_path, demos, tmp_path / "whole.safetensors", student_cfg, cfg, 1, board)

    real_save, real_rollout = tools._save_dagger_checkpoint, distill.rollout

    def save_then_die(ckpt, state):
        real_save(ckpt, state)
        raise KeyboardInterrupt

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(tools, "_save_dagger_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        tools.distill(teacher_path, demos, out, student_cfg, cfg, 1, board)
    ckpt = tmp_path / "resumed.safetensors.ckpt.safetensors"
    assert "visits" not in load_checkpoint(ckpt)
    shard = load_checkpoint(tmp_path / "resumed.safetensors.ckpt.safetensors.visits-1.safetensors")
    assert len(shard["chunk"]) == whole["history"][0]["visits"]
    monkeypatch.setattr(tools, "_save_dagger_checkpoint", real_save)
    rounds_run = []
    monkeypatch.setattr(distill, "rollout", lambda *a, **k: rounds_run.append(1) or real_rollout(*a, **k))
    resumed = tools.distill(teacher_path, demos, out, student_cfg, cfg, 1, board)
    assert len(rounds_run) == 1   # only round 2 ran again
    assert resumed["history"] == whole["history"] and resumed["final_success"] == whole["final_success"]
    for a, b in zip(tools.load_policy(tmp_path / "whole.safetensors").state_dict().values(),
                    tools.load_policy(out).state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir() if "ckpt" in p.name) == []
