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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.embodied.pixel_world_model import PixelWorldModel, gripper_from_head
from nanorepro.embodied.policy import ChunkPolicy
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
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over chunk steps (Schulman et al. 2016).

    delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t;  A_t = delta_t + gamma lam (1 - d_t) A_{t+1}.
    ``values`` has T + 1 rows (the last bootstraps a branch cut short). Returns (A, A + V).
    """
    T = rewards_TB.shape[0]
    advantages = torch.zeros_like(rewards_TB)
    running = torch.zeros_like(rewards_TB[0])
    for t in reversed(range(T)):
        live = 1.0 - dones_TB[t].float()
        delta = rewards_TB[t] + gamma * values_T1B[t + 1] * live - values_T1B[t]
        running = delta + gamma * lam * live * running
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


@torch.no_grad()
def branched_rollouts(policy: ChunkPolicy, world_model: PixelWorldModel, starts: dict[str, torch.Tensor], k: int,
                      max_uncertainty: float, control_dt: float = 0.1, success_threshold: float = 0.5,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Roll ``k`` chunks from each start (state, head, wrist, instruction) inside the pixel world model.

    Each chunk is sampled from the policy; the world model predicts both views at its end,
    a success logit (reward 1 and the branch ends when its probability exceeds
    ``success_threshold``) and an uncertainty (the branch is cut, to be bootstrapped by the
    critic, once it exceeds ``max_uncertainty``). Proprioception in imagination, **ours**
    (the paper holds it fixed): the gripper is decoded from the predicted head view, the
    grip is the chunk's last command, the velocity the chunk's mean displacement rate.
    Returns (k, B, ...) tensors: the observations each chunk started from, ``chunk``,
    ``log_prob``, ``reward``, ``done``, ``alive`` (the step is part of the branch) and
    ``uncertainty``, plus ``last`` — the observations after the final chunk (for bootstrapping).
    """
    if policy.cfg.privileged_state:
        raise ValueError("imagined rollouts have no object poses: the policy must not read the privileged state")
    obs = {k_: starts[k_] for k_ in ("state", "head", "wrist")}
    instruction = starts["instruction"]
    B = len(instruction)
    alive = torch.ones(B, dtype=torch.bool)
    steps: dict[str, list] = {n: [] for n in ("state", "head", "wrist", "chunk", "log_prob", "reward", "done",
                                              "alive", "uncertainty")}
    for _ in range(k):
        current = {**obs, "instruction": instruction}
        chunk = policy.sample(current, generator)
        log_prob = chunk_log_prob(policy, current, chunk)
        head, wrist, logit, uncertainty = world_model.predict(obs, instruction, chunk)
        success = (logit.sigmoid() > success_threshold) & alive
        for name, value in (("state", obs["state"]), ("head", obs["head"]), ("wrist", obs["wrist"]),
                            ("chunk", chunk), ("log_prob", log_prob), ("reward", success.float()),
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
