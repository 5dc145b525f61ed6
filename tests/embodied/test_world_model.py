import numpy as np
import pytest
import torch

from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.world_model import StateWorldModel, WorldModelConfig, auroc, chunk_transitions
from nanorepro.envs.tabletop import MAX_WORDS, Task, sample_task
from nanorepro.rl.ensemble import EnsembleConfig


def test_auroc_by_hand():
    assert auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    assert auroc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        auroc([0.1], [1])


def test_chunk_transitions_stay_inside_episodes():
    data = {"state": np.arange(7, dtype=np.float32)[:, None], "action": np.arange(7, dtype=np.float32)[:, None]
            .repeat(3, 1), "episode": np.array([0, 0, 0, 0, 1, 1, 1]),
            "instruction": np.zeros((2, MAX_WORDS), np.int64), "solved": np.array([0, 0, 1, 1, 0, 0, 1], bool)}
    t = chunk_transitions(data, horizon=2)
    assert t["state"][:, 0].tolist() == [0, 1, 4]
    assert t["delta"][:, 0].tolist() == [2, 2, 2]
    assert t["chunk"][2, :, 0].tolist() == [4, 5]
    assert t["solved"].tolist() == [0, 1, 0]   # solved after the chunk's last action


def test_world_model_beats_no_change_and_ranks_success():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tasks = [sample_task("train", rng) for _ in range(24)] + [Task("place", 1, zone="top left")]
    data = make_demos(tasks, seed=0)
    transitions = chunk_transitions(data, horizon=4)
    cfg = WorldModelConfig(EnsembleConfig(members=3, elites=2, hidden=64, layers=2, max_steps=600, eval_every=100,
                                            patience=50))
    model = StateWorldModel(30, 4, cfg)
    model.fit(transitions, transitions, seed=0)
    nxt, logit, uncertainty = model.predict(transitions["state"], transitions["instruction"], transitions["chunk"])
    truth = transitions["state"] + transitions["delta"]
    assert nxt.shape == truth.shape and logit.shape == uncertainty.shape == (len(truth),)
    assert float(((nxt - truth) ** 2).mean()) < 0.5 * float((transitions["delta"] ** 2).mean())
    assert auroc(logit.numpy(), transitions["solved"].numpy() > 0.5) > 0.8
    assert (uncertainty >= 0).all()
