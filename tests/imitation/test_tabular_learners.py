import math

import numpy as np
import pytest
import torch

from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.envs.tabular import deterministic_policy, policy_value, reset_cliff, sample_trajectories
from nanorepro.imitation.tabular import (
    AILConfig,
    Demonstrations,
    QLearnerConfig,
    behaviour_cloning,
    dual_qdm_loss,
    fit_q_learner,
    fit_tv_ail,
    greedy_policy,
    implied_reward,
    iq_learn_loss,
    soft_optimal_q,
    soft_value,
)


def one_state_cliff():
    """One good state (expert action 0) and the bad state."""
    return reset_cliff(1, 2, np.array([0]))


def test_implied_reward_by_hand():
    mdp = one_state_cliff()
    Q = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[2.0, 1.0], [0.5, 0.5]]], dtype=torch.float64)
    r = implied_reward(Q, mdp, alpha=1.0)
    v1_good = math.log(math.exp(2) + math.exp(1))
    v1_bad = 0.5 + math.log(2)
    assert r[0, 0, 0].item() == pytest.approx(1 - v1_good)  # a* resets to the good state
    assert r[0, 0, 1].item() == pytest.approx(0 - v1_bad)  # the other action falls
    assert torch.allclose(r[1], Q[1])  # V_H = 0


def test_soft_value_is_entropy_regularised_expectation():
    Q = torch.tensor([[[0.3, -1.2, 2.0]]], dtype=torch.float64)
    alpha = 0.7
    pi = torch.softmax(Q / alpha, -1)
    assert soft_value(Q, alpha).item() == pytest.approx((pi * (Q - alpha * pi.log())).sum().item())


def losses_by_hand_setup():
    mdp = one_state_cliff()
    demos = Demonstrations(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]], dtype=torch.float64), n_trajectories=1)
    d_pi = torch.tensor([[[0.6, 0.4], [0.0, 0.0]]], dtype=torch.float64)
    Q = torch.tensor([[[2.0, -3.0], [0.0, 0.0]]], dtype=torch.float64)
    return mdp, demos, d_pi, Q


def test_dual_qdm_loss_by_hand():
    mdp, demos, d_pi, Q = losses_by_hand_setup()
    # H = 1, so r = Q. -E_dE[r] = -2; V_0 = log(e^2 + e^-3); mixture on the good state (0.8, 0.2);
    # hinge violations (2 - 1)^2 = 1 and (-1 - -3)^2 = 4, weighted 0.5 * (0.8 * 1 + 0.2 * 4) = 0.8.
    expected = -2 + math.log(math.exp(2) + math.exp(-3)) + 0.8
    loss = dual_qdm_loss(Q, mdp, demos, d_pi, alpha=1.0, box=(-1.0, 1.0), hinge_weight=0.5, value="v0")
    assert loss.item() == pytest.approx(expected)


def test_iq_learn_losses_by_hand():
    mdp, demos, d_pi, Q = losses_by_hand_setup()
    base = -2 + math.log(math.exp(2) + math.exp(-3))
    on_expert = iq_learn_loss(Q, mdp, demos, d_pi, alpha=1.0, chi2_c=0.5, chi2_on="expert", value="v0")
    on_mix = iq_learn_loss(Q, mdp, demos, d_pi, alpha=1.0, chi2_c=0.5, chi2_on="mix", value="v0")
    assert on_expert.item() == pytest.approx(base + 0.5 * 4.0)  # 1/(4c) E_dE[r^2], r = 2
    assert on_mix.item() == pytest.approx(base + 0.5 * (0.8 * 4 + 0.2 * 9))


def test_value_terms_agree_on_exact_learner_occupancy():
    """(1/H) E_p0[V_0] equals E_d[V - PV] for d the exact occupancy of any policy (telescoping)."""
    from nanorepro.envs.tabular import state_action_occupancy
    from nanorepro.imitation.tabular import value_term

    rng = np.random.default_rng(3)
    mdp = reset_cliff(3, 2, np.array([0, 1, 0]))
    Q = torch.from_numpy(rng.normal(size=(5, 4, 2)))
    pi = torch.from_numpy(rng.dirichlet(np.ones(2), size=(5, 4)))
    d = state_action_occupancy(mdp, pi)
    assert value_term(Q, mdp, 0.3, d, "v0").item() == pytest.approx(value_term(Q, mdp, 0.3, d, "mix").item())


def test_soft_optimal_q_by_hand_and_hard_limit():
    mdp = one_state_cliff()
    r = torch.tensor([[[1.0, 0.5], [0.0, 0.0]], [[0.2, 0.9], [0.0, 0.0]]], dtype=torch.float64)
    Q = soft_optimal_q(mdp, r, alpha=1.0)
    assert torch.allclose(Q[1], r[1])
    v1 = torch.logsumexp(r[1], -1)
    assert Q[0, 0, 0].item() == pytest.approx(1.0 + v1[0].item())
    assert Q[0, 0, 1].item() == pytest.approx(0.5 + v1[1].item())
    hard = soft_optimal_q(mdp, r, alpha=1e-4)
    assert hard[0, 0, 0].item() == pytest.approx(1.0 + 0.9, abs=1e-3)


def test_greedy_ties_share_mass():
    Q = torch.tensor([[[1.0, 1.0 + 1e-9, 0.0]]], dtype=torch.float64)
    assert greedy_policy(Q, tie_tol=1e-6).tolist() == [[[0.5, 0.5, 0.0]]]
    assert greedy_policy(Q, tie_tol=0.0).tolist() == [[[0.0, 1.0, 0.0]]]


def small_instance(seed=0, S=4, N=3, H=6):
    rng = np.random.default_rng(seed)
    a_star = rng.integers(0, 2, S)
    mdp = reset_cliff(S, 2, a_star)
    states, actions, _ = sample_trajectories(mdp, deterministic_policy(np.append(a_star, 0), H, 2), N, rng)
    demos = Demonstrations.from_trajectories(states, actions, S + 1, 2)
    uncovered = ~demos.covered_HS[:, :S]
    assert uncovered.any() and (~uncovered).any()
    return mdp, demos, a_star, uncovered


def pi_star(pi_HSA, a_star):
    H, S = pi_HSA.shape[0], len(a_star)
    return pi_HSA[:, :S].gather(-1, torch.as_tensor(a_star).expand(H, S).unsqueeze(-1)).squeeze(-1)


def test_demonstration_counts():
    demos = Demonstrations.from_trajectories(np.array([[0, 1], [0, 0]]), np.array([[1, 0], [1, 1]]), 3, 2)
    assert demos.counts_HSA[0].tolist() == [[0, 2], [0, 0], [0, 0]]
    assert demos.counts_HSA[1].tolist() == [[0, 1], [1, 0], [0, 0]]
    assert torch.allclose(demos.occupancy_HSA.sum((1, 2)), torch.ones(2, dtype=torch.float64))


def test_bc_is_uniform_off_the_data():
    mdp, demos, a_star, uncovered = small_instance()
    bc = behaviour_cloning(demos)
    assert torch.all(pi_star(bc.policy_HSA, a_star)[uncovered] == 0.5)
    assert torch.all(pi_star(bc.policy_HSA, a_star)[~uncovered] == 1.0)


def test_iq_learn_on_expert_reduces_to_bc():
    """The paper's Theorem: chi^2-on-expert IQ-Learn suppresses Q uniformly where there is no data."""
    mdp, demos, a_star, uncovered = small_instance()
    fit = fit_q_learner(iq_learn_loss, mdp, demos, QLearnerConfig(steps=300), uses_learner_data=False,
                        chi2_c=0.5, chi2_on="expert", value="v0")
    assert torch.equal(fit.greedy_HSA[:, :4], behaviour_cloning(demos).greedy_HSA[:, :4])
    assert torch.all(pi_star(fit.policy_HSA, a_star)[uncovered] == 0.5)


def test_dual_qdm_recovers_expert_actions_off_the_data():
    mdp, demos, a_star, uncovered = small_instance()
    fit = fit_q_learner(dual_qdm_loss, mdp, demos, QLearnerConfig(steps=300), uses_learner_data=True,
                        box=(-1.0, 1.0), hinge_weight=0.5, value="v0")
    before_last = uncovered.clone()
    before_last[-1] = False  # at the last step nothing can tell a* apart: no future, no data
    assert torch.all(pi_star(fit.greedy_HSA, a_star)[before_last] == 1.0)
    assert 6 - policy_value(mdp, fit.greedy_HSA).item() <= 0.5 * uncovered[-1].sum().item() / 4 + 1e-9


def test_tv_ail_keeps_reward_in_box_and_recovers_expert_actions():
    mdp, demos, a_star, uncovered = small_instance()
    fit = fit_tv_ail(mdp, demos, AILConfig(steps=200, curve_every=50))
    before_last = uncovered.clone()
    before_last[-1] = False
    assert torch.all(pi_star(fit.greedy_HSA, a_star)[before_last] == 1.0)
    assert len(fit.curve) == 4 and all(0.0 <= p["tv"] <= 1.0 for p in fit.curve)


def test_q_learner_resume_is_exact(tmp_path):
    """Stopping at a checkpoint and resuming gives bit-identical results (optimiser state included)."""
    mdp, demos, _, _ = small_instance()
    cfg = QLearnerConfig(steps=120, checkpoint_every=50, curve_every=40)
    kwargs = dict(uses_learner_data=True, box=(-1.0, 1.0), hinge_weight=0.5, value="v0")
    full = fit_q_learner(dual_qdm_loss, mdp, demos, cfg, **kwargs)
    saved = []
    fit_q_learner(dual_qdm_loss, mdp, demos, cfg, checkpoint=saved.append, **kwargs)
    assert [s["step"] for s in saved] == [50, 100]
    save_checkpoint(tmp_path / "ckpt.safetensors", saved[0])
    resumed = fit_q_learner(dual_qdm_loss, mdp, demos, cfg, resume=load_checkpoint(tmp_path / "ckpt.safetensors"),
                            **kwargs)
    assert torch.equal(resumed.policy_HSA, full.policy_HSA)
    assert resumed.curve == full.curve


def test_iq_learn_on_the_mixture_acts_as_a_soft_bellman_constraint():
    """Chi^2 on learner samples (the official MuJoCo recipe) ties Q off the data to the next value."""
    mdp, demos, a_star, uncovered = small_instance()
    fit = fit_q_learner(iq_learn_loss, mdp, demos, QLearnerConfig(steps=300), uses_learner_data=True,
                        chi2_c=0.5, chi2_on="mix", value="v0")
    before_last = uncovered.clone()
    before_last[-1] = False
    assert torch.all(pi_star(fit.greedy_HSA, a_star)[before_last] == 1.0)
    assert torch.all(pi_star(fit.policy_HSA, a_star)[before_last] > 0.5)
