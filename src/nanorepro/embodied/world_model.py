"""Chunk-level state world model: (state, instruction, H-waypoint chunk) -> end-of-chunk state, success logit.

An ensemble of Gaussian MLPs (``rl.ensemble.GaussianEnsemble``, PETS-style) predicts the
change of the state over the chunk; an ensemble of MLP heads gives a success logit per
member. The instruction enters as one-hot words by position (no learned text encoder).
Uncertainty is the members' disagreement: the std of their mean predictions, averaged
over state dimensions. Training reuses ``fit_ensemble`` (each member its own shuffle,
best validation weights kept); the loss adds the success heads' binary cross-entropy to
the members' regression loss (squared error by default; the ensemble's Gaussian NLL as
an option).

    predict(state, instruction, chunk) -> (next state, success logit, uncertainty)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.envs.tabletop import MAX_WORDS, VOCAB
from nanorepro.nn.mlp import EnsembleMLP
from nanorepro.rl.ensemble import EnsembleConfig, GaussianEnsemble, fit_ensemble

N_TOKENS = len(VOCAB) + 2


def chunk_starts(episode: np.ndarray, horizon: int) -> np.ndarray:
    """Rows t whose row t + H is in the same episode (so the chunk's end state was observed)."""
    start = np.arange(len(episode) - horizon)
    return start[episode[start] == episode[start + horizon]]


def demo_chunks(data: dict[str, np.ndarray], horizon: int) -> dict[str, np.ndarray]:
    """Held-out demonstration chunk transitions in the layout ``rollout(record=True)`` returns."""
    episode = data["episode"]
    start = chunk_starts(episode, horizon)
    out = {k: data[k][start] for k in ("state", "head", "wrist")}
    out.update({f"next_{k}": data[k][start + horizon] for k in ("state", "head", "wrist")})
    out["instruction"] = data["instruction"][episode[start]]
    out["chunk"] = data["action"][start[:, None] + np.arange(horizon)]
    out["solved"] = data["solved"][start + horizon - 1]
    return out


def chunk_transitions(data: dict[str, np.ndarray], horizon: int) -> dict[str, torch.Tensor]:
    """Every (state_t, instruction, actions t..t+H-1, state_{t+H} - state_t, solved after t+H-1) inside an episode."""
    episode = data["episode"]
    start = chunk_starts(episode, horizon)
    chunks = data["action"][start[:, None] + np.arange(horizon)]
    return {
        "state": torch.as_tensor(data["state"][start]),
        "instruction": torch.as_tensor(data["instruction"][episode[start]]),
        "chunk": torch.as_tensor(chunks),
        "delta": torch.as_tensor(data["state"][start + horizon] - data["state"][start]),
        "solved": torch.as_tensor(data["solved"][start + horizon - 1]).float(),
    }


def features(state: torch.Tensor, instruction: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
    words = F.one_hot(instruction, N_TOKENS).float().flatten(1)
    return torch.cat([state, words, chunk.flatten(1)], 1)


@dataclass(frozen=True)
class WorldModelConfig:
    ensemble: EnsembleConfig = EnsembleConfig(members=5, elites=5, hidden=256, layers=3, max_steps=3000,
                                              eval_every=250)
    success_hidden: int = 128
    # "mse": members regress the mean (uncertainty = their disagreement); "nll": Gaussian NLL as in PETS.
    # scripts/pilot_tabletop_world_model.py (25 demonstrations, 1,000 steps): NLL drives log-stds to
    # their floor on easy dimensions and ends at 0.97x the no-change state error; MSE at 0.03x.
    loss: str = "mse"


class StateWorldModel(nn.Module):
    def __init__(self, state_dim: int, horizon: int, cfg: WorldModelConfig = WorldModelConfig(), action_dim: int = 3):
        super().__init__()
        if cfg.loss not in ("mse", "nll"):
            raise ValueError(f"unknown world-model loss '{cfg.loss}' (mse or nll)")
        in_dim = state_dim + MAX_WORDS * N_TOKENS + action_dim * horizon
        self.cfg = cfg
        self.dynamics = GaussianEnsemble(in_dim, state_dim, cfg.ensemble)
        self.success = EnsembleMLP(cfg.ensemble.members, in_dim, cfg.success_hidden, 1, layers=2)

    def success_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(E, B) logits from standardised inputs."""
        return self.success((x - self.dynamics.x_mean) / self.dynamics.x_std).squeeze(-1)

    def fit(self, train: dict[str, torch.Tensor], valid: dict[str, torch.Tensor], seed: int = 0, on_step=None) -> dict:
        def pack(d):
            return {"x": features(d["state"], d["instruction"], d["chunk"]), "y": d["delta"], "solved": d["solved"]}

        train_xy, valid_xy = pack(train), pack(valid)
        self.dynamics.set_normalisation(train_xy["x"], train_xy["y"])

        def loss(model: GaussianEnsemble, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            bce = F.binary_cross_entropy_with_logits(self.success_logits(batch["x"]), batch["solved"],
                                                     reduction="none").mean(-1)
            if self.cfg.loss == "nll":
                return (model.nll(batch["x"], batch["y"]) + bce).sum() + model.bound_penalty()
            return (model.mse(batch["x"], batch["y"]) + bce).sum()

        return fit_ensemble(self.dynamics, train_xy, valid_xy, loss_fn=loss, module=self,
                            generator=torch.Generator().manual_seed(seed), on_step=on_step)

    @torch.no_grad()
    def predict(self, state: torch.Tensor, instruction: torch.Tensor, chunk: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Elite-mean next state (B, S), mean success logit (B,), disagreement (B,)."""
        x = features(state, instruction, chunk)
        mean, _ = self.dynamics(x)
        elites = self.dynamics.elite_idx
        mean = mean[elites]
        logit = self.success_logits(x)[elites].mean(0)
        return state + mean.mean(0), logit, mean.std(0).mean(-1)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counted half."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    order = np.argsort(np.concatenate([pos, neg]), kind="stable")
    ranks = np.empty(len(order))
    sorted_scores = np.concatenate([pos, neg])[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0
    ranks[order] = np.repeat(avg, counts) + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
