"""ReinVBC (Lin, Zhou, Xu, Yu; arXiv 2604.04401): offline model-based RL for vehicle braking control.

Only the paper's abstract was available; this is our reconstruction from its anchors
(MOPO, MOReL, MAPLE, MBPO, OfflineRL-Kit) and the notes in docs/reinvbc.md:

1. learn a stop model from logs (``nanorepro.braking.model``: physics structure, history,
   stop context, multi-step loss; a probabilistic ensemble with elites);
2. train a SAC policy whose input is the recent measurement history, on whole imagined
   stops that start from real initial conditions, one ensemble member per stop, with an
   uncertainty penalty (MOPO) and/or a halt on disagreement (MOReL), plus a share of real
   logged transitions;
3. select the checkpoint with a second, independently trained ensemble (another seed and
   another train/validation split); the true simulator is never used for training or selection.

Baselines learned from the same logs: behaviour cloning, and vanilla MOPO (a generic
one-step model, no history, 5-step branched roll-outs, penalty 1).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from nanorepro.braking.data import BrakingDataset, histories
from nanorepro.braking.model import (
    ImaginedStops,
    Pessimism,
    StopModel,
    StopModelConfig,
    disagreement_quantile,
    features,
    stop_reward,
    stops_in_model,
)
from nanorepro.envs.braking import SimConfig
from nanorepro.nn.mlp import mlp
from nanorepro.rl.ensemble import EnsembleConfig
from nanorepro.rl.replay import ReplayBuffer
from nanorepro.rl.sac import SAC, SACConfig, TanhGaussianActor

# --------------------------------------------------------------------------- policy input and controllers


class PolicyInput(nn.Module):
    """Policy observation: the model's history features without the command, standardised."""

    def __init__(self, history: int, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        super().__init__()
        dim = 5 * history
        self.history = history
        self.register_buffer("mean", torch.zeros(dim) if mean is None else mean)
        self.register_buffer("std", torch.ones(dim) if std is None else std)

    @classmethod
    def fit(cls, ds: BrakingDataset, history: int) -> PolicyInput:
        x = cls.raw(torch.from_numpy(histories(ds, history)))
        return cls(history, x.mean(0), x.std(0).clamp_min(1e-6))

    @staticmethod
    def raw(hist: torch.Tensor) -> torch.Tensor:
        return features(hist, torch.zeros(hist.shape[:-2]))[..., :-1]

    def forward(self, hist: torch.Tensor) -> torch.Tensor:
        return (self.raw(hist) - self.mean) / self.std


class LearnedController:
    """A trained policy as a ``Controller`` for the true simulator: keeps the measurement history."""

    def __init__(self, policy: Callable[[torch.Tensor], torch.Tensor], inputs: PolicyInput):
        self.policy, self.inputs = policy, inputs

    def reset(self, n: int, rng: np.random.Generator) -> None:
        self.hist = None

    @torch.no_grad()
    def act(self, meas: np.ndarray) -> np.ndarray:
        m = torch.as_tensor(meas, dtype=torch.float32)
        if self.hist is None:
            self.hist = m.unsqueeze(1).repeat(1, self.inputs.history, 1)
        else:
            self.hist = torch.cat([self.hist[:, 1:], m.unsqueeze(1)], dim=1)
        return self.policy(self.inputs(self.hist)).reshape(-1).clamp(0, 1).numpy().astype(np.float64)


# --------------------------------------------------------------------------- behaviour cloning


@dataclass(frozen=True)
class BCConfig:
    history: int = 4
    hidden: int = 128
    steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256


def fit_bc(ds: BrakingDataset, cfg: BCConfig, generator: torch.Generator) -> LearnedController:
    """Regress the logged command on the history: u = sigmoid(f(obs)), squared error."""
    inputs = PolicyInput.fit(ds, cfg.history)
    x = inputs(torch.from_numpy(histories(ds, cfg.history)))
    y = torch.from_numpy(ds.action)
    net = mlp(x.shape[1], cfg.hidden, 1, layers=2)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(x), (cfg.batch_size,), generator=generator)
        loss = ((torch.sigmoid(net(x[idx]).squeeze(-1)) - y[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return LearnedController(lambda obs: torch.sigmoid(net(obs)), inputs)


# --------------------------------------------------------------------------- SAC in the model


@dataclass(frozen=True)
class PolicyTrainConfig:
    updates: int = 40000  # SAC updates (one per imagined step of the whole batch of stops)
    rollout_batch: int = 64  # imagined stops run in parallel
    max_stop_steps: int = 3000  # truncation of an imagined stop (30 s)
    branch_steps: int | None = None  # None: whole stops (ReinVBC); 5: MOPO's branched roll-outs
    real_ratio: float = 0.1  # share of logged transitions in each SAC batch
    warmup: int = 500  # imagined steps with uniform random commands before learning
    buffer: int = 200_000
    select_every: int = 2500  # updates between checkpoint evaluations in the selection model
    checkpoint_every: int = 2500
    sac: SACConfig = field(default_factory=lambda: SACConfig(hidden=128, gamma=0.99))
    pessimism: Pessimism = field(default_factory=Pessimism)
    sample: bool = False  # sample the model's noise into imagined states


def real_transitions(ds: BrakingDataset, inputs: PolicyInput, history: int, sim) -> dict[str, torch.Tensor]:
    """Logged transitions in the SAC buffer's format (reward recomputed analytically)."""
    hist = torch.from_numpy(histories(ds, history))
    nxt = torch.from_numpy(ds.next_obs)
    next_hist = torch.cat([hist[:, 1:], nxt.unsqueeze(1)], dim=1)
    u = torch.from_numpy(ds.action)
    return {"obs": inputs(hist), "act": u.unsqueeze(-1), "rew": stop_reward(hist[:, -1], nxt, u, sim),
            "next_obs": inputs(next_hist), "done": torch.from_numpy(ds.terminated).float()}


@dataclass
class PolicyResult:
    last_actor: dict  # state dicts of the actor at the end and at the selected checkpoint
    best_actor: dict
    curve: list[dict]  # training statistics and selection scores
    best_update: int


def controller(actor_state: dict, inputs: PolicyInput, sac: SACConfig) -> LearnedController:
    """A deterministic SAC actor (tanh mean) as a controller."""
    actor = TanhGaussianActor(inputs.mean.numel(), 1, torch.zeros(1), torch.ones(1), sac.hidden, sac.layers)
    actor.load_state_dict(actor_state)
    return LearnedController(actor.deterministic, inputs)


def train_policy(
    model: StopModel,
    starts: torch.Tensor,
    contexts: torch.Tensor | None,
    inputs: PolicyInput,
    real: dict[str, torch.Tensor] | None,
    cfg: PolicyTrainConfig,
    generator: torch.Generator,
    *,
    select: Callable[[LearnedController], float] | None = None,
    on_step: Callable[[int], None] | None = None,
    resume: dict | None = None,
    checkpoint: Callable[[dict], None] | None = None,
) -> PolicyResult:
    """SAC on imagined stops; ``select(controller) -> score`` (higher is better) picks the best checkpoint."""
    agent = SAC(inputs.mean.numel(), 1, [0.0], [1.0], cfg.sac)
    buffer = ReplayBuffer(cfg.buffer, {"obs": (inputs.mean.numel(),), "act": (1,), "rew": (), "next_obs":
                                       (inputs.mean.numel(),), "done": ()})
    max_steps = cfg.branch_steps or cfg.max_stop_steps
    stops = ImaginedStops(model, starts, contexts, cfg.rollout_batch, cfg.pessimism, generator, max_steps,
                          sample=cfg.sample)
    step, curve, best_score, best_update = 0, [], -float("inf"), 0
    best_actor = copy.deepcopy(agent.actor.state_dict())
    if resume is not None:
        agent.load_training_state(resume["agent"])
        buffer.load_state_dict(resume["buffer"])
        for name in ("hist", "member", "steps", "distance"):
            setattr(stops, name, resume["stops"][name])
        stops.z = resume["stops"].get("z")
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        step, curve, best_actor = resume["step"], resume["curve"], resume["best_actor"]
        best_score, best_update = resume["best_score"], resume["best_update"]
    n_real = int(round(cfg.sac.batch_size * cfg.real_ratio)) if real is not None else 0
    stats: dict[str, float] = {}
    while step < cfg.updates + cfg.warmup:
        obs = inputs(stops.hist)
        if step < cfg.warmup:
            u = torch.rand(cfg.rollout_batch, generator=generator)
        else:
            u = agent.act(obs).squeeze(-1)
        hist, reward, terminated, truncated, penalty = stops.step(u)
        buffer.add({"obs": obs, "act": u.unsqueeze(-1), "rew": reward, "next_obs": inputs(hist),
                    "done": terminated.float()})
        stops.reset_rows(terminated | truncated)
        step += 1
        if step > cfg.warmup:
            batch = buffer.sample(cfg.sac.batch_size - n_real, generator)
            if n_real:
                idx = torch.randint(0, len(real["obs"]), (n_real,), generator=generator)
                batch = {k: torch.cat([v, real[k][idx]]) for k, v in batch.items()}
            losses = agent.update(batch)
            updates = step - cfg.warmup
            if updates % 500 == 0:
                stats = {k: float(v) for k, v in losses.items()} | {"penalty": float(penalty.mean())}
            if select is not None and (updates % cfg.select_every == 0 or updates == cfg.updates):
                score = select(LearnedController(agent.actor.deterministic, inputs))
                curve.append({"update": updates, "selection_score": score, **stats})
                if score > best_score:
                    best_score, best_update = score, updates
                    best_actor = copy.deepcopy(agent.actor.state_dict())
            if checkpoint is not None and updates % cfg.checkpoint_every == 0 and updates < cfg.updates:
                checkpoint(copy.deepcopy({
                    "agent": agent.training_state(), "buffer": buffer.state_dict(),
                    "stops": {"hist": stops.hist, "member": stops.member, "steps": stops.steps,
                              "distance": stops.distance, "z": stops.z},
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                    "curve": curve, "best_score": best_score, "best_update": best_update,
                    "best_actor": best_actor}))
        if on_step is not None:
            on_step(step)
    return PolicyResult(copy.deepcopy(agent.actor.state_dict()), best_actor, curve, best_update)


def imagined_return(model: StopModel, ds: BrakingDataset, generator_seed: int, max_steps: int):
    """Selection score: the mean return of stops from ``ds``'s real starts, in ``model``."""
    def score(controller: LearnedController) -> float:
        _, returns = stops_in_model(controller, model, ds, np.random.default_rng(0),
                                    torch.Generator().manual_seed(generator_seed), max_steps)
        return float(returns.mean())
    return score


# --------------------------------------------------------------------------- the whole method, from logs


@dataclass(frozen=True)
class ReinVBCConfig:
    n_stops: int = 300  # logged stops (every 5th is validation)
    tune_speeds: int = 3  # initial speeds per training surface in the ABS grid search
    tune_grid: Literal["full", "small"] = "full"
    history: int = 4  # measurements in the model's and the policy's input
    unroll: int = 5  # multi-step model loss
    context_dim: int = 4
    members: int = 5
    elites: int = 3
    model_hidden: int = 200
    model_layers: int = 3
    model_steps: int = 3000  # ensemble gradient steps (at most; early stopping)
    updates: int = 30000  # SAC updates, ReinVBC and vanilla MOPO alike
    rollout_batch: int = 64
    pessimism: Literal["halt", "mopo", "both", "none"] = "halt"
    mopo_lambda: float = 0.1  # ReinVBC's MOPO penalty when pessimism is mopo/both
    halt_quantile: float = 0.99  # MOReL threshold: this quantile of disagreement on logged data
    halt_decel: float = 1.0  # a halted stop is charged the distance it needs at this deceleration (m/s^2)
    real_ratio: float = 0.1
    sac_hidden: int = 128
    gamma: float = 0.99
    select_every: int = 2500
    mopo_baseline_lambda: float = 1.0
    bc_steps: int = 3000
    eval_speeds: int = 20
    trace_speed: float = 25.0  # the stop whose traces the report plots (dry concrete)

    def validate(self) -> None:
        if self.n_stops < 10 or self.eval_speeds < 1 or self.tune_speeds < 1:
            raise ValueError("need n_stops >= 10, eval_speeds >= 1, tune_speeds >= 1")
        if self.elites > self.members or self.history < 2 or self.unroll < 1:
            raise ValueError("need elites <= members, history >= 2, unroll >= 1")
        if min(self.updates, self.model_steps, self.select_every, self.rollout_batch) < 1:
            raise ValueError("step counts must be >= 1")
        if not 0 <= self.real_ratio < 1 or not 0 < self.halt_quantile < 1:
            raise ValueError("need 0 <= real_ratio < 1 and 0 < halt_quantile < 1")


def model_config(cfg: ReinVBCConfig, *, generic: bool = False) -> StopModelConfig:
    ensemble = EnsembleConfig(members=cfg.members, elites=cfg.elites, hidden=cfg.model_hidden,
                              layers=cfg.model_layers, max_steps=cfg.model_steps)
    if generic:  # vanilla MOPO: Markov in the current measurement, one-step, no structure
        return StopModelConfig(history=1, unroll=1, physics=False, context_dim=0, ensemble=ensemble)
    return StopModelConfig(history=cfg.history, unroll=cfg.unroll, context_dim=cfg.context_dim, ensemble=ensemble)


def rotate_split(ds: BrakingDataset, offset: int) -> BrakingDataset:
    """The same stops with another validation fifth (for the independently trained selection model)."""
    split = np.where(np.arange(ds.n_episodes) % 5 == offset, "val", "train")
    return dataclasses.replace(ds, split=split)


@dataclass
class Trained:
    policies: dict[str, LearnedController]  # reinvbc (selected), reinvbc_last, mopo, bc
    models: dict[str, StopModel]
    report: dict  # model infos, gate, halt threshold, learning curves (JSON)


def fit_from_logs(ds: BrakingDataset, cfg: ReinVBCConfig, seed: int, *, state: dict, save: Callable[[], None],
                  on_step: Callable[[int], None] | None = None, behaviour=None, sim: SimConfig = SimConfig(),
                  baselines: bool = True) -> Trained:
    """Everything ReinVBC learns from logs, resumable: ``state`` holds finished stages, ``save`` persists it.

    ``behaviour`` (the logging policy, when known) enables the closed-loop model gate; the
    gate always also replays the logged commands open loop.
    """
    train_ds, val_ds = ds.select("train"), ds.select("val")
    models = {}
    # Model A trains the policy; model B (other seed, other split) only selects checkpoints.
    for name, offset in (("A", 4), ("B", 0), ("generic", 4)):
        if name == "generic" and not baselines:
            continue
        model = StopModel(model_config(cfg, generic=name == "generic"), sim)
        if f"model_{name}" in state:
            model.load_state_dict(state[f"model_{name}"]["weights"])
        else:
            split = rotate_split(ds, offset)
            info = model.fit(split.select("train"), split.select("val"), on_step=on_step,
                             generator=torch.Generator().manual_seed(seed * 100 + offset + 10 * (name == "generic")))
            state[f"model_{name}"] = {"weights": model.state_dict(), "info": info}
            save()
        models[name] = model.eval()

    if "gate" not in state:
        state["gate"] = model_gate(models["A"], val_ds, seed, sim, behaviour)
        save()

    inputs = PolicyInput.fit(train_ds, cfg.history)
    threshold = disagreement_quantile(models["A"], train_ds, cfg.halt_quantile)
    pessimism = Pessimism(mopo_penalty=cfg.mopo_lambda if cfg.pessimism in ("mopo", "both") else 0.0,
                          halt_threshold=threshold if cfg.pessimism in ("halt", "both") else None,
                          halt_decel=cfg.halt_decel, gamma=cfg.gamma)
    sac = SACConfig(hidden=cfg.sac_hidden, gamma=cfg.gamma)
    select = imagined_return(models["B"], rotate_split(ds, 0).select("val"), seed, 3000)
    runs = {"reinvbc": (models["A"], inputs, PolicyTrainConfig(
        updates=cfg.updates, rollout_batch=cfg.rollout_batch, real_ratio=cfg.real_ratio,
        select_every=cfg.select_every, sac=sac, pessimism=pessimism))}
    if baselines:  # vanilla MOPO: generic model, no history, 5-step branches from logged states, penalty 1
        runs["mopo"] = (models["generic"], PolicyInput.fit(train_ds, 1), PolicyTrainConfig(
            updates=cfg.updates, rollout_batch=cfg.rollout_batch, branch_steps=5, real_ratio=0.05,
            select_every=cfg.select_every, sac=sac, pessimism=Pessimism(mopo_penalty=cfg.mopo_baseline_lambda),
            sample=True))
    policies = {}
    for name, (model, run_inputs, train_cfg) in runs.items():
        key = f"policy_{name}"
        if "result" not in state.get(key, {}):
            whole_stops = train_cfg.branch_steps is None
            hist = torch.from_numpy(histories(train_ds, run_inputs.history))
            starts = hist[train_ds.episode_starts()] if whole_stops else hist
            contexts = model.contexts(model.table(train_ds), generator=torch.Generator().manual_seed(seed))
            if contexts is not None and not whole_stops:
                contexts = contexts[:, torch.from_numpy(train_ds.episode.astype(np.int64))]

            def checkpoint(training_state, key=key):
                state[key] = {"partial": training_state}
                save()

            result = train_policy(model, starts, contexts, run_inputs,
                                  real_transitions(train_ds, run_inputs, run_inputs.history, sim), train_cfg,
                                  torch.Generator().manual_seed(seed * 100 + len(name)), select=select,
                                  on_step=on_step, resume=state.get(key, {}).get("partial"), checkpoint=checkpoint)
            state[key] = {"result": dataclasses.asdict(result)}
            save()
        result = state[key]["result"]
        policies[name] = controller(result["best_actor"], run_inputs, sac)
        policies[f"{name}_last"] = controller(result["last_actor"], run_inputs, sac)
    if baselines:
        policies["bc"] = fit_bc(train_ds, BCConfig(history=cfg.history, steps=cfg.bc_steps),
                                torch.Generator().manual_seed(seed * 100 + 11))
    report = {
        "models": {name: {k: v for k, v in state[f"model_{name}"]["info"].items() if k != "curve"} for name in models},
        "gate": state["gate"],
        "halt_threshold": threshold,
        "policies": {name: {"curve": state[f"policy_{name}"]["result"]["curve"],
                            "best_update": state[f"policy_{name}"]["result"]["best_update"]} for name in runs},
    }
    return Trained(policies, models, report)


def model_gate(model: StopModel, val: BrakingDataset, seed: int, sim: SimConfig, behaviour=None) -> dict:
    """Imagined / real mean stopping distance on the validation stops: the behaviour policy run
    closed loop in the model (when known), and the logged commands replayed open loop."""
    max_steps = int(sim.max_time_s / sim.control_dt_s)
    gate = {}
    real = val.distance if np.isfinite(val.distance).all() else logged_distances(val)
    if behaviour is not None:
        imagined, _ = stops_in_model(behaviour, model, val, np.random.default_rng(seed),
                                     torch.Generator().manual_seed(seed), max_steps)
        gate["ratio"] = float(imagined.mean() / real.mean())
        gate["per_surface"] = {s: float(imagined[val.surface == s].mean() / real[val.surface == s].mean())
                               for s in dict.fromkeys(val.surface) if s}
    replayed, _ = stops_in_model(LoggedCommands(val), model, val, np.random.default_rng(seed),
                                 torch.Generator().manual_seed(seed), max_steps)
    gate["open_loop_ratio"] = float(replayed.mean() / real.mean())
    return gate


def logged_distances(ds: BrakingDataset) -> np.ndarray:
    """Stopping distance of each logged stop from its measured speeds (trapezoid rule)."""
    step = 0.5 * (ds.obs[:, 0] + ds.next_obs[:, 0]) * ds.control_dt
    return np.bincount(ds.episode, weights=step, minlength=ds.n_episodes)


class LoggedCommands:
    """Replays each logged stop's command sequence (then full pressure if the model's stop runs longer)."""

    def __init__(self, ds: BrakingDataset):
        starts = ds.episode_starts()
        self.sequences = np.split(ds.action.astype(np.float64), starts[1:])

    def reset(self, n: int, rng: np.random.Generator) -> None:
        assert n == len(self.sequences)
        self.step = 0

    def act(self, meas: np.ndarray) -> np.ndarray:
        u = np.array([seq[self.step] if self.step < len(seq) else 1.0 for seq in self.sequences])
        self.step += 1
        return u
