import numpy as np
import pytest
import torch

from nanorepro.common.errors import UserError
from nanorepro.embodied.world_model import StateWorldModel, WorldModelConfig, chunk_transitions
from nanorepro.rl.ensemble import EnsembleConfig

pytest.importorskip("metaworld", reason="metaworld is optional (pip install metaworld)")
from nanorepro.envs.metaworld import make_metaworld_demos  # noqa: E402


def test_scripted_demonstrations_feed_the_state_world_model():
    data = make_metaworld_demos("reach-v3", episodes=2, max_steps=40, seed=0)
    n = len(data["state"])
    assert data["state"].shape == (n, 39) and data["action"].shape == (n, 4)
    assert data["episode"].tolist() == sorted(data["episode"].tolist()) and set(data["episode"]) == {0, 1}
    assert np.abs(data["action"]).max() <= 1.0
    transitions = chunk_transitions(data, horizon=4)
    assert transitions["chunk"].shape[1:] == (4, 4)
    torch.manual_seed(0)
    cfg = WorldModelConfig(ensemble=EnsembleConfig(members=2, elites=2, hidden=32, layers=2, max_steps=20,
                                                   eval_every=10))
    model = StateWorldModel(39, 4, cfg, action_dim=4)
    model.fit(transitions, transitions, seed=0)
    state, logit, uncertainty = model.predict(transitions["state"][:5], transitions["instruction"][:5],
                                              transitions["chunk"][:5])
    assert state.shape == (5, 39) and logit.shape == uncertainty.shape == (5,)


def test_unknown_task_is_a_clear_error():
    with pytest.raises(UserError, match="Meta-World"):
        make_metaworld_demos("no-such-task-v3", episodes=1, max_steps=2)
