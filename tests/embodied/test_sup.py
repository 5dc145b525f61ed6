import pytest
import torch

from nanorepro.embodied.sup import (
    RATES,
    PIDLagrangian,
    RateQ,
    deviation_costs,
    downsample,
    downsample_indices,
    dual_ascent,
    fitted_q_loss,
    hold_padded,
    rewards,
)


def test_downsampling_indices_keep_every_kth_and_the_last():
    assert downsample_indices(8, 1) == list(range(8))
    assert downsample_indices(8, 2) == [0, 2, 4, 6, 7]
    assert downsample_indices(8, 3) == [0, 3, 6, 7]
    assert downsample_indices(8, 4) == [0, 4, 7]
    assert downsample_indices(9, 4) == [0, 4, 8]
    with pytest.raises(ValueError):
        downsample_indices(8, 0)
    chunk = torch.arange(8.0)[None, :, None]
    assert downsample(chunk, 3)[0, :, 0].tolist() == [0, 3, 6, 7]
    assert hold_padded(chunk, 4)[0, :, 0].tolist() == [0, 4, 7, 7, 7, 7, 7, 7]
    assert rewards().tolist() == pytest.approx([0.0, 0.5, 2 / 3, 0.75])


def test_deviation_cost_on_a_hand_made_world_model():
    chunk = torch.arange(8.0)[None, :, None]              # one chunk, 1-D waypoints 0..7

    def predict_end(c):                                    # "ends at the mean waypoint"
        return c.mean(1)

    costs = deviation_costs(predict_end, chunk)
    # full mean 3.5; k=2 -> [0,2,4,6,7,7,7,7] mean 5; k=3 -> [0,3,6,7,7,7,7,7] mean 5.5; k=4 -> [0,4,7,...] mean 46/8
    assert costs[0].tolist() == pytest.approx([0.0, 1.5, 2.0, 46 / 8 - 3.5])


def test_dual_updates_raise_the_price_over_budget_and_lower_it_under():
    assert dual_ascent(1.0, cost=0.5, budget=0.2, lr=1.0) == pytest.approx(1.3)
    assert dual_ascent(1.0, cost=0.1, budget=0.2, lr=1.0) == pytest.approx(0.9)
    assert dual_ascent(0.05, cost=0.0, budget=0.2, lr=1.0) == 0.0
    pid = PIDLagrangian(kp=1.0, ki=0.5)
    assert pid.update(cost=0.5, budget=0.2) == pytest.approx(0.3 + 0.15)
    assert pid.update(cost=0.0, budget=0.2) == 0.0 and pid.integral == pytest.approx(0.1)
    for _ in range(5):
        pid.update(cost=0.0, budget=0.2)
    assert pid.integral == 0.0                              # no banked credit


def test_fitted_q_learns_the_lagrangian_reward_and_the_scheduler_stays_in_the_rate_set():
    torch.manual_seed(0)
    n = 256
    features = torch.randn(n, 4)
    cost_per_rate = torch.tensor([0.0, 0.1, 0.5, 1.0])
    batch = {"features": features, "rate_index": torch.arange(n) % 4, "next_features": features,
             "done": torch.ones(n)}
    batch["reward"] = rewards()[batch["rate_index"]]
    batch["cost"] = cost_per_rate[batch["rate_index"]]
    for lam, best in ((0.0, 4), (1.0, 2), (10.0, 1)):     # r - lam c: free -> k=4; lam 1 -> 0.4 at k=2; 10 -> k=1
        q = RateQ(4, hidden=32)
        opt = torch.optim.Adam(q.parameters(), lr=1e-2)
        for _ in range(300):
            loss = fitted_q_loss(q, q, batch, lam=lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
        chosen = q.choose(features)
        assert set(chosen.tolist()) <= set(RATES)
        assert (chosen == best).float().mean() > 0.9
