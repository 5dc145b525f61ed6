import numpy as np
import pytest
import torch

from nanorepro.braking import data as logs
from nanorepro.braking.controllers import ABSParams, NoisyABS
from nanorepro.braking.model import (
    ImaginedStops,
    Pessimism,
    StopModel,
    StopModelConfig,
    discounted_remaining_distance,
    features,
    stop_reward,
)
from nanorepro.envs.braking import SURFACES, Road, SimConfig
from nanorepro.rl.ensemble import EnsembleConfig


def tiny_model(**changes):
    ensemble = EnsembleConfig(members=3, elites=2, hidden=16, layers=2, max_steps=30, eval_every=10)
    cfg = StopModelConfig(history=3, unroll=2, context_dim=2, **changes, ensemble=ensemble)
    return StopModel(cfg)


def test_features_are_newest_measurement_differences_and_command():
    hist = torch.arange(15.0).reshape(1, 3, 5)
    x = features(hist, torch.tensor([0.3]))
    assert x.tolist()[0] == [10, 11, 12, 13, 14] + [5.0] * 10 + [pytest.approx(0.3)]


def test_physics_structure_clamps_and_computes_the_rest():
    model = tiny_model()
    last = torch.tensor([[20.0, 19.0, -5.0, 0.05, 0.2]])
    nxt = model.assemble(last, torch.tensor([[0.5, -30.0]]), torch.tensor([0.6]))
    v, w, accel, slip, u = nxt[0].tolist()
    assert v == 20.0  # the car cannot speed up
    assert w == 0.0  # the wheel cannot turn backwards
    assert accel == pytest.approx(-19.0 / 0.01) and slip == 1.0 and u == pytest.approx(0.6)
    nxt = model.assemble(last, torch.tensor([[-5.0, 0.0]]), torch.tensor([0.6]))
    assert nxt[0, 0].item() == pytest.approx(20.0 - 2 * 9.81 * 0.01)  # at most 2 g


def test_reward_is_minus_distance_and_costs():
    sim = SimConfig()
    last = torch.tensor([[20.0, 19.0, 0.0, 0.05, 0.2]])
    nxt = torch.tensor([[19.9, 0.0, 0.0, 1.0, 0.5]])  # locked and in deep slip
    r = stop_reward(last, nxt, torch.tensor([0.5]), sim)
    expected = -(0.5 * 39.9 * 0.01) - sim.reward_deep_slip - sim.reward_locked - sim.reward_chatter * 0.3
    assert r.item() == pytest.approx(expected)


@pytest.fixture(scope="module")
def fitted():
    ds = logs.generate(NoisyABS(ABSParams()), [Road(SURFACES["dry_asphalt"])], 10, np.random.default_rng(0))
    model = tiny_model()
    model.fit(ds.select("train"), ds.select("val"), generator=torch.Generator().manual_seed(0))
    return model.eval(), ds


def test_imagined_stops_truncate_and_restart(fitted):
    model, ds = fitted
    starts = torch.from_numpy(logs.histories(ds, 3)[ds.episode_starts()])
    contexts = model.contexts(model.table(ds))
    assert contexts.shape == (3, 10, 2)
    stops = ImaginedStops(model, starts, contexts, 4, Pessimism(), torch.Generator().manual_seed(0), max_steps=3)
    for _ in range(3):
        _, _, terminated, truncated, _ = stops.step(torch.full((4,), 0.3))
    assert truncated.all() and not terminated.any()
    assert set(stops.member.tolist()) <= set(model.ensemble.elite_idx.tolist())
    stops.reset_rows(truncated)
    assert (stops.steps == 0).all()


def test_halt_ends_uncertain_stops_and_charges_the_rest_of_the_stop(fitted):
    model, ds = fitted
    starts = torch.from_numpy(logs.histories(ds, 3)[ds.episode_starts()])
    stops = ImaginedStops(model, starts, model.contexts(model.table(ds)), 4, Pessimism(halt_threshold=-1.0,
                          halt_decel=1.0), torch.Generator().manual_seed(0), max_steps=100)
    hist, reward, terminated, _, _ = stops.step(torch.full((4,), 0.3))
    assert terminated.all()  # every disagreement exceeds a negative threshold
    v = hist[:, -1, 0]
    still = discounted_remaining_distance(v, 1.0, 0.99, 0.01)
    assert torch.all(reward <= -still + 1e-4)  # at least the (discounted) distance still needed at 1 m/s^2


def test_discounted_remaining_distance_by_hand():
    v = torch.tensor([10.0])
    # gamma -> 1: the plain distance v^2 / (2 a)
    assert discounted_remaining_distance(v, 2.0, 1 - 1e-7, 0.01).item() == pytest.approx(25.0, rel=1e-4)
    # discrete sum with gamma = 0.99 per 10 ms step
    steps = torch.arange(0, 500)
    speeds = (10.0 - 2.0 * 0.01 * steps).clamp_min(0)
    discrete = (0.99**steps * speeds * 0.01).sum().item()
    assert discounted_remaining_distance(v, 2.0, 0.99, 0.01).item() == pytest.approx(discrete, rel=0.01)
