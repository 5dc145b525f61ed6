"""SuP's pieces (arXiv 2603.20658): chunk downsampling and an offline Lagrangian CMDP for the rate k.

Confirmed (``../shared/papers/embodied.md`` §1.3): a frozen base policy; per chunk, a light
scheduler picks a downsampling rate k and keeps every k-th action; a constrained MDP
maximises speed subject to a world-model-predicted state-deviation cost; trained offline.
**Our reconstruction** (the paper's k set, cost and solver are not known to us):

    k in {1, 2, 3, 4};  execute waypoints 0, k, 2k, ... and always the last
    r = 1 - 1/k                                        (the share of control steps saved)
    c = || WM(s, A downsampled by k) - WM(s, A) ||      (predicted end-state deviation)
    max_pi E[sum r]  s.t.  E[sum c] <= d
    Lagrangian fitted-Q on r - lambda c;  lambda <- max(0, lambda + eta (J_c - d))   (dual ascent)

or a PID Lagrangian multiplier (Stooke et al. 2020) in place of the dual ascent.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nanorepro.embodied.demos import chunked, plan
from nanorepro.embodied.world_model import N_TOKENS, StateWorldModel, WorldModelConfig
from nanorepro.envs.tabletop import MAX_WORDS, Tabletop, TabletopConfig, Task
from nanorepro.nn.mlp import mlp
from nanorepro.rl.ensemble import EnsembleConfig

RATES = (1, 2, 3, 4)
# The deviation is measured on the task state: gripper x, y, grip and every object's entries — not the
# gripper's velocity, which a faster chunk changes by design (a pilot with it priced casual transit like a
# failed grasp). Indices into the Tabletop state (gripper x, y, grip, vx, vy, then 5 per object).
TASK_STATE = tuple([0, 1, 2] + list(range(5, 30)))


def downsample_indices(horizon: int, k: int) -> list[int]:
    """Waypoints kept at rate k: 0, k, 2k, ... and always the last (H - 1)."""
    if k < 1:
        raise ValueError(f"the downsampling rate must be at least 1, got {k}")
    kept = list(range(0, horizon, k))
    return kept if kept[-1] == horizon - 1 else kept + [horizon - 1]


def downsample(chunk_BHD: torch.Tensor, k: int) -> torch.Tensor:
    """(B, len(kept), D): the waypoints executed at rate k."""
    return chunk_BHD[:, downsample_indices(chunk_BHD.shape[1], k)]


def hold_padded(chunk_BHD: torch.Tensor, k: int) -> torch.Tensor:
    """(B, H, D): the rate-k waypoints, then the last one held to length H — how a fixed-length chunk world
    model sees a downsampled chunk (it predicts where the gripper settles, not when)."""
    kept = downsample(chunk_BHD, k)
    pad = chunk_BHD.shape[1] - kept.shape[1]
    return torch.cat([kept, kept[:, -1:].expand(-1, pad, -1)], 1)


def deviation_costs(predict_end, chunk_BHD: torch.Tensor, rates: tuple[int, ...] = RATES,
                    dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """(B, len(rates)) c_k = || predict_end(hold_padded(A, k)) - predict_end(A) || over state ``dims`` (all by
    default), with ``predict_end`` mapping a (B, H, D) chunk to (B, S) predicted end states (a world model
    bound to its states)."""
    full = predict_end(chunk_BHD)
    index = slice(None) if dims is None else list(dims)
    return torch.stack([(predict_end(hold_padded(chunk_BHD, k)) - full)[:, index].norm(dim=-1) for k in rates], 1)


def rewards(rates: tuple[int, ...] = RATES) -> torch.Tensor:
    """r_k = 1 - 1/k, the nominal share of control steps saved (keeping the last waypoint, the realised
    share at H = 8 is 3/8, 1/2, 5/8 for k = 2, 3, 4: report control steps, not this reward)."""
    return torch.tensor([1.0 - 1.0 / k for k in rates])


def dual_ascent(lam: float, cost: float, budget: float, lr: float) -> float:
    """lambda <- max(0, lambda + eta (J_c - d)): raise the price while the cost exceeds the budget."""
    return max(0.0, lam + lr * (cost - budget))


@dataclass
class PIDLagrangian:
    """lambda = max(0, Kp e + Ki sum(e) + Kd de), e = J_c - d (Stooke et al. 2020); the integral never goes
    negative, so a long stretch under budget does not bank credit."""

    kp: float = 0.1
    ki: float = 0.01
    kd: float = 0.0
    integral: float = 0.0
    previous: float = 0.0

    def update(self, cost: float, budget: float) -> float:
        error = cost - budget
        self.integral = max(0.0, self.integral + error)
        derivative = error - self.previous
        self.previous = error
        return max(0.0, self.kp * error + self.ki * self.integral + self.kd * derivative)


class RateQ(nn.Module):
    """Q(features, k) for every rate: the scheduler picks argmax_k Q (only rates in ``RATES`` exist)."""

    def __init__(self, in_dim: int, hidden: int = 128, rates: tuple[int, ...] = RATES):
        super().__init__()
        self.rates = rates
        self.net = mlp(in_dim, hidden, len(rates), layers=2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    @torch.no_grad()
    def choose(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) the chosen rates (values from ``rates``)."""
        return torch.tensor(self.rates)[self(features).argmax(-1)]


def fitted_q_loss(q: RateQ, target: RateQ, batch: dict[str, torch.Tensor], lam: float,
                  gamma: float = 0.9) -> torch.Tensor:
    """Squared TD error of Q(s, k) against r_k - lambda c_k + gamma (1 - done) max_k' Q_target(s', k').

    ``batch``: features (B, F), rate_index (B,), reward (B,), cost (B,), next_features (B, F), done (B,).
    """
    with torch.no_grad():
        bootstrap = target(batch["next_features"]).max(-1).values * (1.0 - batch["done"].float())
        y = batch["reward"] - lam * batch["cost"] + gamma * bootstrap
    chosen = q(batch["features"]).gather(1, batch["rate_index"][:, None]).squeeze(1)
    return ((chosen - y) ** 2).mean()


# --------------------------------------------------------------------------- executing a frozen policy with a scheduler

class ScriptedChunks:
    """The scripted demonstrator as a frozen chunked policy: its plan from the initial scene, H waypoints
    at a time (open loop; past the plan's end it holds the last waypoint). ``casual`` says whether every
    waypoint of the chunk is labelled casual (the segment oracle's ground truth)."""

    needs_views = False

    def __init__(self, sim: Tabletop, horizon: int):
        self.plans, self.casual_chunks = [], []
        for b in range(sim.B):
            path = plan(sim, b)
            self.plans.append(chunked(path, horizon))
            precise = np.array([w.precise for w in path] + [True] * ((-len(path)) % horizon))
            self.casual_chunks.append(~precise.reshape(-1, horizon).any(1))
        self.next = np.zeros(sim.B, np.int64)
        self.last_casual = np.zeros(sim.B, bool)

    def chunks(self, obs: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        out = []
        for b in rows:
            index = min(self.next[b], len(self.plans[b]) - 1)
            out.append(self.plans[b][index])
            self.last_casual[b] = self.next[b] < len(self.plans[b]) and self.casual_chunks[b][index]
            self.next[b] += 1
        return np.stack(out)

    def peek(self, rows: np.ndarray) -> np.ndarray:
        """The chunks the next call will return (the plan is open loop, so they do not depend on the rate)."""
        return np.stack([self.plans[b][min(self.next[b], len(self.plans[b]) - 1)] for b in rows])


def _peek(frozen, rows: np.ndarray) -> np.ndarray | None:
    """The frozen policy's next chunks where it can tell them in advance (open-loop plans), else None."""
    return frozen.peek(rows) if hasattr(frozen, "peek") else None


class PolicyChunks:
    """A trained ``ChunkPolicy`` as a frozen chunked policy (closed loop at chunk boundaries)."""

    needs_views = True

    def __init__(self, policy):
        self.policy = policy.eval()

    def chunks(self, obs: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        chunk = self.policy.act({k: obs[k][rows] for k in ("state", "head", "wrist", "instruction") if k in obs})
        chunk[..., 2] = chunk[..., 2] > 0.5
        return chunk


def true_deviations(sim: Tabletop, rows: np.ndarray, chunk: np.ndarray, next_chunk: np.ndarray | None = None,
                    rates: tuple[int, ...] = RATES) -> np.ndarray:
    """(n, len(rates)) the simulator's || s_end(k) - s_end(1) || over ``TASK_STATE`` for scenes ``rows``
    executing ``chunk`` at rate k from their current state — then, when given, ``next_chunk`` at full rate, so
    that arriving too fast for the next contact counts (on copies of the simulator, without rendering): the
    oracle's cost and the realised deviation."""
    hold = np.concatenate([sim.gripper, sim.grip[:, None]], 1)
    ends = []
    for k in rates:
        copy_ = copy.deepcopy(sim)
        copy_.views = False
        steps = [chunk[:, i] for i in downsample_indices(chunk.shape[1], k)]
        steps += [] if next_chunk is None else [next_chunk[:, i] for i in range(next_chunk.shape[1])]
        for waypoints in steps:
            waypoint = hold.copy()
            waypoint[rows] = waypoints
            copy_.step(waypoint)
        ends.append(copy_.state()[rows][:, list(TASK_STATE)])
    full = ends[list(rates).index(1)] if 1 in rates else ends[0]
    return np.stack([np.linalg.norm(e - full, axis=1) for e in ends], 1)


def execute(frozen_factory, tasks: list[Task], seed: int, scheduler, max_steps: int = 300, horizon: int = 8,
            config: TabletopConfig = TabletopConfig(), record: bool = False, deviations: bool = False,
            views: bool | None = None) -> dict:
    """Run a frozen chunked policy in the real suite with a per-chunk downsampling rate from ``scheduler``.

    Every scene keeps its own queue of waypoints, so scenes that run faster ask for their next
    chunk sooner (no scene waits for another). ``scheduler(state, chunk, context)`` -> rates (n,),
    with ``context`` holding the simulator, the scene rows and the frozen policy. Returns per
    episode ``success`` and ``steps`` (control steps until success or the limit) and, with
    ``record``, one row per executed chunk: state, instruction, chunk, rate, next state, next
    chunk's state index, done. ``deviations`` adds the simulator's true deviation of each chosen
    rate (``true_deviations``) to the rows. ``views`` renders the cameras (default: the frozen policy's
    ``needs_views``).
    """
    views = getattr(frozen_factory, "needs_views", False) if views is None else views
    sim = Tabletop(len(tasks), config, views=views)
    obs = sim.reset(tasks, np.random.default_rng(seed))
    frozen = frozen_factory(sim, horizon)
    B = len(tasks)
    queue, length, pos = np.zeros((B, horizon, 3)), np.zeros(B, np.int64), np.zeros(B, np.int64)
    done, success, steps = np.zeros(B, bool), np.zeros(B, bool), np.zeros(B, np.int64)
    rows: dict[str, list] = {k: [] for k in ("episode", "state", "instruction", "chunk", "rate", "deviation")}
    open_row = np.full(B, -1)
    next_state: dict[int, np.ndarray] = {}
    for _ in range(max_steps):
        need = np.flatnonzero(~done & (pos >= length))
        if need.size:
            for b in need:
                if open_row[b] >= 0:
                    next_state[open_row[b]] = obs["state"][b]
            chunk = frozen.chunks(obs, need)
            rate = np.asarray(scheduler(obs["state"][need], chunk, {"sim": sim, "rows": need, "frozen": frozen}))
            if deviations:
                dev = true_deviations(sim, need, chunk, _peek(frozen, need))
                rows["deviation"].append(dev[np.arange(len(need)), np.searchsorted(RATES, rate)])
            for k in RATES:
                pick = rate == k
                kept = downsample_indices(horizon, k)
                queue[need[pick], : len(kept)] = chunk[pick][:, kept]
                length[need[pick]] = len(kept)
            pos[need] = 0
            if record:
                open_row[need] = sum(len(r) for r in rows["episode"]) + np.arange(len(need))
                rows["episode"].append(need)
                rows["state"].append(obs["state"][need])
                rows["instruction"].append(obs["instruction"][need])
                rows["chunk"].append(chunk.astype(np.float32))
                rows["rate"].append(rate)
        hold = np.concatenate([sim.gripper, sim.grip[:, None]], 1)
        waypoint = np.where(done[:, None], hold, queue[np.arange(B), np.minimum(pos, horizon - 1)])
        obs, solved = sim.step(np.concatenate([waypoint[:, :2], waypoint[:, 2:] > 0.5], 1))
        pos[~done] += 1
        steps[~done] += 1
        success |= solved & ~done
        finished = solved & ~done
        done |= solved
        for b in np.flatnonzero(finished):
            if open_row[b] >= 0:
                next_state[open_row[b]] = obs["state"][b]
        if done.all():
            break
    out = {"success": success, "steps": steps}
    if deviations:
        out["deviation"] = np.concatenate(rows["deviation"]) if rows["deviation"] else np.zeros(0)
    if record:
        data = {k: np.concatenate(v) for k, v in rows.items() if v}
        n = len(data["episode"])
        final = obs["state"]
        data["next_state"] = np.stack([next_state.get(i, final[data["episode"][i]]) for i in range(n)])
        # the same scene's next chunk (for bootstrapping); -1 where the episode ended after this chunk
        following = np.full(n, -1)
        last_seen: dict[int, int] = {}
        for i in range(n - 1, -1, -1):
            b = int(data["episode"][i])
            following[i] = last_seen.get(b, -1)
            last_seen[b] = i
        data["following"] = following
        out["rows"] = data
    return out


# --------------------------------------------------------------------------- offline training (logged rows only)

def scheduler_features(state: np.ndarray, chunk: np.ndarray) -> torch.Tensor:
    """The scheduler's input: the state and the chunk's waypoints relative to the gripper (policy-agnostic)."""
    relative = chunk.copy()
    relative[..., :2] -= state[:, None, :2]
    return torch.as_tensor(np.concatenate([state, relative.reshape(len(state), -1)], 1), dtype=torch.float32)


def world_model_costs(wm, state: np.ndarray, instruction: np.ndarray, chunk: np.ndarray,
                      next_chunk: np.ndarray | None = None, batch: int = 4096) -> np.ndarray:
    """(n, len(RATES)) c_k = || WM(s, A downsampled by k) - WM(s, A) || over ``TASK_STATE``, from a
    ``StateWorldModel``. With ``next_chunk`` (NaN rows: none), both predictions are rolled one chunk further
    at full rate — the counterfactual trajectory's deviation, so arriving too fast for a contact counts."""
    out = []
    for i in range(0, len(state), batch):
        s, w = torch.as_tensor(state[i:i + batch]), torch.as_tensor(instruction[i:i + batch])
        nxt = None if next_chunk is None else torch.as_tensor(next_chunk[i:i + batch], dtype=torch.float32)

        def predict_end(c, s=s, w=w, nxt=nxt):
            end = wm.predict(s, w, c)[0]
            if nxt is None:
                return end
            has = ~torch.isnan(nxt).any((1, 2))
            rolled = wm.predict(end, w, torch.nan_to_num(nxt))[0]
            return torch.where(has[:, None], rolled, end)

        out.append(deviation_costs(predict_end, torch.as_tensor(chunk[i:i + batch], dtype=torch.float32),
                                   dims=TASK_STATE))
    return torch.cat(out).numpy()


def next_chunks(rows: dict[str, np.ndarray]) -> np.ndarray:
    """(n, H, 3) each logged chunk's successor in its episode; NaN after an episode's last chunk."""
    out = np.full_like(rows["chunk"], np.nan)
    has = rows["following"] >= 0
    out[has] = rows["chunk"][rows["following"][has]]
    return out


def fit_world_model(rows: dict[str, np.ndarray], success: np.ndarray, horizon: int, max_steps: int,
                    seed: int) -> tuple[StateWorldModel, dict]:
    """The chunk world model fitted on logged rows (hold-padded executed chunks), 10% held out for early stopping."""
    chunk = torch.as_tensor(rows["chunk"])
    executed = torch.stack([hold_padded(chunk[i:i + 1], int(k))[0] for i, k in enumerate(rows["rate"])])
    solved = success[rows["episode"]] & (rows["following"] < 0)
    data = {"state": torch.as_tensor(rows["state"]), "instruction": torch.as_tensor(rows["instruction"]),
            "chunk": executed, "delta": torch.as_tensor(rows["next_state"] - rows["state"]),
            "solved": torch.as_tensor(solved).float()}
    perm = torch.randperm(len(chunk), generator=torch.Generator().manual_seed(seed))
    cut = len(perm) // 10
    wm = StateWorldModel(rows["state"].shape[1], horizon, WorldModelConfig(ensemble=EnsembleConfig(
        members=5, elites=5, hidden=256, layers=3, max_steps=max_steps, eval_every=250)))
    info = wm.fit({k: v[perm[cut:]] for k, v in data.items()}, {k: v[perm[:cut]] for k, v in data.items()}, seed)
    return wm, info


def price_logged_chunks(rows: dict[str, np.ndarray], success: np.ndarray, horizon: int, wm_steps: int,
                        seed: int) -> tuple[StateWorldModel, np.ndarray, float, dict]:
    """Step 2 of the offline pipeline: fit the world model on logged rows and price every chunk at every rate,
    rolled one chunk further with the logged next chunk (``world_model_costs``). Returns the world model, the
    costs (n, len(RATES)), their scale (the mean k = 4 cost: budgets are fractions of it) and the fit's info."""
    wm, info = fit_world_model(rows, success, horizon, wm_steps, seed)
    costs = world_model_costs(wm, rows["state"], rows["instruction"], rows["chunk"], next_chunks(rows))
    return wm, costs, float(costs[:, -1].mean()), info


@dataclass(frozen=True)
class SchedulerConfig:
    dual_iterations: int = 12
    q_steps: int = 400          # fitted-Q steps between dual updates
    dual_lr: float = 2.0        # on costs normalised by the mean k = 4 cost
    gamma: float = 0.9
    batch_size: int = 256
    lr: float = 1e-3
    target_every: int = 100
    hidden: int = 128
    pid: bool = False           # PID Lagrangian instead of plain dual ascent


@dataclass
class TrainedScheduler:
    q: RateQ
    mean: torch.Tensor
    std: torch.Tensor
    lam: float
    cost: float                 # the greedy scheduler's mean normalised WM cost on the logged states
    lambdas: list[float]

    def __call__(self, state: np.ndarray, chunk: np.ndarray, _context=None) -> np.ndarray:
        return self.q.choose((scheduler_features(state, chunk) - self.mean) / self.std).numpy()


def train_scheduler(rows: dict[str, np.ndarray], costs: np.ndarray, budget: float, cfg: SchedulerConfig,
                    seed: int = 0) -> TrainedScheduler:
    """Lagrangian fitted-Q on logged chunks (r_k - lambda c_k, gamma) with dual ascent on lambda so that the
    greedy scheduler's mean cost per chunk on the logged states meets ``budget`` (costs already normalised)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = scheduler_features(rows["state"], rows["chunk"])
    mean, std = x.mean(0), x.std(0).clamp_min(1e-3)
    x = (x - mean) / std
    following = torch.as_tensor(rows["following"])
    rate_index = torch.as_tensor(np.searchsorted(RATES, rows["rate"]))
    reward_table, cost_table = rewards(), torch.as_tensor(costs, dtype=torch.float32)
    data = {
        "features": x, "rate_index": rate_index, "reward": reward_table[rate_index],
        "cost": cost_table[torch.arange(len(x)), rate_index],
        "next_features": x[following.clamp_min(0)], "done": following < 0,
    }
    q = RateQ(x.shape[1], cfg.hidden)
    target = copy.deepcopy(q)
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    lam, lambdas, pid = 0.0, [], PIDLagrangian() if cfg.pid else None
    step = 0
    for _ in range(cfg.dual_iterations):
        for _ in range(cfg.q_steps):
            idx = torch.randint(len(x), (cfg.batch_size,), generator=gen)
            loss = fitted_q_loss(q, target, {k: v[idx] for k, v in data.items()}, lam, cfg.gamma)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % cfg.target_every == 0:
                target.load_state_dict(q.state_dict())
        with torch.no_grad():
            greedy = q(x).argmax(-1)
        cost = float(cost_table[torch.arange(len(x)), greedy].mean())
        lam = pid.update(cost, budget) if pid else dual_ascent(lam, cost, budget, cfg.dual_lr)
        lambdas.append(lam)
    with torch.no_grad():
        cost = float(cost_table[torch.arange(len(x)), q(x).argmax(-1)].mean())
    return TrainedScheduler(q.eval(), mean, std, lam, cost, lambdas)


class ChunkDensity(nn.Module):
    """A Gaussian model of the demonstrated chunk given the state and instruction (positions relative to the
    gripper): the DemoSpeedup-style heuristic's entropy. Gaussian entropy is analytic, so no KDE over sampled
    chunks is needed (DemoSpeedup uses KDE because ACT / diffusion policies have no closed form)."""

    def __init__(self, state_dim: int, horizon: int, hidden: int = 256):
        super().__init__()
        self.horizon = horizon
        self.net = mlp(state_dim + MAX_WORDS * N_TOKENS, hidden, 4 * horizon, layers=2)

    def forward(self, state: torch.Tensor, instruction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        words = nn.functional.one_hot(instruction, N_TOKENS).float().flatten(1)
        mean, log_std = self.net(torch.cat([state, words], 1)).view(-1, self.horizon, 4).split(2, -1)
        return mean, log_std.clamp(-7, 2)

    def entropy(self, state: np.ndarray, instruction: np.ndarray) -> np.ndarray:
        """Differential entropy of the positions, up to a constant: sum of log-stds."""
        with torch.no_grad():
            _, log_std = self(torch.as_tensor(state), torch.as_tensor(instruction))
        return log_std.sum((1, 2)).numpy()

    def fit(self, state: np.ndarray, instruction: np.ndarray, chunk: np.ndarray, steps: int = 2000,
            seed: int = 0) -> list[float]:
        gen = torch.Generator().manual_seed(seed)
        s, w = torch.as_tensor(state), torch.as_tensor(instruction)
        target = torch.as_tensor(chunk[..., :2] - state[:, None, :2], dtype=torch.float32)
        opt = torch.optim.Adam(self.parameters(), lr=1e-3)
        curve = []
        for _ in range(steps):
            idx = torch.randint(len(s), (256,), generator=gen)
            mean, log_std = self(s[idx], w[idx])
            nll = (((target[idx] - mean) / log_std.exp()) ** 2 / 2 + log_std).sum((1, 2)).mean()
            opt.zero_grad()
            nll.backward()
            opt.step()
            curve.append(float(nll.detach()))
        return curve


def entropy_scheduler(density: ChunkDensity, thresholds: np.ndarray, shift: int = 0):
    """k = 1 + (number of entropy thresholds exceeded) + shift, clipped to the rates: casual, high-entropy
    chunks are sped up most (DemoSpeedup's rule; thresholds are quantiles of the logged entropies)."""

    def choose(state: np.ndarray, chunk: np.ndarray, context) -> np.ndarray:
        sim, rows = context["sim"], context["rows"]
        h = density.entropy(state, sim._instruction[rows])
        k = 1 + (h[:, None] > thresholds[None]).sum(1) + shift
        return np.clip(k, RATES[0], RATES[-1])

    return choose


def oracle_scheduler(budget: float):
    """The largest rate whose true simulator deviation is within ``budget`` (``true_deviations``)."""

    def choose(state: np.ndarray, chunk: np.ndarray, context) -> np.ndarray:
        dev = true_deviations(context["sim"], context["rows"], chunk, _peek(context["frozen"], context["rows"]))
        ok = dev <= budget
        return np.array([max(k for k, fine in zip(RATES, row, strict=True) if fine or k == 1) for row in ok])

    return choose


def segment_oracle(state: np.ndarray, chunk: np.ndarray, context) -> np.ndarray:
    """The demonstrator's labels: rate 4 where every waypoint of the chunk is casual, else 1."""
    return np.where(context["frozen"].last_casual[context["rows"]], RATES[-1], 1)


def fixed_rate(k: int):
    def choose(state: np.ndarray, chunk: np.ndarray, context=None) -> np.ndarray:
        return np.full(len(state), k)

    return choose


def random_rates(seed: int):
    """The behaviour scheduler of the logged data: a uniform rate per chunk, so every rate is seen."""
    rng = np.random.default_rng(seed)

    def choose(state: np.ndarray, chunk: np.ndarray, context=None) -> np.ndarray:
        return rng.choice(RATES, size=len(state))

    return choose


def paired(base: dict, method: dict) -> dict:
    """Success, speed-up on episodes both solve, and the one-sided 95% lower bound of the success difference."""
    both = base["success"] & method["success"]
    diff = method["success"].astype(float) - base["success"].astype(float)
    n = len(diff)
    lower = diff.mean() - 1.645 * diff.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    speedup = float(base["steps"][both].mean() / method["steps"][both].mean()) if both.any() else None
    return {"success": float(method["success"].mean()), "base_success": float(base["success"].mean()),
            "success_diff": float(diff.mean()), "success_diff_lower95": float(lower), "speedup": speedup,
            "steps": float(method["steps"][method["success"]].mean()) if method["success"].any() else None,
            "episodes": n}
