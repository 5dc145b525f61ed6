"""Probabilistic ensemble dynamics models (PETS, Chua et al. 2018; as used by MBPO and MOPO).

Each of E members predicts a diagonal Gaussian N(mu_i(x), sigma_i(x)^2) over targets y.
Inputs and targets are standardised with the training data's statistics; log sigma is
soft-bounded by learned limits (PETS' max/min log-variance trick):

    log s = max - softplus(max - h),  log s = min + softplus(log s - min)
    L_i   = E[(mu_i - y)^2 / s_i^2 + 2 log s_i] + 0.01 (sum max - sum min)     (standardised units)

Training (``fit_ensemble``): every member sees its own shuffle of the data; the weights
with the lowest mean validation error are kept, training stops when it has not improved
by more than 1% for ``patience`` checks (MBPO's rule, applied to the ensemble as a whole
so that modules shared by all members stay consistent), and the ``elites`` members with
the lowest validation error at that point are used for predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nanorepro.nn.mlp import EnsembleMLP


@dataclass(frozen=True)
class EnsembleConfig:
    members: int = 7
    elites: int = 5
    hidden: int = 200
    layers: int = 4
    lr: float = 1e-3
    weight_decay: float = 2.5e-5
    batch_size: int = 256
    max_steps: int = 20000  # gradient steps, at most
    eval_every: int = 250  # steps between validation checks
    patience: int = 5  # checks without a >1% improvement of any member before stopping


class GaussianEnsemble(nn.Module):
    """x (B, in) or (E, B, in) in raw units -> mean, log-std (E, B, out) in raw units."""

    def __init__(self, in_dim: int, out_dim: int, config: EnsembleConfig = EnsembleConfig()):
        super().__init__()
        self.config = config
        self.net = EnsembleMLP(config.members, in_dim, config.hidden, 2 * out_dim, config.layers)
        self.max_logstd = nn.Parameter(torch.full((out_dim,), 0.5))
        self.min_logstd = nn.Parameter(torch.full((out_dim,), -5.0))
        for name, dim in (("x_mean", in_dim), ("y_mean", out_dim)):
            self.register_buffer(name, torch.zeros(dim))
        for name, dim in (("x_std", in_dim), ("y_std", out_dim)):
            self.register_buffer(name, torch.ones(dim))
        self.register_buffer("elite_idx", torch.arange(config.elites))

    def set_normalisation(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x_mean.copy_(x.mean(0))
        self.x_std.copy_(x.std(0).clamp_min(1e-6))
        self.y_mean.copy_(y.mean(0))
        self.y_std.copy_(y.std(0).clamp_min(1e-6))

    def forward_normalised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std in standardised target units."""
        h = self.net((x - self.x_mean) / self.x_std)
        mean, logstd = h.chunk(2, dim=-1)
        logstd = self.max_logstd - nn.functional.softplus(self.max_logstd - logstd)
        logstd = self.min_logstd + nn.functional.softplus(logstd - self.min_logstd)
        return mean, logstd

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logstd = self.forward_normalised(x)
        return mean * self.y_std + self.y_mean, logstd + self.y_std.log()

    def nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member Gaussian NLL (up to constants) in standardised units, shape (E,)."""
        mean, logstd = self.forward_normalised(x)
        y = (y - self.y_mean) / self.y_std
        return (((mean - y) * torch.exp(-logstd)) ** 2 + 2 * logstd).mean(dim=(-2, -1))

    def mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member squared error of the mean, standardised units, shape (E,)."""
        mean, _ = self.forward_normalised(x)
        return ((mean - (y - self.y_mean) / self.y_std) ** 2).mean(dim=(-2, -1))

    def bound_penalty(self) -> torch.Tensor:
        return 0.01 * (self.max_logstd.sum() - self.min_logstd.sum())


LossFn = Callable[[GaussianEnsemble, dict[str, torch.Tensor]], torch.Tensor]


def one_step_loss(model: GaussianEnsemble, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.nll(batch["x"], batch["y"]).sum() + model.bound_penalty()


def one_step_error(model: GaussianEnsemble, data: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.mse(data["x"], data["y"])


def fit_ensemble(
    ensemble: GaussianEnsemble,
    train: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor],
    *,
    loss_fn: LossFn = one_step_loss,
    val_error: Callable[[GaussianEnsemble, dict[str, torch.Tensor]], torch.Tensor] = one_step_error,
    module: nn.Module | None = None,
    generator: torch.Generator | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Train all members (each on its own shuffle), keep the best weights, pick the elites.

    ``train``/``val`` map names to tensors whose first dimension indexes samples; ``loss_fn``
    receives batches shaped (E, B, ...). ``module`` (default: the ensemble) owns every trained
    parameter, e.g. the ensemble plus a context encoder. Returns the validation curve.
    """
    cfg = ensemble.config
    module = ensemble if module is None else module
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(next(iter(train.values())))
    best_mean, best_error = float("inf"), torch.full((cfg.members,), float("inf"))
    best_state = {k: v.clone() for k, v in module.state_dict().items()}
    curve, stale, step = [], 0, 0
    while step < cfg.max_steps:
        idx = torch.randint(0, n, (cfg.members, cfg.batch_size), generator=generator)
        loss = loss_fn(ensemble, {k: v[idx] for k, v in train.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if on_step is not None:
            on_step(step)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            with torch.no_grad():
                error = val_error(ensemble, val).cpu()
            curve.append({"step": step, "val_error": error.tolist()})
            if error.mean().item() < best_mean * 0.99:
                best_mean, best_error, stale = error.mean().item(), error, 0
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    module.load_state_dict(best_state)
    ensemble.elite_idx.copy_(torch.argsort(best_error)[: cfg.elites])
    return {"curve": curve, "steps": step, "best_val_error": best_error.tolist(), "elites": ensemble.elite_idx.tolist()}
