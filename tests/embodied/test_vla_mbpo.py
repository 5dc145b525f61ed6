import math

import pytest
import torch

from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.pixel_world_model import PixelWorldModel, PixelWorldModelConfig, VQConfig, token_transitions
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig
from nanorepro.embodied.vla_mbpo import (
    BranchSchedule,
    ImaginedBuffer,
    TwinValue,
    chunk_kl,
    chunk_log_prob,
    gae,
    ppo_clip_loss,
)
from nanorepro.envs.tabletop import MAX_WORDS, Task


def test_gae_over_chunks_by_hand():
    # one branch of 3 chunks, success (reward 1) after the last, which ends the branch
    rewards = torch.tensor([[0.0], [0.0], [1.0]])
    values = torch.tensor([[0.5], [0.6], [0.7], [9.0]])   # V after the terminal chunk must be ignored
    dones = torch.tensor([[0], [0], [1]])
    g, lam = 0.9, 0.8
    d2 = 1.0 - 0.7
    d1 = 0.0 + g * 0.7 - 0.6
    d0 = 0.0 + g * 0.6 - 0.5
    a2 = d2
    a1 = d1 + g * lam * a2
    a0 = d0 + g * lam * a1
    adv, ret = gae(rewards, values, dones, gamma=g, lam=lam)
    assert adv[:, 0].tolist() == pytest.approx([a0, a1, a2])
    assert ret[:, 0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7])
    # a branch cut short (not done) bootstraps from the last value
    adv, _ = gae(torch.zeros(1, 1), torch.tensor([[0.0], [2.0]]), torch.zeros(1, 1), gamma=0.5, lam=1.0)
    assert adv.item() == pytest.approx(1.0)


def test_ppo_clipping_is_pessimistic_and_stops_the_gradient_outside_the_trust_region():
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 1.05, 0.5, 0.5])).requires_grad_()
    adv = torch.tensor([1.0, 1.0, -1.0, 1.0])
    loss = ppo_clip_loss(new, old, adv, clip=0.1)
    # per sample min(rho A, clip(rho) A): 1.1, 1.05, -0.9, 0.5
    assert loss.item() == pytest.approx(-(1.1 + 1.05 - 0.9 + 0.5) / 4)
    loss.backward()
    assert new.grad[0] == 0 and new.grad[2] == 0 and new.grad[1] != 0 and new.grad[3] != 0


def test_twin_value_estimate_is_the_minimum_and_both_heads_learn():
    torch.manual_seed(0)
    critic = TwinValue(3, hidden=16)
    x = torch.randn(5, 3)
    both = critic(x)
    assert both.shape == (2, 5) and torch.equal(critic.value(x), torch.minimum(both[0], both[1]))
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    target = x.sum(1)
    first = critic.loss(x, target).item()
    for _ in range(200):
        loss = critic.loss(x, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert critic.loss(x, target).item() < 0.01 * first


def _obs(B=3):
    g = torch.Generator().manual_seed(0)
    return {"state": torch.rand(B, 30, generator=g), "instruction": torch.randint(2, 20, (B, MAX_WORDS), generator=g),
            "head": torch.randint(0, 256, (B, 32, 32, 3), dtype=torch.uint8, generator=g),
            "wrist": torch.randint(0, 256, (B, 32, 32, 3), dtype=torch.uint8, generator=g)}


def test_chunk_log_prob_is_the_sum_of_gaussian_and_bernoulli_terms_and_kl_to_itself_is_zero():
    torch.manual_seed(0)
    policy = ChunkPolicy(PolicyConfig(horizon=4, channels=8, hidden=32))
    obs = _obs()
    chunk = torch.cat([torch.rand(3, 4, 2), (torch.rand(3, 4, 1) > 0.5).float()], -1)
    mean, log_std, logits = policy(obs)
    std = policy.cfg.offset_scale * log_std.exp()
    expected = (torch.distributions.Normal(mean, std).log_prob(chunk[..., :2]).sum((1, 2))
                + torch.distributions.Bernoulli(logits=logits).log_prob(chunk[..., 2]).sum(1))
    assert torch.allclose(chunk_log_prob(policy, obs, chunk), expected, atol=1e-4)
    assert torch.allclose(chunk_kl(policy, policy, obs), torch.zeros(3), atol=1e-5)
    other = ChunkPolicy(PolicyConfig(horizon=4, channels=8, hidden=32))
    kl = chunk_kl(policy, other, obs)
    ref_mean, ref_log_std, ref_logits = other(obs)
    ref_std = policy.cfg.offset_scale * ref_log_std.exp()
    by_torch = (torch.distributions.kl_divergence(torch.distributions.Normal(mean, std),
                                                  torch.distributions.Normal(ref_mean, ref_std)).sum((1, 2))
                + torch.distributions.kl_divergence(torch.distributions.Bernoulli(logits=logits),
                                                    torch.distributions.Bernoulli(logits=ref_logits)).sum(1))
    assert torch.allclose(kl, by_torch, rtol=1e-4, atol=1e-4) and (kl > 0).all()
    assert math.isfinite(kl.sum().item())


def test_branch_schedule_grows_and_the_buffer_keeps_rollouts_for_their_retention():
    schedule = BranchSchedule(min_k=1, max_k=3, start_epoch=2, end_epoch=6)
    assert [schedule.length(e) for e in range(9)] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [BranchSchedule(2, 2).length(e) for e in range(3)] == [2, 2, 2]
    buffer = ImaginedBuffer(retain_epochs=2)
    for epoch in range(4):
        buffer.prune(epoch)
        buffer.add({"reward": torch.full((3,), float(epoch))}, epoch)
        # after adding at epoch e, the data of epochs e-1 and e are there, older data is gone
        assert sorted(set(buffer.data["reward"].tolist())) == [float(e) for e in range(max(0, epoch - 1), epoch + 1)]
    assert len(buffer) == 6 and buffer.sample(4, torch.Generator().manual_seed(0))["reward"].shape == (4,)
    with pytest.raises(ValueError):
        ImaginedBuffer(0)


def test_branched_rollouts_shapes_rewards_end_branches_and_uncertainty_cuts_them():
    from nanorepro.embodied.pixel_world_model import PixelWorldModel, PixelWorldModelConfig, VQConfig
    from nanorepro.embodied.vla_mbpo import branched_rollouts

    torch.manual_seed(0)
    policy = ChunkPolicy(PolicyConfig(horizon=4, channels=8, hidden=32))
    wm = PixelWorldModel(32, 4, PixelWorldModelConfig(vq=VQConfig(codes=16, code_dim=8, channels=8), d_model=32,
                                                      layers=1, heads=2))
    starts = _obs(6)
    with torch.no_grad():
        wm.success.bias.fill_(-20.0)           # never succeeds: every branch runs to k unless cut
    out = branched_rollouts(policy, wm, starts, k=3, max_uncertainty=1e9, generator=torch.Generator().manual_seed(0))
    assert out["chunk"].shape == (3, 6, 4, 3) and out["head"].shape == (3, 6, 32, 32, 3)
    assert out["alive"].all() and out["reward"].sum() == 0 and out["last"]["head"].dtype == torch.uint8
    assert torch.equal(out["head"][0], starts["head"])
    assert set(out["chunk"][..., 2].unique().tolist()) <= {0.0, 1.0}
    cut = branched_rollouts(policy, wm, starts, k=3, max_uncertainty=0.0)
    assert cut["alive"][0].all() and not cut["alive"][1:].any()   # entropy > 0: cut after the first chunk
    with torch.no_grad():
        wm.success.bias.fill_(20.0)            # succeeds at once: reward 1 on the first chunk, then the branch ends
    done = branched_rollouts(policy, wm, starts, k=3, max_uncertainty=1e9)
    assert done["reward"][0].sum() == 6 and done["reward"][1:].sum() == 0 and not done["alive"][1:].any()
    with torch.no_grad():                      # p = 1/4 after every chunk, below the 0.5 threshold
        wm.success.weight.zero_()
        wm.success.bias.fill_(math.log(0.25 / 0.75))
    soft = branched_rollouts(policy, wm, starts, k=3, max_uncertainty=1e9, reward="probability")
    first_success = [0.25, 0.75 * 0.25, 0.75 * 0.75 * 0.25]   # p_t * prod_{s<t} (1 - p_s)
    assert soft["reward"][:, 0].tolist() == pytest.approx(first_success) and soft["alive"].all()
    assert branched_rollouts(policy, wm, starts, k=3, max_uncertainty=1e9)["reward"].sum() == 0
    with pytest.raises(ValueError, match="unknown reward"):
        branched_rollouts(policy, wm, starts, k=1, max_uncertainty=1e9, reward="dense")


def test_gae_with_a_cut_branch_bootstraps_from_the_cut_value_and_ignores_steps_outside_the_branch():
    # branch 0 runs 3 chunks; branch 1 is cut after its first chunk (alive only at t = 0)
    rewards = torch.zeros(3, 2)
    values = torch.tensor([[0.1, 0.2], [0.3, 0.5], [0.4, 7.0], [0.6, 9.0]])
    dones = torch.zeros(3, 2)
    alive = torch.tensor([[1, 1], [1, 0], [1, 0]])
    g, lam = 0.9, 0.5
    adv, ret = gae(rewards, values, dones, gamma=g, lam=lam, alive_TB=alive)
    assert adv[0, 1].item() == pytest.approx(g * 0.5 - 0.2)          # one-step: bootstrap V_1 only
    assert adv[1:, 1].abs().sum() == 0
    d = [g * values[t + 1, 0] - values[t, 0] for t in range(3)]
    assert adv[0, 0].item() == pytest.approx(float(d[0] + g * lam * (d[1] + g * lam * d[2])))
    # alive everywhere reproduces the plain estimate
    plain, _ = gae(rewards, values, dones, gamma=g, lam=lam)
    assert torch.allclose(gae(rewards, values, dones, g, lam, torch.ones(3, 2))[0], plain)


def test_real_rollouts_reward_the_chunk_that_solves_the_task_and_count_live_steps():
    import numpy as np

    from nanorepro.embodied.vla_mbpo import real_rollouts
    from nanorepro.envs.tabletop import sample_task

    torch.manual_seed(0)
    policy = ChunkPolicy(PolicyConfig(horizon=4, channels=8, hidden=32))
    rng = np.random.default_rng(0)
    tasks = [sample_task("train", rng) for _ in range(3)]
    out = real_rollouts(policy, tasks, seed=0, max_steps=10, generator=torch.Generator().manual_seed(0))
    T = out["reward"].shape[0]
    assert T == 3 and out["chunk"].shape == (3, 3, 4, 3) and out["instruction"].shape == (3, MAX_WORDS)
    assert out["real_steps"] == 4 * int(out["alive"].sum())
    assert torch.equal(out["done"], out["reward"].bool())
    # a scene is alive until (and including) the chunk that solves it, never after
    later = torch.cumsum(out["done"].int(), 0) - out["done"].int()
    assert not (out["alive"] & (later > 0)).any()
    again = real_rollouts(policy, tasks, seed=0, max_steps=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again["chunk"], out["chunk"])


def test_chunk_ppo_keeps_live_steps_and_raises_the_probability_of_a_rewarded_chunk():
    from nanorepro.embodied.vla_mbpo import ChunkPPO, PPOConfig

    torch.manual_seed(0)
    policy = ChunkPolicy(PolicyConfig(horizon=4, channels=8, hidden=32))
    obs = _obs(4)
    gen = torch.Generator().manual_seed(1)
    chunks = torch.stack([policy.sample(obs, gen) for _ in range(2)])          # (T=2, B=4)
    rollout = {k: torch.stack([obs[k], obs[k]]) for k in ("state", "head", "wrist")}
    rollout.update(instruction=obs["instruction"], chunk=chunks,
                   log_prob=torch.stack([chunk_log_prob(policy, obs, c) for c in chunks]).detach(),
                   reward=torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]),
                   done=torch.tensor([[True, False, False, False], [False] * 4]),
                   alive=torch.tensor([[True] * 4, [False, True, True, False]]), last=obs)
    ppo = ChunkPPO(policy, PPOConfig(lr=1e-3, epochs=10, minibatch=8), seed=0)
    batch = ppo.transitions(rollout)
    assert len(batch["advantage"]) == 6                                        # 4 + 2 live steps
    assert batch["advantage"][0] == batch["advantage"].max()                   # the rewarded chunk
    before = chunk_log_prob(policy, obs, chunks[0])[0].item()
    stats = ppo.update(batch)
    assert chunk_log_prob(policy, obs, chunks[0])[0].item() > before
    assert set(stats) == {"policy_loss", "value_loss", "clip_fraction", "approx_kl"}


def test_sample_starts_draws_from_the_pools_in_proportion_and_refuses_no_pools():
    from nanorepro.embodied.vla_mbpo import sample_starts

    a = {k: v[:2] for k, v in _obs(2).items()}
    a["state"] = torch.zeros(2, 30)
    b = {k: v for k, v in _obs(3).items()}
    b["state"] = torch.ones(3, 30)
    gen = torch.Generator().manual_seed(0)
    out = sample_starts([a, b], [0.25, 0.75], 4000, gen)
    assert out["head"].shape == (4000, 32, 32, 3)
    assert out["state"][:, 0].mean().item() == pytest.approx(0.75, abs=0.03)
    empty = {k: v[:0] for k, v in b.items()}
    assert sample_starts([a, empty], [0.5, 0.5], 10, gen)["state"].sum() == 0   # empty pools are skipped
    with pytest.raises(ValueError, match="no start states"):
        sample_starts([empty], [1.0], 5, gen)


def test_policy_loss_weights_each_sample():
    torch.manual_seed(0)
    policy = ChunkPolicy(PolicyConfig(horizon=4, channels=8, hidden=32))
    obs = _obs(3)
    chunk = torch.cat([torch.rand(3, 4, 2), (torch.rand(3, 4, 1) > 0.5).float()], -1)
    plain = policy.loss(obs, chunk)
    assert torch.allclose(policy.loss(obs, chunk, torch.ones(3)), plain)
    single = [policy.loss({k: v[i:i + 1] for k, v in obs.items()}, chunk[i:i + 1]) for i in range(3)]
    assert torch.allclose(policy.loss(obs, chunk, torch.tensor([0.0, 3.0, 0.0])), single[1])


def test_real_transitions_pair_each_live_chunk_with_the_next_chunks_start_frames():
    from nanorepro.embodied.vla_mbpo import real_transitions

    class FirstPixel:   # a stand-in tokenizer: the code is an image's first pixel, so frames can be traced
        def tokenize(self, head, wrist):
            return head.flatten(1)[:, :1].long(), wrist.flatten(1)[:, :1].long()

    T, B = 2, 2
    frame = torch.arange(T * B + B, dtype=torch.uint8).view(T + 1, B, 1, 1, 1).expand(-1, -1, 4, 4, 3)
    real = {"state": torch.rand(T, B, 30), "head": frame[:T], "wrist": frame[:T] + 100,
            "chunk": torch.rand(T, B, 4, 3), "reward": torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
            "alive": torch.tensor([[True, True], [True, False]]), "instruction": torch.tensor([[7], [8]]),
            "last": {"head": frame[T], "wrist": frame[T] + 100}}
    out = real_transitions(FirstPixel(), real)
    # live steps, time-major: (t0, b0), (t0, b1), (t1, b0); scene 1 was solved at t0 and is dropped after
    assert out["head_now"].flatten().tolist() == [0, 1, 2]
    assert out["head_next"].flatten().tolist() == [2, 3, 4]          # t1's start frames, then ``last``
    assert out["wrist_next"].flatten().tolist() == [102, 103, 104]
    assert out["solved"].tolist() == [0.0, 1.0, 1.0]
    assert out["instruction"].flatten().tolist() == [7, 8, 7]
    assert torch.equal(out["proprio"], real["state"][[0, 0, 1], [0, 1, 0], :5])
    assert torch.equal(out["chunk"], real["chunk"][[0, 0, 1], [0, 1, 0]])


def test_fine_tuning_on_real_chunks_teaches_the_success_head_their_labels_and_leaves_the_tokenizers():
    torch.manual_seed(0)
    cfg = PixelWorldModelConfig(vq=VQConfig(codes=16, code_dim=8, channels=8, steps=5, batch_size=16),
                                d_model=32, layers=1, heads=2, steps=5, batch_size=16, lr=3e-3)
    model = PixelWorldModel(32, 4, cfg)
    data = make_demos([Task("place", 1, zone="top right")], seed=0, horizon=4)
    demos = token_transitions(model, data, 4)
    failed = {**{k: v[:8] for k, v in demos.items()}, "solved": torch.zeros(8)}   # the same chunks, all failed
    tokenizers = {k: v.clone() for k, v in model.tokenizers.state_dict().items()}
    args = ({k: failed[k] for k in ("instruction", "chunk", "proprio", "head_now", "wrist_now")},)
    before = model.predict_codes(*args)["success"].sigmoid().mean()
    model.fine_tune([demos, failed], [0.0, 1.0], 40, torch.Generator().manual_seed(0))
    assert model.predict_codes(*args)["success"].sigmoid().mean() < min(before, 0.2)
    for k, v in model.tokenizers.state_dict().items():
        assert torch.equal(v, tokenizers[k])
