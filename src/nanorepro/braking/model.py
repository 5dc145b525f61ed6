"""Learned stop dynamics and imagined stops (our reconstruction of ReinVBC's model learning and use).

Model learning (``StopModel``): a probabilistic ensemble (``nanorepro.rl.ensemble``) maps the
last k measurements, the command and a stop's context to the next measurement. With
``physics=True`` (the paper's "engineering designs", as we reconstruct them):

- the ensemble predicts only the change of the two measured speeds (vehicle, wheel);
- wheel acceleration, slip and the last command are computed from them, exactly as the
  sensors' pipeline computes them;
- outputs are clamped to physical ranges: the car does not speed up or decelerate beyond
  2 g, the wheel does not turn backwards or faster than the car;
- distance (sum of v dt), termination (v <= stop speed) and reward are analytic, never learned;
- training unrolls the model ``unroll`` steps on its own predictions (a multi-step loss, our
  stand-in for ADM's any-step prediction).

The stop's context (surface, load, brake wear: whatever is constant within a stop) is a
vector z pooled by an encoder over a few of that stop's logged transitions (a set encoder,
as in neural processes; MAPLE's environment context). Without it, a model rolled out from
the start of a stop cannot know the surface and predicts the average surface for ever;
with it, an imagined stop keeps one surface from start to end. Imagined stops draw the
context of a logged stop, or (``context_mix``) a random interpolation of two, which gives
surfaces between the logged ones.

With ``physics=False`` the ensemble predicts the change of all five measurements, one step
at a time, unclamped: the generic model of vanilla MOPO (run with history 1 and no context).

Model use (``ImaginedStops``): B stops rolled out in the model at once, from real initial
conditions, each with one elite member drawn per stop, with MOPO's uncertainty penalty
and/or MOReL's halt on disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nanorepro.braking.data import BrakingDataset, histories
from nanorepro.envs.braking import SimConfig
from nanorepro.nn.mlp import EnsembleMLP
from nanorepro.rl.ensemble import EnsembleConfig, GaussianEnsemble, fit_ensemble

G = 9.81


@dataclass(frozen=True)
class StopModelConfig:
    history: int = 4  # measurements in the model's (and policy's) input
    unroll: int = 5  # steps of the multi-step training loss (1: one-step NLL)
    physics: bool = True  # structure and clamps (False: generic 5-d delta model)
    context_dim: int = 4  # 0: no stop context
    context_samples: int = 16  # logged transitions the encoder pools over
    context_mix: bool = True  # imagined stops interpolate two logged contexts
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)


def features(hist: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(..., k, 5) history and (...,) command -> (..., 5k + 1): the newest measurement, the k - 1
    step-to-step differences, and the command.

    Differences carry the surface (how fast the car slows at this slip); as raw speeds they
    would be changes of 0.02-0.1 m/s on values near 30, lost after standardisation.
    """
    diffs = hist[..., 1:, :] - hist[..., :-1, :]
    return torch.cat([hist[..., -1, :], diffs.flatten(-2), u.unsqueeze(-1)], dim=-1)


@dataclass
class EpisodeTable:
    """Every logged transition as an (input, target) pair, indexed by stop, for the context encoder."""

    pairs: torch.Tensor  # (T, in + out), raw units
    start: torch.Tensor  # (E,) first row of each stop
    length: torch.Tensor  # (E,)

    def sample(self, episodes: torch.Tensor, m: int, generator: torch.Generator | None) -> torch.Tensor:
        """m random transitions of each given stop: (..., m, in + out)."""
        u = torch.rand(*episodes.shape, m, generator=generator)
        rows = self.start[episodes].unsqueeze(-1) + (u * self.length[episodes].unsqueeze(-1)).long()
        return self.pairs[rows]


class StopModel(nn.Module):
    """Ensemble + context encoder + physics structure. Measurements: (v, w, accel, slip, last command)."""

    def __init__(self, config: StopModelConfig, sim: SimConfig = SimConfig()):
        super().__init__()
        self.config, self.sim = config, sim
        self.in_dim = config.history * 5 + 1
        self.out_dim = 2 if config.physics else 5
        members = config.ensemble.members
        self.ensemble = GaussianEnsemble(self.in_dim + config.context_dim, self.out_dim, config.ensemble)
        self.encoder = EnsembleMLP(members, self.in_dim + self.out_dim, 64, config.context_dim, layers=2) \
            if config.context_dim else None

    # -- structure -------------------------------------------------------------------------------

    def assemble(self, last: torch.Tensor, delta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Next measurement from the last one and the predicted change (physics clamps applied)."""
        if not self.config.physics:
            return last + delta
        dt = self.sim.control_dt_s
        v = (last[..., 0] + delta[..., 0].clamp(-2 * G * dt, 0.0)).clamp_min(0.0)
        w = (last[..., 1] + delta[..., 1]).clamp_min(0.0)
        w = torch.minimum(w, v + 0.1)  # no drive torque: the wheel cannot outrun the car (plus sensor noise)
        accel = (w - last[..., 1]) / dt
        slip = ((v - w) / v.clamp_min(self.sim.slip_speed_floor)).clamp(0.0, 1.0)
        return torch.stack([v, w, accel, slip, u], dim=-1)

    def targets(self, last: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        """What the ensemble must predict to go from ``last`` to ``nxt``."""
        return nxt[..., :2] - last[..., :2] if self.config.physics else nxt - last

    def context(self, pairs: torch.Tensor) -> torch.Tensor | None:
        """(E, ..., m, in + out) raw pairs -> (E, ..., context_dim): mean of the encoded pairs."""
        if self.encoder is None:
            return None
        ens = self.ensemble
        x = (pairs[..., : self.in_dim] - ens.x_mean[: self.in_dim]) / ens.x_std[: self.in_dim]
        y = (pairs[..., self.in_dim:] - ens.y_mean) / ens.y_std
        flat = torch.cat([x, y], dim=-1)
        encoded = self.encoder(flat.reshape(flat.shape[0], -1, flat.shape[-1]))
        return encoded.reshape(*flat.shape[:-1], -1).mean(dim=-2)

    def model_input(self, hist: torch.Tensor, u: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        x = features(hist, u)
        if z is None:
            return x
        if x.dim() == z.dim() - 1:  # shared history, per-member contexts
            x = x.expand(z.shape[0], *x.shape)
        return torch.cat([x, z], dim=-1)

    # -- learning ---------------------------------------------------------------------------------

    def table(self, ds: BrakingDataset) -> EpisodeTable:
        hist = torch.from_numpy(histories(ds, self.config.history))
        obs, nxt = torch.from_numpy(ds.obs), torch.from_numpy(ds.next_obs)
        u = torch.from_numpy(ds.action)
        pairs = torch.cat([features(hist, u), self.targets(obs, nxt)], dim=-1)
        start = torch.from_numpy(ds.episode_starts()).long()
        length = torch.diff(torch.cat([start, torch.tensor([len(ds.obs)])]))
        return EpisodeTable(pairs, start, length)

    def unrolled_loss(self, batch: dict[str, torch.Tensor], table: EpisodeTable, metric: str = "nll",
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-member loss summed over L steps, feeding each member its own mean predictions."""
        ens = self.ensemble
        hist, actions, nxt, episode = batch["hist"], batch["action"], batch["next_obs"], batch["episode"]
        if hist.dim() == 3:  # a shared batch (validation): every member gets the same windows
            hist, actions, nxt, episode = (t.expand(ens.config.members, *t.shape)
                                           for t in (hist, actions, nxt, episode))
        z = self.context(table.sample(episode, self.config.context_samples, generator)) if self.encoder else None
        total = 0.0
        for step in range(actions.shape[-1]):
            u = actions[..., step]
            mean, logstd = ens.forward_normalised(self.model_input(hist, u, z))
            y = (self.targets(hist[..., -1, :], nxt[..., step, :]) - ens.y_mean) / ens.y_std
            if metric == "nll":
                total = total + (((mean - y) * torch.exp(-logstd)) ** 2 + 2 * logstd).mean(dim=(-2, -1))
            else:
                total = total + ((mean - y) ** 2).mean(dim=(-2, -1))
            predicted = self.assemble(hist[..., -1, :], mean * ens.y_std + ens.y_mean, u)
            hist = torch.cat([hist[..., 1:, :], predicted.unsqueeze(-2)], dim=-2)
        return total / actions.shape[-1]

    def fit(self, train: BrakingDataset, val: BrakingDataset, generator: torch.Generator | None = None,
            on_step=None, max_val_windows: int = 4000) -> dict:
        """Standardise on one-step pairs, then train with the unrolled loss; validation: unrolled MSE."""
        from nanorepro.braking.data import windows

        k, L = self.config.history, self.config.unroll
        train_table, val_table = self.table(train), self.table(val)
        ens = self.ensemble
        pairs = train_table.pairs
        ens.x_mean[: self.in_dim] = pairs[:, : self.in_dim].mean(0)
        ens.x_std[: self.in_dim] = pairs[:, : self.in_dim].std(0).clamp_min(1e-6)
        ens.y_mean.copy_(pairs[:, self.in_dim:].mean(0))
        ens.y_std.copy_(pairs[:, self.in_dim:].std(0).clamp_min(1e-6))  # context dims stay (0, 1)
        train_w, val_w = windows(train, k, L), windows(val, k, L)
        if len(val_w["hist"]) > max_val_windows:
            pick = torch.randperm(len(val_w["hist"]), generator=torch.Generator().manual_seed(0))[:max_val_windows]
            val_w = {key: v[pick] for key, v in val_w.items()}
        val_generator = torch.Generator().manual_seed(1)

        def loss(_, batch):
            return self.unrolled_loss(batch, train_table, generator=generator).sum() + ens.bound_penalty()

        def val_error(_, data):
            val_generator.manual_seed(1)  # the same contexts at every check
            return self.unrolled_loss(data, val_table, metric="mse", generator=val_generator)

        return fit_ensemble(ens, train_w, val_w, loss_fn=loss, val_error=val_error, module=self,
                            generator=generator, on_step=on_step)

    # -- prediction ---------------------------------------------------------------------------------

    @torch.no_grad()
    def contexts(self, table: EpisodeTable, samples: int = 64, generator: torch.Generator | None = None):
        """Every member's context of every stop in ``table``: (E, n_stops, d), or None."""
        if self.encoder is None:
            return None
        episodes = torch.arange(len(table.start)).expand(self.config.ensemble.members, -1)
        return self.context(table.sample(episodes, samples, generator))

    @torch.no_grad()
    def predict(self, hist: torch.Tensor, u: torch.Tensor, member: torch.Tensor, z: torch.Tensor | None,
                generator: torch.Generator | None = None, sample: bool = True):
        """Next measurement with member ``member[b]`` for row b; plus MOPO and MOReL uncertainties.

        Returns (next (B, 5), penalty (B,) = max over elites of ||sigma|| (standardised),
        disagreement (B,) = max over elite pairs of ||mu_i - mu_j|| (standardised)).
        """
        ens = self.ensemble
        mean_n, logstd_n = ens.forward_normalised(self.model_input(hist, u, z))  # (E, B, out)
        elites = ens.elite_idx
        penalty = logstd_n[elites].exp().norm(dim=-1).amax(0)
        m = mean_n[elites]
        disagreement = (m.unsqueeze(0) - m.unsqueeze(1)).norm(dim=-1).amax(dim=(0, 1))
        rows = torch.arange(len(u))
        chosen = mean_n[member, rows]
        if sample:
            chosen = chosen + logstd_n[member, rows].exp() * torch.randn(chosen.shape, generator=generator)
        delta = chosen * ens.y_std + ens.y_mean
        return self.assemble(hist[:, -1, :], delta, u), penalty, disagreement


def stop_reward(last: torch.Tensor, nxt: torch.Tensor, u: torch.Tensor, sim: SimConfig) -> torch.Tensor:
    """The simulator's reward, from measurements: -(distance this step) - deep-slip, lock and chatter costs."""
    v0, v1 = last[..., 0], nxt[..., 0]
    reward = -(0.5 * (v0 + v1) * sim.control_dt_s) / sim.reward_distance_scale
    reward = reward - sim.reward_deep_slip * (nxt[..., 3] > sim.deep_slip).float()
    reward = reward - sim.reward_locked * (nxt[..., 1] < sim.lock_ratio * v1).float()
    return reward - sim.reward_chatter * (u - last[..., 4]).abs()


def discounted_remaining_distance(v: torch.Tensor, decel: float, gamma: float, dt: float) -> torch.Tensor:
    """Discounted distance still to cover from speed v at constant deceleration ``decel``:
    int_0^T e^{-rho t} (v - a t) dt with T = v / a and rho = -ln(gamma) / dt (continuous-time form)."""
    rho = -np.log(gamma) / dt
    x = rho * v.double() / decel  # float64: the two terms nearly cancel when gamma is close to 1
    decay = torch.exp(-x)
    return (decel / rho**2 * (x * (1 - decay) - (1 - decay * (1 + x)))).to(v.dtype)


@dataclass(frozen=True)
class Pessimism:
    """MOPO: r - lambda * u(s, a). MOReL: end the stop where the elites disagree beyond a threshold,
    charging the (discounted) distance the car would still need at a deceleration ``halt_decel``
    lower than any logged surface's, so that halting never pays better than braking on (our kappa)."""

    mopo_penalty: float = 0.0
    halt_threshold: float | None = None
    halt_decel: float = 1.0  # m/s^2
    gamma: float = 0.99  # the agent's discount, for the halt charge


class ImaginedStops:
    """B stops in the learned model, in lockstep; a finished stop restarts from a real start.

    ``sample=False`` rolls out each member's mean: the logged noise is sensor noise, not
    process noise, and sampling it into the state (then clamping the car's deceleration at
    zero) biases long, slow stops (snow) towards stopping too early.

    ``starts`` are real histories (N, k, 5); ``contexts`` (E, N, d) their stops' contexts. A
    restarted stop draws a start, an elite member (kept for the whole stop) and a context
    (interpolated with a second stop's when the model's ``context_mix`` is on). Rewards are
    analytic, from the predicted measurements, with the simulator's weights.
    """

    def __init__(self, model: StopModel, starts: torch.Tensor, contexts: torch.Tensor | None, batch: int,
                 pessimism: Pessimism, generator: torch.Generator, max_steps: int, sample: bool = False):
        self.model, self.starts, self.contexts, self.B, self.sample = model, starts, contexts, batch, sample
        self.pessimism, self.generator, self.max_steps = pessimism, generator, max_steps
        self.hist = torch.zeros(batch, model.config.history, 5)
        self.z = None if contexts is None else torch.zeros(contexts.shape[0], batch, contexts.shape[-1])
        self.member = torch.zeros(batch, dtype=torch.long)
        self.steps = torch.zeros(batch, dtype=torch.long)
        self.distance = torch.zeros(batch)
        self.reset_rows(torch.ones(batch, dtype=torch.bool))

    def reset_rows(self, rows: torch.Tensor, pick: torch.Tensor | None = None) -> None:
        n = int(rows.sum())
        if n == 0:
            return
        g = self.generator
        pick = torch.randint(0, len(self.starts), (n,), generator=g) if pick is None else pick
        self.hist[rows] = self.starts[pick]
        if self.z is not None:
            z = self.contexts[:, pick]
            if self.model.config.context_mix:
                other = self.contexts[:, torch.randint(0, len(self.starts), (n,), generator=g)]
                beta = torch.rand(1, n, 1, generator=g)
                z = (1 - beta) * z + beta * other
            self.z[:, rows] = z
        elites = self.model.ensemble.elite_idx
        self.member[rows] = elites[torch.randint(0, len(elites), (n,), generator=g)]
        self.steps[rows] = 0
        self.distance[rows] = 0.0

    def step(self, u: torch.Tensor):
        """Advance every stop by one command; returns (hist, reward, terminated, truncated, penalty)."""
        sim = self.model.sim
        last = self.hist[:, -1, :]
        nxt, penalty, disagreement = self.model.predict(self.hist, u, self.member, self.z, self.generator,
                                                        sample=self.sample)
        reward = stop_reward(last, nxt, u, sim) - self.pessimism.mopo_penalty * penalty
        terminated = nxt[:, 0] <= sim.stop_speed
        if self.pessimism.halt_threshold is not None:
            halt = (disagreement > self.pessimism.halt_threshold) & ~terminated
            remaining = discounted_remaining_distance(nxt[:, 0], self.pessimism.halt_decel, self.pessimism.gamma,
                                                      sim.control_dt_s) / sim.reward_distance_scale
            reward = torch.where(halt, reward - remaining, reward)
            terminated = terminated | halt
        self.distance += 0.5 * (last[:, 0] + nxt[:, 0]) * sim.control_dt_s
        self.steps += 1
        truncated = ~terminated & (self.steps >= self.max_steps)
        self.hist = torch.cat([self.hist[:, 1:, :], nxt.unsqueeze(1)], dim=1)
        return self.hist, reward, terminated, truncated, penalty


def disagreement_quantile(model: StopModel, ds: BrakingDataset, q: float = 0.99, max_rows: int = 20000) -> float:
    """MOReL's threshold: the q-quantile of the elites' disagreement on logged transitions."""
    table = model.table(ds)
    rows = torch.randperm(len(table.pairs), generator=torch.Generator().manual_seed(0))[:max_rows]
    hist = torch.from_numpy(histories(ds, model.config.history))[rows]
    u = torch.from_numpy(ds.action)[rows]
    contexts = model.contexts(table, generator=torch.Generator().manual_seed(0))  # one per stop, (E, stops, d)
    z = None if contexts is None else contexts[:, torch.from_numpy(ds.episode.astype(np.int64))[rows]]
    _, _, disagreement = model.predict(hist, u, torch.zeros(len(rows), dtype=torch.long), z, sample=False)
    return float(np.quantile(disagreement.numpy(), q))


def stops_in_model(controller, model: StopModel, ds: BrakingDataset, rng: np.random.Generator,
                   generator: torch.Generator, max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Run a (NumPy) controller in the model from every logged stop's real start and context.

    The model gate (behaviour policy: model vs reality) and checkpoint selection with a
    second ensemble use it. Returns each stop's distance and return (undiscounted, no
    pessimism), in the order of ``ds``'s stops.
    """
    starts = torch.from_numpy(histories(ds, model.config.history)[ds.episode_starts()])
    contexts = model.contexts(model.table(ds), generator=generator)
    n = len(starts)
    stops = ImaginedStops(model, starts, contexts, n, Pessimism(), generator, max_steps)
    stops.hist, stops.z = starts.clone(), contexts  # exactly these starts, in order, each with its own context
    controller.reset(n, rng)
    done = torch.zeros(n, dtype=torch.bool)
    distance, total = torch.zeros(n), torch.zeros(n)
    while not done.all():
        u = torch.as_tensor(controller.act(stops.hist[:, -1, :].numpy().astype(np.float64)), dtype=torch.float32)
        before = stops.distance.clone()
        _, reward, terminated, truncated, _ = stops.step(u)
        distance = torch.where(done, distance, distance + stops.distance - before)
        total = torch.where(done, total, total + reward)
        done = done | terminated | truncated
    return distance.numpy(), total.numpy()
