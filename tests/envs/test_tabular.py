import numpy as np
import pytest
import torch

from nanorepro.common.errors import UserError
from nanorepro.envs.tabular import (
    TabularMDP,
    deterministic_policy,
    policy_value,
    reset_cliff,
    sample_trajectories,
    state_action_occupancy,
)


def random_mdp(rng, S=4, A=3):
    P = rng.dirichlet(np.ones(S), size=(S, A))
    R = rng.random((S, A))
    p0 = rng.dirichlet(np.ones(S))
    return TabularMDP(torch.from_numpy(P), torch.from_numpy(R), torch.from_numpy(p0))


def random_policy(rng, H, S, A):
    return torch.from_numpy(rng.dirichlet(np.ones(A), size=(H, S)))


@pytest.mark.parametrize("kind", ["random", "cliff"])
def test_exact_occupancy_matches_monte_carlo(kind):
    rng = np.random.default_rng(0)
    H, n = 6, 40_000
    mdp = random_mdp(rng) if kind == "random" else reset_cliff(3, 2, np.array([0, 1, 1]))
    pi = random_policy(rng, H, mdp.n_states, mdp.n_actions)
    d = state_action_occupancy(mdp, pi).numpy()
    states, actions, rewards = sample_trajectories(mdp, pi, n, rng)
    freq = np.zeros_like(d)
    np.add.at(freq, (np.tile(np.arange(H), (n, 1)), states, actions), 1.0 / n)
    # Binomial standard error per cell; 5 sigma keeps the test from flaking.
    assert np.all(np.abs(freq - d) <= 5 * np.sqrt(d * (1 - d) / n) + 1e-9)
    assert np.allclose(d.sum(axis=(1, 2)), 1.0)
    assert rewards.sum(1).mean() == pytest.approx(policy_value(mdp, pi).item(), abs=5 * rewards.sum(1).std() / n**0.5)


def test_reset_cliff_values_by_hand():
    a_star = np.array([1, 0])
    mdp = reset_cliff(2, 2, a_star)
    H = 5
    expert = deterministic_policy(np.append(a_star, 0), H, 2)
    assert policy_value(mdp, expert).item() == pytest.approx(H)
    uniform = torch.full((H, 3, 2), 0.5, dtype=torch.float64)
    # Survive each step with probability 1/2: V = sum_{h=1..H} 2^-h.
    assert policy_value(mdp, uniform).item() == pytest.approx(sum(0.5**h for h in range(1, H + 1)))
    # The bad state is absorbing and pays nothing.
    assert mdp.P_SAS[2, :, 2].tolist() == [1.0, 1.0] and mdp.R_SA[2].tolist() == [0.0, 0.0]


def test_occupancy_accepts_batched_policies():
    rng = np.random.default_rng(1)
    mdp = random_mdp(rng)
    pis = torch.stack([random_policy(rng, 4, 4, 3) for _ in range(3)])
    batched = state_action_occupancy(mdp, pis)
    for i in range(3):
        assert torch.allclose(batched[i], state_action_occupancy(mdp, pis[i]))


def test_malformed_mdp_is_a_user_error():
    P = torch.full((2, 2, 2), 0.3, dtype=torch.float64)
    with pytest.raises(UserError, match="sum to 1"):
        TabularMDP(P, torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(UserError, match="shapes"):
        TabularMDP(torch.full((2, 2, 2), 0.5, dtype=torch.float64), torch.zeros(3, 2), torch.tensor([1.0, 0.0]))
    with pytest.raises(UserError, match="2 actions"):
        reset_cliff(3, 1, np.zeros(3, dtype=int))
