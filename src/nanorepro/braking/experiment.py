"""Experiment ``reinvbc``: offline model-based RL against a tuned rule-based ABS, on surfaces never logged.

Per seed: tune the rule-based ABS on the training surfaces (documented grid); log stops of
a noisy, perturbed version of it on dry asphalt, wet asphalt and snow; learn two stop
models (policy model A, selection model B: other seed, other split); check the model gate;
train ReinVBC (SAC on whole imagined stops, halt on disagreement, checkpoint chosen by B),
vanilla MOPO and BC from the same logs; then evaluate everything in the true simulator on
held-out surfaces (dry concrete, wet cobblestone, a slush blend, a mid-stop change from dry
asphalt to wet cobblestone), 20 initial speeds each; ice and dry cobblestone are reported.
No learned controller sees the true simulator before the final evaluation.
"""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np

from nanorepro.braking import data as logs
from nanorepro.braking.controllers import ABSGrid, ABSParams, LockedWheels, NoisyABS, RuleBasedABS, SlipPI
from nanorepro.braking.evaluation import run_many, tune_abs
from nanorepro.braking.reinvbc import ReinVBCConfig, fit_from_logs
from nanorepro.common.experiment import ClaimCheck, Experiment, Metrics, Profile, RunContext, Table
from nanorepro.common.seeding import rng_stream
from nanorepro.envs.braking import SURFACES, Road, SimConfig, blend

TRAIN_ROADS = ("dry_asphalt", "wet_asphalt", "snow")
HELD_OUT = ("dry_concrete", "wet_cobblestone", "slush", "dry_asphalt->wet_cobblestone@1s")
REPORTED = ("dry_cobblestone", "ice")
CONTROLLERS = ("locked", "pi_fixed", "pi_oracle", "abs", "behaviour", "bc", "mopo", "reinvbc", "reinvbc_last")
LABELS = {"locked": "locked wheels", "pi_fixed": "PI, slip 0.12", "pi_oracle": "PI, oracle slip",
          "abs": "tuned rule-based ABS", "behaviour": "behaviour (noisy ABS)", "bc": "BC", "mopo": "vanilla MOPO",
          "reinvbc": "ReinVBC (selected)", "reinvbc_last": "ReinVBC (last)"}


def evaluation_roads() -> dict[str, Road]:
    s = SURFACES
    roads = {name: Road(s[name]) for name in (*TRAIN_ROADS, "dry_concrete", "wet_cobblestone", *REPORTED)}
    roads["slush"] = Road(blend("slush", (0.5, s["wet_asphalt"]), (0.5, s["snow"])))
    roads["dry_asphalt->wet_cobblestone@1s"] = Road(s["dry_asphalt"], s["wet_cobblestone"], 1.0)
    return roads


class OraclePI(SlipPI):
    """PI on each stop's true optimal slip, switching target when its road switches surface."""

    def __init__(self, roads: list[Road], speeds: int, dt: float):
        before = np.repeat([r.before.peak()[0] for r in roads], speeds)
        after = np.repeat([(r.after or r.before).peak()[0] for r in roads], speeds)
        self.switch_steps = np.repeat([r.switch_s / dt for r in roads], speeds)
        self.targets = (before, after)
        super().__init__(before, dt=dt)

    def reset(self, n, rng):
        super().reset(n, rng)
        self.steps = 0

    def act(self, meas):
        self.target = np.where(self.steps >= self.switch_steps, *self.targets[::-1])
        self.steps += 1
        return super().act(meas)


def run(cfg: ReinVBCConfig, ctx: RunContext) -> Metrics:
    seed, sim = ctx.seed, SimConfig()
    state = ctx.load_checkpoint() or {}
    save = lambda: ctx.save_checkpoint(state)  # noqa: E731
    bar = ctx.task(f"reinvbc seed {seed}", total=3 * cfg.model_steps + 2 * (cfg.updates + 500) + 2)
    train_roads = [Road(SURFACES[n]) for n in TRAIN_ROADS]

    # 1. The production-ABS stand-in: grid search on the training surfaces only.
    if "abs" not in state:
        grid = ABSGrid() if cfg.tune_grid == "full" else ABSGrid(*(values[:1] for values in
                                                                  dataclasses.astuple(ABSGrid())))
        best, table = tune_abs(grid, train_roads, np.linspace(15, 30, cfg.tune_speeds), rng_stream(seed, "abs"))
        state["abs"] = {"params": dataclasses.asdict(best), "score": table[0][1], "worst": table[-1][1],
                        "candidates": len(table)}
        save()
    abs_params = ABSParams(**state["abs"]["params"])
    bar.advance(1)

    # 2. Logs of the noisy behaviour policy (regenerated: deterministic in the seed).
    ds = logs.generate(NoisyABS(abs_params), train_roads, cfg.n_stops, rng_stream(seed, "data"))

    # 3. Models, model gate, ReinVBC, vanilla MOPO and BC, from the logs alone.
    trained = fit_from_logs(ds, cfg, seed, state=state, save=save, on_step=lambda _s: bar.advance(1),
                            behaviour=NoisyABS(abs_params), sim=sim)

    # 4. Evaluation in the true simulator.
    roads = evaluation_roads()
    speeds = np.linspace(15.0, 30.0, cfg.eval_speeds)
    road_list = list(roads.values())
    controllers = {
        "locked": LockedWheels(), "pi_fixed": SlipPI(0.12),
        "pi_oracle": OraclePI(road_list, len(speeds), sim.control_dt_s),
        "abs": RuleBasedABS(abs_params), "behaviour": NoisyABS(abs_params), "bc": trained.policies["bc"],
        "mopo": trained.policies["mopo"], "reinvbc": trained.policies["reinvbc"],
        "reinvbc_last": trained.policies["reinvbc_last"],
    }
    trace_row = list(roads).index("dry_concrete") * len(speeds) + int(np.argmin(np.abs(speeds - cfg.trace_speed)))
    results = run_many(controllers, road_list, speeds, rng_stream(seed, "eval"), trace_index=trace_row)
    evaluation = {name: {road: _summary(result, idx) for road, idx in result.by_road().items()}
                  for name, result in results.items()}
    bar.finish()
    return {
        "abs": state["abs"],
        "dataset": {"stops": ds.n_episodes, "transitions": len(ds.obs)},
        **trained.report,
        "evaluation": evaluation,
        "traces": {name: results[name].trace for name in ("abs", "reinvbc")},
    }


def _summary(result, idx: np.ndarray) -> dict:
    return {
        "distance": float(result.distance[idx].mean()),
        "time": float(result.time[idx].mean()),
        "lock_fraction": float(result.lock_fraction[idx].mean()),
        "deep_slip_fraction": float(result.deep_slip_fraction[idx].mean()),
        "slip_error": float(result.slip_error[idx].mean()),
        "chatter": float(result.chatter[idx].mean()),
        "stopped": float(result.stopped[idx].mean()),
    }


# --------------------------------------------------------------------------- claim checks


def ratio_to(runs: list[Metrics], name: str, road: str, base: str = "abs", key: str = "distance") -> float:
    """Seed mean of (name's mean over the road's stops) / (base's)."""
    return statistics.fmean(r["evaluation"][name][road][key] / r["evaluation"][base][road][key] for r in runs)


def mean_ratio(name: str, roads: tuple[str, ...] = HELD_OUT, base: str = "abs"):
    def measure(runs: list[Metrics]) -> float:
        return statistics.fmean(ratio_to(runs, name, road, base) for road in roads)
    return measure


def worst_surface_ratio(runs: list[Metrics]) -> float:
    return max(ratio_to(runs, "reinvbc", road) for road in HELD_OUT)


def lock_excess(runs: list[Metrics]) -> float:
    """Lock-time fraction of ReinVBC minus the ABS's, mean over held-out surfaces and seeds."""
    return statistics.fmean(r["evaluation"]["reinvbc"][road]["lock_fraction"]
                            - r["evaluation"]["abs"][road]["lock_fraction"] for r in runs for road in HELD_OUT)


def gate_error(runs: list[Metrics]) -> float:
    return max(abs(r["gate"]["ratio"] - 1.0) for r in runs)


def gate_worst_surface(runs: list[Metrics]) -> float:
    return max(abs(v - 1.0) for r in runs for v in r["gate"]["per_surface"].values())


CHECKS = (
    ClaimCheck("C1", "ReinVBC / tuned ABS stopping distance, mean over held-out surfaces", mean_ratio("reinvbc"),
               "<=", 1.00),
    ClaimCheck("C2", "ReinVBC / tuned ABS stopping distance, worst held-out surface", worst_surface_ratio,
               "<=", 1.05),
    ClaimCheck("C3", "ReinVBC lock-time fraction minus the ABS's, held-out surfaces", lock_excess, "<=", 0.01),
    ClaimCheck("C4", "ReinVBC / behaviour policy stopping distance, held-out surfaces",
               mean_ratio("reinvbc", base="behaviour"), "<=", 0.95),
    ClaimCheck("C5", "Model gate: |behaviour distance in model A / real - 1|, worst seed", gate_error, "<=", 0.10),
    ClaimCheck("S1", "Strong pass if <= 0.95: ReinVBC / ABS, held-out mean (same as C1)", mean_ratio("reinvbc")),
    ClaimCheck("R1", "ReinVBC last checkpoint / ABS, held-out mean", mean_ratio("reinvbc_last")),
    ClaimCheck("R2", "Vanilla MOPO / ABS, held-out mean", mean_ratio("mopo")),
    ClaimCheck("R3", "BC / ABS, held-out mean", mean_ratio("bc")),
    ClaimCheck("R4", "PI at slip 0.12 / ABS, held-out mean", mean_ratio("pi_fixed")),
    ClaimCheck("R5", "Oracle-slip PI / ABS, held-out mean", mean_ratio("pi_oracle")),
    ClaimCheck("R6", "ReinVBC / ABS on the training surfaces", mean_ratio("reinvbc", TRAIN_ROADS)),
    ClaimCheck("R7", "ReinVBC / ABS on dry cobblestone (not gated)", mean_ratio("reinvbc", ("dry_cobblestone",))),
    ClaimCheck("R8", "ReinVBC / ABS on ice (not gated)", mean_ratio("reinvbc", ("ice",))),
    ClaimCheck("R9", "Model gate, worst |ratio - 1| per training surface and seed", gate_worst_surface),
)


# --------------------------------------------------------------------------- report


def tables(runs: list[Metrics]) -> list[Table]:
    roads = list(runs[0]["evaluation"]["abs"])
    shown = ("locked", "pi_oracle", "abs", "behaviour", "bc", "mopo", "reinvbc", "reinvbc_last")

    def mean(name, road, key):
        return statistics.fmean(r["evaluation"][name][road][key] for r in runs)

    rows = []
    for road in roads:
        tag = " (held out)" if road in HELD_OUT else " (reported)" if road in REPORTED else " (training)"
        cells = [f"{mean(n, road, 'distance'):.1f}" + ("" if n == "abs" else f" ({ratio_to(runs, n, road):.3f})")
                 for n in shown]
        rows.append([road + tag, *cells])
    distance = Table(f"Stopping distance (m), mean over initial speeds (eval_speeds) and {len(runs)} seeds "
                     "(ratio to the tuned ABS)",
                     ["road", *(LABELS[n] for n in shown)], rows)
    keys = ("time", "lock_fraction", "deep_slip_fraction", "slip_error", "chatter")
    detail = Table("Held-out surfaces, mean over surfaces, stops and seeds",
                   ["controller", "stop time (s)", "lock fraction", "deep-slip fraction", "|slip - slip*|",
                    "chatter (|du|/s)"],
                   [[LABELS[n], *(f"{statistics.fmean(mean(n, road, k) for road in HELD_OUT):.3f}" for k in keys)]
                    for n in CONTROLLERS])
    model_rows = [[f"seed {i}", f"{r['gate']['ratio']:.3f}",
                   ", ".join(f"{s} {v:.3f}" for s, v in r["gate"]["per_surface"].items()),
                   str(r["models"]["A"]["steps"]), f"{r['abs']['score']:.3f} (of {r['abs']['candidates']})",
                   str(r["policies"]["reinvbc"]["best_update"])] for i, r in enumerate(runs)]
    models = Table("Model gate (behaviour policy's distance, model A / real), model training, ABS tuning",
                   ["seed", "gate ratio", "per training surface", "model A steps", "ABS grid score (dist/ideal)",
                    "selected update"], model_rows)
    return [distance, detail, models]


def plot(runs: list[Metrics]) -> dict:
    from matplotlib.figure import Figure

    figures = {}
    traces = runs[0]["traces"]
    fig = Figure(figsize=(15, 3.8), layout="tight")
    axes = fig.subplots(1, 4)
    for name, style in (("abs", "C0"), ("reinvbc", "C3")):
        tr = traces[name]
        axes[0].plot(tr["t"], tr["speed"], color=style, label=f"{LABELS[name]}: car")
        axes[0].plot(tr["t"], tr["wheel_speed"], color=style, ls=":", label=f"{LABELS[name]}: wheel")
        axes[1].plot(tr["t"], tr["slip"], color=style, label=LABELS[name])
        axes[2].plot(tr["t"], tr["pressure"], color=style, label=LABELS[name])
        axes[3].plot(tr["t"], tr["command"], color=style, label=LABELS[name], lw=0.8)
    for ax, title in zip(axes, ("speed (m/s)", "slip (dashed: optimal)", "brake pressure (0-1)", "command (0-1)"),
                         strict=True):
        ax.set_title(title)
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
    fig.suptitle("One stop on dry concrete (held out) from about 25 m/s (trace_speed), seed 0")
    axes[1].axhline(SURFACES["dry_concrete"].peak()[0], color="grey", ls="--", lw=0.8)
    axes[0].legend(fontsize=7)
    figures["traces"] = fig

    roads = list(runs[0]["evaluation"]["abs"])
    shown = ("locked", "pi_oracle", "behaviour", "bc", "mopo", "reinvbc")
    fig = Figure(figsize=(15, 4.2), layout="tight")
    ax = fig.subplots()
    width = 0.8 / len(shown)
    for i, name in enumerate(shown):
        values = [ratio_to(runs, name, road) for road in roads]
        ax.bar(np.arange(len(roads)) + (i - len(shown) / 2 + 0.5) * width, values, width, label=LABELS[name])
    ax.axhline(1.0, color="k", lw=1)
    ax.axhline(0.95, color="k", lw=0.6, ls=":")
    ax.set_xticks(np.arange(len(roads)), [r.replace("->", "->\n") for r in roads], fontsize=8)
    ax.set_ylabel("stopping distance / tuned ABS")
    ax.set_ylim(0.7, 1.8)
    ax.set_title(f"Stopping distance relative to the tuned rule-based ABS (mean of {len(runs)} seeds); "
                 "held out: " + ", ".join(HELD_OUT))
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    figures["distance"] = fig

    fig = Figure(figsize=(7, 3.8), layout="tight")
    ax = fig.subplots()
    for name, color in (("reinvbc", "C3"), ("mopo", "C2")):
        for i, r in enumerate(runs):
            curve = r["policies"][name]["curve"]
            ax.plot([p["update"] for p in curve], [p["selection_score"] for p in curve], color=color, alpha=0.7,
                    label=LABELS[name].split(" (")[0] if i == 0 else None)
    ax.set_xlabel("SAC update")
    ax.set_ylabel("imagined return (minus distance and costs), model B")
    ax.set_title("Checkpoint selection in the second model (never the simulator)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figures["selection"] = fig
    return figures


EXPERIMENT = Experiment(
    name="reinvbc",
    system="reinvbc",
    summary="Offline model-based RL braking policy vs a tuned rule-based ABS on surfaces never logged.",
    profiles={
        "smoke": Profile(ReinVBCConfig(n_stops=30, tune_grid="small", tune_speeds=1, members=2, elites=1,
                                       model_hidden=32, model_layers=2, model_steps=40, unroll=2, updates=60,
                                       rollout_batch=8, select_every=30, bc_steps=50, eval_speeds=2,
                                       sac_hidden=32), seeds=1),
        "quick": Profile(ReinVBCConfig(n_stops=150, model_steps=1000, updates=6000, select_every=1500,
                                       eval_speeds=5), seeds=1),
        "full": Profile(ReinVBCConfig(), seeds=3),
    },
    run=run,
    checks=CHECKS,
    plot=plot,
    tables=tables,
    threads=2,
    device="cpu",
)
