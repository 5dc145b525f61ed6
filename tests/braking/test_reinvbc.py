import numpy as np
import torch

from nanorepro.braking import data as logs
from nanorepro.braking.controllers import ABSParams, NoisyABS
from nanorepro.braking.model import Pessimism, StopModel, StopModelConfig
from nanorepro.braking.reinvbc import (
    LoggedCommands,
    PolicyInput,
    PolicyTrainConfig,
    logged_distances,
    real_transitions,
    train_policy,
)
from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.envs.braking import SURFACES, Road, SimConfig
from nanorepro.rl.ensemble import EnsembleConfig
from nanorepro.rl.sac import SACConfig


def setup():
    ds = logs.generate(NoisyABS(ABSParams()), [Road(SURFACES["wet_asphalt"])], 10, np.random.default_rng(0))
    ens = EnsembleConfig(members=2, elites=1, hidden=16, layers=2, max_steps=20, eval_every=10)
    model = StopModel(StopModelConfig(history=3, unroll=2, context_dim=2, ensemble=ens))
    model.fit(ds.select("train"), ds.select("val"), generator=torch.Generator().manual_seed(0))
    train = ds.select("train")
    inputs = PolicyInput.fit(train, 3)
    starts = torch.from_numpy(logs.histories(train, 3)[train.episode_starts()])
    contexts = model.contexts(model.table(train), generator=torch.Generator().manual_seed(0))
    real = real_transitions(train, inputs, 3, SimConfig())
    cfg = PolicyTrainConfig(updates=40, warmup=10, rollout_batch=4, checkpoint_every=20, select_every=20,
                            sac=SACConfig(hidden=16, batch_size=32), pessimism=Pessimism(halt_threshold=2.0))
    return model.eval(), starts, contexts, inputs, real, cfg, ds


def test_policy_training_resumes_exactly(tmp_path):
    model, starts, contexts, inputs, real, cfg, _ = setup()
    scores = iter(range(100))

    def select(_controller):
        return float(next(scores))

    torch.manual_seed(0)
    full = train_policy(model, starts, contexts, inputs, real, cfg, torch.Generator().manual_seed(1), select=select)
    saved = []
    torch.manual_seed(0)
    train_policy(model, starts, contexts, inputs, real, cfg, torch.Generator().manual_seed(1), select=select,
                 checkpoint=saved.append)
    assert [s["step"] for s in saved] == [30]  # update 20 (after 10 warm-up steps); none at the end
    save_checkpoint(tmp_path / "c.safetensors", saved[0])
    torch.manual_seed(123)  # the resumed run restores the RNGs itself
    resumed = train_policy(model, starts, contexts, inputs, real, cfg, torch.Generator().manual_seed(99),
                           select=select, resume=load_checkpoint(tmp_path / "c.safetensors"))
    for key, value in full.last_actor.items():
        assert torch.equal(resumed.last_actor[key], value), key
    assert [p["update"] for p in full.curve] == [20, 40]


def test_logged_commands_replay_and_distances():
    *_, ds = setup()
    replay = LoggedCommands(ds)
    replay.reset(ds.n_episodes, np.random.default_rng(0))
    first = replay.act(np.zeros((ds.n_episodes, 5)))
    assert np.allclose(first, ds.action[ds.episode_starts()])
    assert np.allclose(logged_distances(ds), ds.distance, rtol=0.02)  # measured speeds vs true distance
