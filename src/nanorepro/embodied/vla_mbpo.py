"""VLA-MBPO's optimiser pieces (arXiv 2603.20607): chunk-level PPO on branched imagined rollouts.

Confirmed from the paper's code (``../shared/papers/embodied.md`` §1.2): rollouts branch
from dataset frames for 2 chunks (the paper finds 2–3 best), the reward comes after each
chunk from the world model's success head, PPO with clip 0.1 and GAE (gamma 0.99,
lambda 0.95) over chunks, a min-reduced value ensemble, no KL penalty by default. Ours:
the policy's chunk log-probability is exact (a Gaussian over the H waypoint positions and
a Bernoulli per grip, summed over the chunk) where the paper's flow policy estimates it;
MBPO's rollout-length schedule and model-buffer retention (Janner et al. 2019) govern how
branches grow and how long imagined data lives — the two places MBPO ports break.

    advantages, returns = gae(rewards, values, dones)            # (T, B) chunk steps
    loss = ppo_clip_loss(chunk_log_prob(policy, obs, chunks), old_log_prob, advantages, clip=0.1)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.embodied.pixel_world_model import PROPRIO, PixelWorldModel, gripper_from_head
from nanorepro.embodied.policy import ChunkPolicy, as_tensors
from nanorepro.envs.tabletop import Tabletop, TabletopConfig, Task
from nanorepro.nn.mlp import mlp


def chunk_log_prob(policy: ChunkPolicy, obs: dict[str, torch.Tensor], chunk_BH3: torch.Tensor) -> torch.Tensor:
    """(B,) log pi(chunk | obs) = sum_h [log N(xy_h; mu_h, sigma_h^2) + log Bern(grip_h; sigmoid(l_h))]."""
    mean, log_std, grip_logits = policy(obs)
    z = (chunk_BH3[..., :2] - mean) / (policy.cfg.offset_scale * log_std.exp())
    gauss = -0.5 * z**2 - log_std - math.log(policy.cfg.offset_scale) - 0.5 * math.log(2 * math.pi)
    bern = -F.binary_cross_entropy_with_logits(grip_logits, chunk_BH3[..., 2], reduction="none")
    return gauss.sum((1, 2)) + bern.sum(1)


def chunk_kl(policy: ChunkPolicy, reference: ChunkPolicy, obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) KL(pi || pi_ref) over whole chunks: Gaussian positions plus Bernoulli grips, summed (analytic)."""
    mean, log_std, logits = policy(obs)
    with torch.no_grad():
        ref_mean, ref_log_std, ref_logits = reference(obs)
    scale = policy.cfg.offset_scale
    gauss = (ref_log_std - log_std + ((log_std.exp() * scale) ** 2 + (mean - ref_mean) ** 2)
             / (2 * (ref_log_std.exp() * scale) ** 2) - 0.5)
    p, logp, log1mp = logits.sigmoid(), F.logsigmoid(logits), F.logsigmoid(-logits)
    bern = p * (logp - F.logsigmoid(ref_logits)) + (1 - p) * (log1mp - F.logsigmoid(-ref_logits))
    return gauss.sum((1, 2)) + bern.sum(1)


def gae(rewards_TB: torch.Tensor, values_T1B: torch.Tensor, dones_TB: torch.Tensor, gamma: float = 0.99,
        lam: float = 0.95, alive_TB: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over chunk steps (Schulman et al. 2016).

    delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t;  A_t = delta_t + gamma lam (1 - d_t) A_{t+1}.
    ``values`` has T + 1 rows (the last bootstraps a branch cut short). ``alive`` marks the
    steps that belong to a branch: a branch cut after step t (alive_{t+1} = 0 without d_t)
    bootstraps from V_{t+1} alone, and steps outside a branch get A = 0. Returns (A, A + V).
    """
    T = rewards_TB.shape[0]
    alive = torch.ones_like(rewards_TB) if alive_TB is None else alive_TB.float()
    advantages = torch.zeros_like(rewards_TB)
    running = torch.zeros_like(rewards_TB[0])
    for t in reversed(range(T)):
        live = 1.0 - dones_TB[t].float()
        delta = rewards_TB[t] + gamma * values_T1B[t + 1] * live - values_T1B[t]
        running = (delta + gamma * lam * live * running) * alive[t]
        advantages[t] = running
    return advantages, advantages + values_T1B[:T]


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  clip: float = 0.1) -> torch.Tensor:
    """-E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)], rho = exp(log pi - log pi_old) (Schulman et al. 2017)."""
    ratio = (log_prob - old_log_prob).exp()
    return -torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()


class TwinValue(nn.Module):
    """Two value heads on the same features; the estimate is their minimum (VLA-MBPO's min-reduced ensemble)."""

    def __init__(self, in_dim: int, hidden: int = 256):
        super().__init__()
        self.heads = nn.ModuleList(mlp(in_dim, hidden, 1, layers=2) for _ in range(2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(2, B) both heads' values."""
        return torch.stack([h(features).squeeze(-1) for h in self.heads])

    def value(self, features: torch.Tensor) -> torch.Tensor:
        return self(features).min(0).values

    def loss(self, features: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        """Each head regresses the returns (the min is for estimates, not for training)."""
        return ((self(features) - returns) ** 2).mean()


REWARDS = ("threshold", "probability")   # branched_rollouts' imagined rewards


@torch.no_grad()
def branched_rollouts(policy: ChunkPolicy, world_model: PixelWorldModel, starts: dict[str, torch.Tensor], k: int,
                      max_uncertainty: float, control_dt: float = 0.1, success_threshold: float = 0.5,
                      generator: torch.Generator | None = None, deterministic: bool = False,
                      reward: str = "threshold") -> dict[str, torch.Tensor]:
    """Roll ``k`` chunks from each start (state, head, wrist, instruction) inside the pixel world model.

    Each chunk is sampled from the policy (its mean with ``deterministic``); the world model
    predicts both views at its end, a success logit (reward 1 and the branch ends when its
    probability exceeds ``success_threshold``) and an uncertainty (the branch is cut, to be
    bootstrapped by the critic, once it exceeds ``max_uncertainty``). With ``reward="probability"``
    (**ours**) the reward is the head's probability that the first success comes after this chunk,
    p_t * prod_{s<t} (1 - p_s): a calibrated head seldom passes 0.5, so thresholding it gives no signal.
    Proprioception in imagination, **ours** (the paper holds it fixed): the gripper is decoded
    from the predicted head view, the grip is the chunk's last command, the velocity the chunk's
    mean displacement rate.
    Returns (k, B, ...) tensors: the observations each chunk started from, ``chunk``,
    ``log_prob``, ``reward``, ``done``, ``alive`` (the step is part of the branch) and
    ``uncertainty``, plus ``last`` — the observations after the final chunk (for bootstrapping)
    — and ``instruction``.
    """
    if policy.cfg.privileged_state or policy.cfg.encoder == "objects":
        raise ValueError("imagined rollouts have no object poses: the policy must not read the privileged state")
    if reward not in REWARDS:
        raise ValueError(f"unknown reward '{reward}' (choose from {', '.join(REWARDS)})")
    obs = {k_: starts[k_] for k_ in ("state", "head", "wrist")}
    instruction = starts["instruction"]
    B = len(instruction)
    alive = torch.ones(B, dtype=torch.bool)
    not_yet = torch.ones(B)   # the head's probability that no success came before
    steps: dict[str, list] = {n: [] for n in ("state", "head", "wrist", "chunk", "log_prob", "reward", "done",
                                              "alive", "uncertainty")}
    for _ in range(k):
        current = {**obs, "instruction": instruction}
        if deterministic:   # the mean waypoints and the likelier grip (evaluation in imagination)
            mean, _, grip_logits = policy(current)
            chunk = torch.cat([mean, (grip_logits > 0).float()[..., None]], -1)
        else:
            chunk = policy.sample(current, generator)
        log_prob = chunk_log_prob(policy, current, chunk)
        head, wrist, logit, uncertainty = world_model.predict(obs, instruction, chunk)
        p = logit.sigmoid()
        success = (p > success_threshold) & alive
        gain = success.float() if reward == "threshold" else p * not_yet * alive
        not_yet = not_yet * (1 - p)
        for name, value in (("state", obs["state"]), ("head", obs["head"]), ("wrist", obs["wrist"]),
                            ("chunk", chunk), ("log_prob", log_prob), ("reward", gain),
                            ("done", success), ("alive", alive.clone()), ("uncertainty", uncertainty)):
            steps[name].append(value)
        alive = alive & ~success & (uncertainty <= max_uncertainty)
        gripper = gripper_from_head(head)
        state = obs["state"].clone()
        velocity = (gripper - state[:, :2]) / (chunk.shape[1] * control_dt)
        state[:, :2], state[:, 2], state[:, 3:5] = gripper, chunk[:, -1, 2], velocity
        obs = {"state": state, "head": _to_uint8(head), "wrist": _to_uint8(wrist)}
    out = {name: torch.stack(values) for name, values in steps.items()}
    out["last"] = {**obs, "instruction": instruction}
    out["instruction"] = instruction
    return out


def _to_uint8(images_B3PP: torch.Tensor) -> torch.Tensor:
    return (images_B3PP.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class BranchSchedule:
    """MBPO's rollout length: ``min_k`` chunks until ``start_epoch``, linear to ``max_k`` at ``end_epoch``."""

    min_k: int = 1
    max_k: int = 2
    start_epoch: int = 0
    end_epoch: int = 1

    def length(self, epoch: int) -> int:
        if epoch <= self.start_epoch or self.end_epoch <= self.start_epoch:
            return self.min_k if epoch <= self.start_epoch else self.max_k
        frac = min(1.0, (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch))
        return int(round(self.min_k + frac * (self.max_k - self.min_k)))


class ImaginedBuffer:
    """Imagined transitions with their birth epoch; ``prune(epoch)`` keeps those born in the last ``retain_epochs``.

    MBPO keeps model rollouts for several epochs (its model buffer holds ``retain_epochs``
    worth): discarding them after one (mbrl-lib #61) starves the learner.
    """

    def __init__(self, retain_epochs: int):
        if retain_epochs < 1:
            raise ValueError(f"retain_epochs must be at least 1, got {retain_epochs}")
        self.retain_epochs = retain_epochs
        self.data: dict[str, torch.Tensor] = {}
        self.born = torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.born)

    def add(self, batch: dict[str, torch.Tensor], epoch: int) -> None:
        n = len(next(iter(batch.values())))
        self.data = {k: torch.cat([self.data[k], v]) if self.data else v for k, v in batch.items()}
        self.born = torch.cat([self.born, torch.full((n,), epoch, dtype=torch.long)])

    def prune(self, epoch: int) -> None:
        keep = self.born > epoch - self.retain_epochs
        self.data = {k: v[keep] for k, v in self.data.items()}
        self.born = self.born[keep]

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(self), (n,), generator=generator)
        return {k: v[idx] for k, v in self.data.items()}


def uncertainty_cut(world_model: PixelWorldModel, chunks: dict[str, torch.Tensor], quantile: float) -> float:
    """The ``quantile`` of the world model's token entropy on real chunk transitions (state, head, wrist,
    instruction, chunk): imagined branches are cut once their uncertainty passes it."""
    _, _, _, uncertainty = world_model.predict({k: chunks[k] for k in ("state", "head", "wrist")},
                                               chunks["instruction"], chunks["chunk"].float())
    return float(torch.quantile(uncertainty, quantile))


OBS = ("state", "head", "wrist", "instruction")
STEP_KEYS = ("state", "head", "wrist", "chunk", "log_prob", "reward", "done", "alive")


@torch.no_grad()
def real_rollouts(policy: ChunkPolicy, tasks: list[Task], seed: int, max_steps: int,
                  generator: torch.Generator | None = None, config: TabletopConfig | None = None
                  ) -> dict[str, torch.Tensor]:
    """Chunks sampled from the policy in the real suite, in ``branched_rollouts``' layout.

    Reward 1 (and the episode ends) when the task is solved during a chunk. Also returns
    ``real_steps``: the control steps the live scenes executed (the real-data budget).
    """
    config = config or TabletopConfig(view_size=policy.cfg.view_size)
    sim = Tabletop(len(tasks), config)
    obs = as_tensors(sim.reset(tasks, np.random.default_rng(seed)))
    instruction = obs["instruction"]
    H = policy.cfg.horizon
    alive = torch.ones(len(tasks), dtype=torch.bool)
    steps: dict[str, list] = {n: [] for n in STEP_KEYS}
    real_steps = 0
    policy.eval()
    for _ in range(-(-max_steps // H)):
        chunk = policy.sample(obs, generator)
        log_prob = chunk_log_prob(policy, obs, chunk)
        solved = np.zeros(len(tasks), bool)
        waypoints = torch.cat([chunk[..., :2].clamp(0, 1), chunk[..., 2:]], -1).numpy()
        for h in range(H):
            hold = ~alive.numpy() | solved
            here = np.concatenate([sim.gripper, sim.grip[:, None]], 1)
            next_obs, success = sim.step(np.where(hold[:, None], here, waypoints[:, h]))
            solved |= success
        real_steps += H * int(alive.sum())
        success = torch.as_tensor(solved) & alive
        for name, value in (("state", obs["state"]), ("head", obs["head"]), ("wrist", obs["wrist"]),
                            ("chunk", chunk), ("log_prob", log_prob), ("reward", success.float()),
                            ("done", success), ("alive", alive.clone())):
            steps[name].append(value)
        alive = alive & ~success
        obs = as_tensors(next_obs)
        if not alive.any():
            break
    out = {name: torch.stack(values) for name, values in steps.items()}
    out["last"] = obs
    out["instruction"] = instruction
    out["real_steps"] = real_steps
    return out


@dataclass(frozen=True)
class PPOConfig:
    """Chunk-level PPO. Clip, gamma and lambda are VLA-MBPO's; the rest is our choice for a small policy."""

    lr: float = 3e-5
    value_lr: float = 1e-3
    clip: float = 0.1
    gamma: float = 0.99
    lam: float = 0.95
    epochs: int = 4
    minibatch: int = 64
    kl_coef: float = 0.0          # KL(pi || pi_BC) penalty (the paper: none)
    grad_clip: float = 1.0
    value_hidden: int = 256


class ChunkPPO:
    """PPO over whole chunks for a ``ChunkPolicy``, with a min-of-two value on the policy's (detached) features.

        batch = ppo.transitions(rollout)      # live steps, GAE advantages and returns
        stats = ppo.update(batch)             # clipped-ratio policy steps, value regression
    """

    def __init__(self, policy: ChunkPolicy, cfg: PPOConfig = PPOConfig(), seed: int = 0):
        self.policy, self.cfg = policy, cfg
        torch.manual_seed(seed)
        self.value = TwinValue(policy.feature_dim, cfg.value_hidden)
        self.reference = copy.deepcopy(policy).requires_grad_(False) if cfg.kl_coef > 0 else None
        self.policy_opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.value_lr)
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def _values(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.value.value(self.policy.features(obs))

    @torch.no_grad()
    def transitions(self, rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The rollout's live steps, flattened, with GAE advantages and returns (bootstrapped from ``last``)."""
        T, B = rollout["reward"].shape
        obs = {k: rollout[k].flatten(0, 1) for k in ("state", "head", "wrist")}
        obs["instruction"] = rollout["instruction"].repeat(T, 1)
        self.policy.eval()
        values = torch.cat([self._values(obs).view(T, B), self._values(rollout["last"])[None]])
        advantages, returns = gae(rollout["reward"], values, rollout["done"], self.cfg.gamma, self.cfg.lam,
                                  rollout["alive"])
        keep = rollout["alive"].flatten()
        batch = {**obs, "chunk": rollout["chunk"].flatten(0, 1), "log_prob": rollout["log_prob"].flatten(),
                 "advantage": advantages.flatten(), "return": returns.flatten()}
        return {k: v[keep] for k, v in batch.items()}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        n = len(batch["advantage"])
        advantage = (batch["advantage"] - batch["advantage"].mean()) / (batch["advantage"].std() + 1e-8) \
            if n > 1 else batch["advantage"]
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "clip_fraction": 0.0, "approx_kl": 0.0}
        updates = 0
        self.policy.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(n, generator=self.generator)
            for i in range(0, n, cfg.minibatch):
                idx = order[i: i + cfg.minibatch]
                obs = {k: batch[k][idx] for k in OBS}
                log_prob = chunk_log_prob(self.policy, obs, batch["chunk"][idx])
                loss = ppo_clip_loss(log_prob, batch["log_prob"][idx], advantage[idx], cfg.clip)
                if self.reference is not None:
                    loss = loss + cfg.kl_coef * chunk_kl(self.policy, self.reference, obs).mean()
                self.policy_opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
                self.policy_opt.step()
                with torch.no_grad():
                    features = self.policy.features(obs)
                    log_ratio = log_prob.detach() - batch["log_prob"][idx]
                value_loss = self.value.loss(features, batch["return"][idx])
                self.value_opt.zero_grad()
                value_loss.backward()
                self.value_opt.step()
                stats["policy_loss"] += loss.item()
                stats["value_loss"] += value_loss.item()
                stats["clip_fraction"] += float(((log_ratio.exp() - 1).abs() > cfg.clip).float().mean())
                stats["approx_kl"] += float(((log_ratio.exp() - 1) - log_ratio).mean())
                updates += 1
        self.policy.eval()
        return {k: v / max(updates, 1) for k, v in stats.items()}


def sample_starts(pools: list[dict[str, torch.Tensor]], weights: list[float], n: int,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``n`` start observations drawn from the non-empty pools in proportion to ``weights``."""
    live = [(p, w) for p, w in zip(pools, weights, strict=True) if p and len(p["state"]) and w > 0]
    if not live:
        raise ValueError("no start states to branch from")
    probs = torch.tensor([w for _, w in live], dtype=torch.float)
    which = torch.multinomial(probs / probs.sum(), n, replacement=True, generator=generator)
    parts = []
    for j, (pool, _) in enumerate(live):
        m = int((which == j).sum())
        if m:
            idx = torch.randint(len(pool["state"]), (m,), generator=generator)
            parts.append({k: pool[k][idx] for k in OBS})
    return {k: torch.cat([p[k] for p in parts]) for k in OBS}


def demo_starts(demos: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Branch starts from demonstration arrays: every frame, and each episode's first frame."""
    pool = {k: torch.as_tensor(demos[k]) for k in ("state", "head", "wrist")}
    pool["instruction"] = torch.as_tensor(demos["instruction"][demos["episode"]])
    first = np.flatnonzero(np.r_[True, demos["episode"][1:] != demos["episode"][:-1]])
    return pool, {k: v[torch.as_tensor(first)] for k, v in pool.items()}


def live_starts(rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The observations at which a rollout's live chunks started (new branch starts)."""
    T = rollout["reward"].shape[0]
    keep = rollout["alive"].flatten()
    obs = {k: rollout[k].flatten(0, 1)[keep] for k in ("state", "head", "wrist")}
    obs["instruction"] = rollout["instruction"].repeat(T, 1)[keep]
    return obs


@dataclass(frozen=True)
class LoopConfig:
    """How VLA-MBPO's loop imagines: branch length, PPO iterations per round, start mix, data retention."""

    branch_chunks: int = 2          # k (the paper: 2-3); 0 = full-horizon branches from first frames, never cut
    iterations_per_round: int = 60  # PPO iterations on imagined data per round
    imagined_chunks: int = 64       # per iteration (branches = this // k)
    full_horizon: int = 10          # chunks a full-horizon branch runs
    own_start_fraction: float = 0.5 # branch starts from the policy's own real chunk starts, once there are some
    retain_epochs: int = 1          # PPO is on-policy: imagined data lives one iteration
    refit_steps: int = 0            # ours, off by default: world-model steps on the real chunks after each round
    refit_real_share: float = 0.5   # share of each refit batch drawn from the policy's real chunks
    reward: str = "threshold"       # or "probability" (ours): see branched_rollouts


class ImaginedPPO:
    """VLA-MBPO's improvement loop for one policy (``docs/vla_mbpo.md``, "The loop"):

        loop.add_real(real_rollouts(policy, tasks))           # the round's real-step budget (the caller's)
            own pool <- own pool + real chunk starts
        loop.improve():  repeat iterations_per_round
            k <- MBPO schedule (1 -> k over the first round)
            starts <- imagined_chunks / k frames, from the demonstrations and the own pool
            branch <- k chunks in the world model (success reward, cut above max_uncertainty)
            PPO on the branch's live steps

    With ``cfg.refit_steps`` (**ours**, not the paper's), ``add_real`` also trains the world
    model on the policy's real chunks so far (``real_transitions``: the suite's success labels)
    mixed with the demonstrations' ``demo_transitions``, as MBPO retrains its model on real
    data: a success head trained on demonstrations alone rewards the policy's imagined chunks
    far more often than the suite does (docs/vla_mbpo.md). It changes ``world_model`` in place.

    ``state_dict()`` holds everything the next round needs (policy, value, optimisers, samplers,
    pools, the refit world model), so a run can stop and resume at a round boundary with the same numbers.
    """

    def __init__(self, policy: ChunkPolicy, world_model: PixelWorldModel, max_uncertainty: float,
                 demo_pool: dict[str, torch.Tensor], demo_first: dict[str, torch.Tensor], cfg: LoopConfig,
                 ppo_cfg: PPOConfig, seed: int, demo_transitions: dict[str, torch.Tensor] | None = None):
        if cfg.refit_steps and demo_transitions is None:
            raise ValueError("refit_steps needs the demonstrations' world-model transitions (demo_transitions)")
        self.policy, self.world_model, self.cfg = policy, world_model, cfg
        self.full = cfg.branch_chunks == 0
        self.max_uncertainty = float("inf") if self.full else max_uncertainty
        self.demo_pool, self.demo_first = demo_pool, demo_first
        self.ppo = ChunkPPO(policy, ppo_cfg, seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.schedule = BranchSchedule(min_k=1, max_k=max(cfg.branch_chunks, 1), start_epoch=0,
                                       end_epoch=cfg.iterations_per_round)
        self.buffer = ImaginedBuffer(cfg.retain_epochs)
        self.own: dict[str, torch.Tensor] = {}
        self.own_first: dict[str, torch.Tensor] = {}
        self.demo_transitions = demo_transitions
        self.real_transitions: dict[str, torch.Tensor] = {}
        self.epoch = 0

    def add_real(self, real: dict[str, torch.Tensor]) -> None:
        """The real episodes' chunk starts (and first frames, for full-horizon branches) become branch starts."""
        self.own = _concat(self.own, live_starts(real))
        self.own_first = _concat(self.own_first, {**{k: real[k][0] for k in ("state", "head", "wrist")},
                                                  "instruction": real["instruction"]})
        if self.cfg.refit_steps:
            new = real_transitions(self.world_model, real)
            self.real_transitions = {k: torch.cat([self.real_transitions[k], v]) if self.real_transitions else v
                                     for k, v in new.items()}
            share = self.cfg.refit_real_share
            self.world_model.fine_tune([self.demo_transitions, self.real_transitions], [1 - share, share],
                                       self.cfg.refit_steps, self.generator)

    def improve(self) -> dict:
        """One round's PPO iterations on imagined branches: mean branch reward, branch lengths, last PPO stats."""
        cfg, f = self.cfg, self.cfg.own_start_fraction
        branch_success, lengths, stats = [], [], {}
        for _ in range(cfg.iterations_per_round):
            length = cfg.full_horizon if self.full else self.schedule.length(self.epoch)
            n = max(1, cfg.imagined_chunks // length)
            pools = [self.demo_first, self.own_first] if self.full else [self.demo_pool, self.own]
            starts = sample_starts(pools, [1 - f, f], n, self.generator)
            branch = branched_rollouts(self.policy, self.world_model, starts, length, self.max_uncertainty,
                                       generator=self.generator, reward=cfg.reward)
            branch_success.append(float(branch["reward"].sum(0).mean()))
            lengths.append(float(branch["alive"].float().sum(0).mean()))
            self.buffer.prune(self.epoch)
            self.buffer.add(self.ppo.transitions(branch), self.epoch)
            stats = self.ppo.update(self.buffer.data)
            self.epoch += 1
        return {"branch_success": float(np.mean(branch_success)), "lengths": lengths, "stats": stats}

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "value": self.ppo.value.state_dict(),
                "policy_opt": self.ppo.policy_opt.state_dict(), "value_opt": self.ppo.value_opt.state_dict(),
                "ppo_generator": self.ppo.generator.get_state(), "generator": self.generator.get_state(),
                "own": self.own, "own_first": self.own_first, "buffer": self.buffer.data,
                "born": self.buffer.born, "epoch": self.epoch,
                **({"world_model": self.world_model.state_dict(), "real_transitions": self.real_transitions}
                   if self.cfg.refit_steps else {})}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.ppo.value.load_state_dict(state["value"])
        self.ppo.policy_opt.load_state_dict(state["policy_opt"])
        self.ppo.value_opt.load_state_dict(state["value_opt"])
        self.ppo.generator.set_state(state["ppo_generator"])
        self.generator.set_state(state["generator"])
        self.own, self.own_first = dict(state["own"]), dict(state["own_first"])
        self.buffer.data, self.buffer.born = dict(state["buffer"]), state["born"]
        self.epoch = int(state["epoch"])
        if self.cfg.refit_steps:
            self.world_model.load_state_dict(state["world_model"])
            self.real_transitions = dict(state["real_transitions"])


@torch.no_grad()
def real_transitions(world_model: PixelWorldModel, real: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The live chunks of ``real_rollouts`` as tokenized world-model transitions (``token_transitions``' layout):
    each chunk's start frames, the next chunk's start frames (``last`` after the final one) as its end frames,
    and the suite's success as the label."""
    T = real["reward"].shape[0]
    keep = real["alive"].flatten()
    now = {k: real[k].flatten(0, 1)[keep] for k in ("state", "head", "wrist", "chunk")}
    after = {k: torch.cat([real[k][1:], real["last"][k][None]]).flatten(0, 1)[keep] for k in ("head", "wrist")}
    head_now, wrist_now = world_model.tokenize(now["head"], now["wrist"])
    head_next, wrist_next = world_model.tokenize(after["head"], after["wrist"])
    return {"instruction": real["instruction"].repeat(T, 1)[keep], "chunk": now["chunk"].float(),
            "proprio": now["state"][:, :PROPRIO], "head_now": head_now, "wrist_now": wrist_now,
            "head_next": head_next, "wrist_next": wrist_next, "solved": real["reward"].flatten()[keep].float()}


def _concat(pool: dict[str, torch.Tensor], more: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([pool[k], more[k]]) for k in OBS} if pool else dict(more)
