"""A small ACT-style chunked policy: both views + instruction + gripper state -> a Gaussian over H waypoints.

Our laptop-scale stand-in for a VLA: a CNN per view (three stride-2 convolutions), the
instruction's word embeddings with learned positions flattened in order (word order
matters: "red left of blue" is not "blue left of red"), the gripper's proprioception
(x, y, grip, velocity); an MLP maps their concatenation to the mean and log-std of the
next H waypoints. Trained by behaviour cloning (Gaussian negative log-likelihood of the
demonstrated chunk, which starts at every step of every demonstration); executed open
loop chunk by chunk, grip > 0.5 closes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.envs.tabletop import MAX_WORDS, VOCAB, Tabletop, TabletopConfig, Task
from nanorepro.nn.mlp import mlp

PROPRIO = 5  # gripper x, y, grip, vx, vy: the first entries of the state


@dataclass(frozen=True)
class PolicyConfig:
    horizon: int = 8
    view_size: int = 32
    channels: int = 32
    word_dim: int = 16
    hidden: int = 256
    min_log_std: float = -5.0
    max_log_std: float = 1.0


class ViewEncoder(nn.Module):
    def __init__(self, size: int, channels: int, out: int):
        super().__init__()
        c = channels
        self.conv = nn.Sequential(nn.Conv2d(3, c // 2, 3, 2, 1), nn.ReLU(), nn.Conv2d(c // 2, c, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, 2, 1), nn.ReLU(), nn.Flatten())
        self.proj = nn.Linear(c * (-(-size // 8)) ** 2, out)

    def forward(self, images_BHWC: torch.Tensor) -> torch.Tensor:
        x = images_BHWC.permute(0, 3, 1, 2).float() / 255.0
        return self.proj(self.conv(x))


class ChunkPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig = PolicyConfig()):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden // 2
        self.head = ViewEncoder(cfg.view_size, cfg.channels, d)
        self.wrist = ViewEncoder(cfg.view_size, cfg.channels, d)
        self.words = nn.Embedding(len(VOCAB) + 2, cfg.word_dim)
        self.word_pos = nn.Parameter(torch.zeros(MAX_WORDS, cfg.word_dim))
        self.out = mlp(2 * d + MAX_WORDS * cfg.word_dim + PROPRIO, cfg.hidden, 2 * cfg.horizon * 3, layers=2)

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std), each (B, H, 3)."""
        words = (self.words(obs["instruction"]) + self.word_pos).flatten(1)
        features = torch.cat([self.head(obs["head"]), self.wrist(obs["wrist"]), words,
                              obs["state"][:, :PROPRIO]], 1)
        mean, log_std = self.out(features).view(-1, 2, self.cfg.horizon, 3).unbind(1)
        return mean, log_std.clamp(self.cfg.min_log_std, self.cfg.max_log_std)

    def loss(self, obs: dict[str, torch.Tensor], chunk: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL of the demonstrated chunk (B, H, 3), summed over the chunk, mean over the batch."""
        mean, log_std = self(obs)
        return (0.5 * ((chunk - mean) / log_std.exp()) ** 2 + log_std).sum((1, 2)).mean()

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        mean, _ = self(as_tensors(obs))
        return mean.clamp(0.0, 1.0).numpy()


def as_tensors(obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(obs[k]) for k in ("state", "head", "wrist", "instruction")}


def chunk_targets(action: np.ndarray, episode: np.ndarray, horizon: int) -> np.ndarray:
    """(N, H, 3): for every step, the next H demonstrated waypoints of its episode (padded with its last)."""
    n = len(action)
    last = np.searchsorted(episode, episode, side="right") - 1   # index of each row's episode end
    index = np.minimum(np.arange(n)[:, None] + np.arange(horizon)[None], last[:, None])
    return action[index]


def demo_tensors(data: dict[str, np.ndarray], horizon: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-step observations (the episode's instruction on every row) and the chunk targets."""
    obs = {k: torch.as_tensor(data[k]) for k in ("state", "head", "wrist")}
    obs["instruction"] = torch.as_tensor(data["instruction"][data["episode"]])
    return obs, torch.as_tensor(chunk_targets(data["action"], data["episode"], horizon))


def train_bc(policy: ChunkPolicy, data: dict[str, np.ndarray], steps: int, batch_size: int = 64, lr: float = 3e-4,
             seed: int = 0, on_step=None) -> list[float]:
    """Behaviour cloning on demonstration arrays (``demos.load_demos`` format); returns the loss curve."""
    gen = torch.Generator().manual_seed(seed)
    obs, targets = demo_tensors(data, policy.cfg.horizon)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=1e-4)
    curve = []
    for step in range(steps):
        batch = torch.randint(len(targets), (batch_size,), generator=gen)
        loss = policy.loss({k: v[batch] for k, v in obs.items()}, targets[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(loss.item())
        if on_step:
            on_step(step)
    return curve


def evaluate(policy: ChunkPolicy, tasks: list[Task], seed: int, max_steps: int = 300,
             config: TabletopConfig | None = None) -> np.ndarray:
    """Success of each task when the policy runs chunk by chunk (open loop within a chunk)."""
    config = config or TabletopConfig(view_size=policy.cfg.view_size)
    sim = Tabletop(len(tasks), config)
    obs = sim.reset(tasks, np.random.default_rng(seed))
    solved = np.zeros(len(tasks), bool)
    policy.eval()
    for _ in range(-(-max_steps // policy.cfg.horizon)):
        chunk = policy.act(obs)
        for h in range(policy.cfg.horizon):
            waypoint = np.where(solved[:, None], np.concatenate([sim.gripper, sim.grip[:, None]], 1), chunk[:, h])
            obs, success = sim.step(np.concatenate([waypoint[:, :2], (waypoint[:, 2:] > 0.5)], 1))
            solved |= success
        if solved.all():
            break
    return solved


def bc_quality(policy: ChunkPolicy, data: dict[str, np.ndarray]) -> float:
    """Mean squared error of the predicted chunk means on the given demonstrations."""
    obs, targets = demo_tensors(data, policy.cfg.horizon)
    with torch.no_grad():
        mean, _ = policy(obs)
    return float(F.mse_loss(mean, targets))
