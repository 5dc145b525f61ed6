"""Experiments ``reval`` (T1, value-based RL with replay vs GRPO) and ``start`` (T2, thinking-only RL).

``reval``: a TinyGPT is SFT'd on noisy chain-arithmetic demonstrations (right when greedy,
wrong at times when sampling), then trained with GRPO (mu = 1 and 4, Dr. GRPO loss), ReVal
(our reconstructed loss) and ReVal with the stepwise term only, at an equal budget of
generated samples; sampled accuracy on held-out problems every few iterations.

``start``: a TinyGPT memorises a knowledge base (people -> cities -> countries) and is SFT'd
to answer multiple-choice questions on some people with "<city:country>" thinking. RL
prompts on other people put the answer at "A" 75% of the time. Joint GRPO (every token)
against START (phase 1 trains only the thinking, phase 2 the response), equal samples;
then Cross-Generation: three readers answer from each policy's thinking.
No hyperparameter was tuned for these runs beyond the notes' defaults (the tuning budget is zero).
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

import numpy as np
import torch

from nanorepro.common.experiment import ClaimCheck, Experiment, Metrics, Profile, RunContext, Table
from nanorepro.common.seeding import rng_stream
from nanorepro.llm_rl.crossgen import EMPTY_THINKING, efficacy, policy_thinkings, reader_accuracy, reader_examples
from nanorepro.llm_rl.grpo import GRPOConfig
from nanorepro.llm_rl.loop import RLConfig, accuracy, rl_train, thinking_mask, train_lm
from nanorepro.llm_rl.policy import CharTokenizer, TinyGPT, TinyGPTConfig
from nanorepro.llm_rl.reval import ReValConfig
from nanorepro.llm_rl.tasks import (
    T1_ALPHABET,
    T2_ALPHABET,
    make_kb,
    t1_reward,
    t1_sample,
    t2_reward,
    t2_sample,
    thinking_span,
)

# --------------------------------------------------------------------------- reval (T1)

REVAL_RUNS = ("grpo_mu1", "grpo_mu4", "reval", "reval_step_only")
REVAL_LABELS = {"grpo_mu1": "GRPO (Dr., mu=1)", "grpo_mu4": "GRPO (Dr., mu=4)", "reval": "ReVal",
                "reval_step_only": "ReVal, stepwise term only"}


@dataclass(frozen=True)
class ReValExperimentConfig:
    numbers: int = 3  # terms per chain (4: two intermediate sums)
    d_model: int = 128
    layers: int = 4
    sft_steps: int = 800
    sft_demos: int = 20000
    noisy_frac: float = 0.3
    iterations: int = 100  # x 16 prompts x 8 samples = 12,800 samples
    prompts_per_iter: int = 16
    group: int = 8
    eval_every: int = 5
    eval_problems: int = 250
    eval_samples: int = 4
    lr: float = 1e-4
    beta: float = 0.3
    updates_per_batch: int = 4
    buffer_batches: int = 4
    target_accuracy: float = 0.85

    def validate(self) -> None:
        if self.numbers not in (3, 4) or min(self.iterations, self.sft_steps, self.eval_every) < 1:
            raise ValueError("numbers must be 3 or 4; iterations, sft_steps and eval_every >= 1")


def reval_sft(base: TinyGPT, tok: CharTokenizer, cfg: ReValExperimentConfig, seed: int, on_step=None) -> None:
    """SFT on the seed's T1 demonstrations (a ``noisy_frac`` share with a shifted running sum)."""
    demos = [(p.prompt, p.gold) for p in t1_sample(rng_stream(seed, "sft"), cfg.sft_demos, "train",
                                                   cfg.numbers, cfg.noisy_frac)]
    train_lm(base, tok, demos, cfg.sft_steps, 128, 1e-3, torch.Generator().manual_seed(seed), on_step=on_step)


def reval_arms(cfg: ReValExperimentConfig) -> dict[str, RLConfig]:
    """The RL settings of each arm (run seed: ``seed * 100 + len(name)``)."""
    grpo = GRPOConfig(variant="dr_grpo", lr=cfg.lr)
    reval = ReValConfig(beta=cfg.beta, lr=cfg.lr, updates_per_batch=cfg.updates_per_batch,
                        buffer_batches=cfg.buffer_batches, minibatch=cfg.prompts_per_iter * cfg.group)
    arms = {
        "grpo_mu1": RLConfig("grpo", grpo=grpo),
        "grpo_mu4": RLConfig("grpo", grpo=replace(grpo, mu=4)),
        "reval": RLConfig("reval", reval=reval),
        "reval_step_only": RLConfig("reval", reval=replace(reval, lambda_traj=0.0)),
    }
    return {name: replace(rl, iterations=cfg.iterations, prompts_per_iter=cfg.prompts_per_iter, group=cfg.group,
                          max_new=16, eval_every=cfg.eval_every, eval_samples=cfg.eval_samples)
            for name, rl in arms.items()}


def reval_run(cfg: ReValExperimentConfig, ctx: RunContext) -> Metrics:
    tok = CharTokenizer(T1_ALPHABET)
    state = ctx.load_checkpoint() or {}
    bar = ctx.task(f"reval seed {ctx.seed}", total=cfg.sft_steps + len(REVAL_RUNS) * cfg.iterations)
    torch.manual_seed(ctx.seed)
    base = TinyGPT(TinyGPTConfig(tok.vocab_size, cfg.d_model, cfg.layers, 4, 40))
    if "sft" in state:
        base.load_state_dict(state["sft"])
        bar.advance(cfg.sft_steps)
    else:
        reval_sft(base, tok, cfg, ctx.seed, on_step=lambda _s: bar.advance(1))
        state["sft"] = base.state_dict()
        ctx.save_checkpoint(state)
    test = t1_sample(rng_stream(ctx.seed, "test"), cfg.eval_problems, "test", cfg.numbers)
    g = torch.Generator().manual_seed(ctx.seed)
    greedy, _ = accuracy(base, tok, test, t1_reward, 1, 16, g, temperature=0)
    sampled, _ = accuracy(base, tok, test, t1_reward, cfg.eval_samples, 16, g)
    curves = state.setdefault("curves", {})
    for name, rl in reval_arms(cfg).items():
        if name in curves:
            bar.advance(cfg.iterations)
            continue
        policy = copy.deepcopy(base)
        curves[name] = rl_train(policy, tok, partial(_t1_train, numbers=cfg.numbers), {"test": test}, t1_reward, rl,
                                seed=ctx.seed * 100 + len(name), on_iteration=lambda _i: bar.advance(1))
        ctx.save_checkpoint(state)
    bar.finish()
    return {"sft": {"greedy": greedy, "sampled": sampled}, "curves": curves, "budget": cfg.iterations *
            cfg.prompts_per_iter * cfg.group, "target_accuracy": cfg.target_accuracy}


def _t1_train(rng, n, numbers):
    return t1_sample(rng, n, "train", numbers)


def auc_first_half(curve: list[dict], budget: int) -> float:
    """Mean accuracy (trapezoid) over generated samples in [0, budget / 2]."""
    pts = [(p["samples"], p["acc_test"]) for p in curve if p["samples"] <= budget / 2]
    xs, ys = zip(*pts, strict=True)
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0])) if len(xs) > 1 else ys[0]


def samples_to_reach(curve: list[dict], level: float) -> float | None:
    return next((p["samples"] for p in curve if p["acc_test"] >= level), None)


def final_accuracy(curve: list[dict]) -> float:
    return statistics.fmean(p["acc_test"] for p in curve[-3:])


def _mean(runs, fn):
    values = [fn(r) for r in runs]
    return None if any(v is None for v in values) else statistics.fmean(values)


def auc_gain(other: str):
    return lambda runs: _mean(runs, lambda r: auc_first_half(r["curves"]["reval"], r["budget"])
                              - auc_first_half(r["curves"][other], r["budget"]))


def reach_ratio(numerator: str, denominator: str):
    def measure(runs):
        def one(r):
            a = samples_to_reach(r["curves"][numerator], r["target_accuracy"])
            b = samples_to_reach(r["curves"][denominator], r["target_accuracy"])
            return None if a is None or b is None else a / b
        return _mean(runs, one)
    return measure


def final_gap(other: str):
    return lambda runs: _mean(runs, lambda r: final_accuracy(r["curves"]["reval"]) - final_accuracy(r["curves"][other]))


REVAL_CHECKS = (
    ClaimCheck("V1", "ReVal minus GRPO(mu=1): area under accuracy over the first half of the samples",
               auc_gain("grpo_mu1"), ">=", 0.0),
    ClaimCheck("V2", "Samples to 85% sampled accuracy: ReVal / GRPO(mu=1) (n/a if either never gets there)",
               reach_ratio("reval", "grpo_mu1"), "<=", 0.75),
    ClaimCheck("V3", "Final accuracy (last 3 evaluations): ReVal minus GRPO(mu=1)", final_gap("grpo_mu1"), ">=",
               -0.02),
    ClaimCheck("R1", "ReVal minus GRPO(mu=4): first-half area", auc_gain("grpo_mu4")),
    ClaimCheck("R2", "ReVal minus GRPO(mu=4): final accuracy", final_gap("grpo_mu4")),
    ClaimCheck("R3", "Stepwise-only ReVal minus GRPO(mu=1): final accuracy",
               lambda runs: _mean(runs, lambda r: final_accuracy(r["curves"]["reval_step_only"])
                                  - final_accuracy(r["curves"]["grpo_mu1"]))),
    ClaimCheck("R4", "SFT model: sampled accuracy (T = 1) before RL",
               lambda runs: _mean(runs, lambda r: r["sft"]["sampled"])),
)


def reval_tables(runs: list[Metrics]) -> list[Table]:
    rows = []
    for name in REVAL_RUNS:
        aucs = [auc_first_half(r["curves"][name], r["budget"]) for r in runs]
        finals = [final_accuracy(r["curves"][name]) for r in runs]
        reach = [samples_to_reach(r["curves"][name], r["target_accuracy"]) for r in runs]
        rows.append([REVAL_LABELS[name], _ci(aucs), _ci(finals),
                     ", ".join("never" if x is None else str(x) for x in reach)])
    return [Table(f"T1 sampled accuracy, {len(runs)} seeds (mean ± 95% CI); budget {runs[0]['budget']} samples",
                  ["method", "first-half area", "final (last 3 evals)", "samples to 85% (per seed)"], rows)]


def _ci(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    half = 1.96 * statistics.stdev(values) / len(values) ** 0.5
    return f"{mean:.3f} ± {half:.3f}"


def reval_plot(runs: list[Metrics]) -> dict:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.2), layout="tight")
    ax = fig.subplots()
    for i, name in enumerate(REVAL_RUNS):
        xs = [p["samples"] for p in runs[0]["curves"][name]]
        ys = np.array([[p["acc_test"] for p in r["curves"][name]] for r in runs])
        ax.plot(xs, ys.mean(0), color=f"C{i}", label=REVAL_LABELS[name])
        if len(runs) > 1:
            ax.fill_between(xs, ys.min(0), ys.max(0), color=f"C{i}", alpha=0.15)
    ax.axhline(runs[0]["target_accuracy"], color="grey", ls=":")
    ax.set_xlabel("generated samples")
    ax.set_ylabel("sampled accuracy on held-out problems")
    ax.set_title(f"T1 chain arithmetic: accuracy vs samples ({len(runs)} seeds; band: min-max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return {"accuracy_vs_samples": fig}


REVAL_EXPERIMENT = Experiment(
    name="reval",
    system="reval",
    summary="Value-based RL with replay (ReVal, our reconstructed loss) vs GRPO on chain arithmetic.",
    profiles={
        "smoke": Profile(ReValExperimentConfig(d_model=32, layers=1, sft_steps=20, sft_demos=200, iterations=2,
                                               prompts_per_iter=4, group=4, eval_every=1, eval_problems=8,
                                               eval_samples=2), seeds=1),
        "quick": Profile(ReValExperimentConfig(sft_steps=500, iterations=40), seeds=1),
        "full": Profile(ReValExperimentConfig(), seeds=3),
    },
    run=reval_run, checks=REVAL_CHECKS, plot=reval_plot, tables=reval_tables, threads=1, device="cpu",
)


# --------------------------------------------------------------------------- start (T2)

POLICIES = ("sft", "joint", "start", "start_think")
POLICY_LABELS = {"sft": "SFT", "joint": "joint GRPO", "start": "START", "start_think": "START, thinking only"}
READERS = {"S": (64, 2), "M": (128, 3), "L": (192, 4)}


@dataclass(frozen=True)
class STARTExperimentConfig:
    n_people: int = 300
    n_cities: int = 40
    n_countries: int = 12
    d_model: int = 128
    layers: int = 4
    pretrain_steps: int = 1500
    fact_repeats: int = 8  # copies of each phrasing of each fact in the pretraining mixture
    sft_questions: int = 3000
    iterations: int = 60  # per method: 60 x 16 x 8 = 7,680 samples
    start_phase1: float = 0.5  # share of START's iterations that train only the thinking
    phase2: Literal["response", "joint", "none"] = "response"
    prompts_per_iter: int = 16
    group: int = 8
    eval_every: int = 10
    eval_problems: int = 200
    eval_samples: int = 4
    lr: float = 1e-4
    reader_steps: int = 800
    crossgen_samples: int = 2

    def validate(self) -> None:
        if not 0 < self.start_phase1 <= 1 or min(self.iterations, self.pretrain_steps, self.reader_steps) < 1:
            raise ValueError("need 0 < start_phase1 <= 1 and positive step counts")


def start_run(cfg: STARTExperimentConfig, ctx: RunContext) -> Metrics:
    tok = CharTokenizer(T2_ALPHABET)
    state = ctx.load_checkpoint() or {}
    kb = make_kb(rng_stream(ctx.seed, "kb"), cfg.n_people, cfg.n_cities, cfg.n_countries)
    bar = ctx.task(f"start seed {ctx.seed}", total=cfg.pretrain_steps + 3 * cfg.iterations + 3 * cfg.reader_steps)
    facts = [("", f) for f in kb.facts()] * cfg.fact_repeats
    qa = [(p.prompt, p.gold) for p in t2_sample(kb, rng_stream(ctx.seed, "sft"), cfg.sft_questions, "sft",
                                                 "balanced")]
    torch.manual_seed(ctx.seed)
    base = TinyGPT(TinyGPTConfig(tok.vocab_size, cfg.d_model, cfg.layers, 4, 64))
    if "sft" in state:
        base.load_state_dict(state["sft"])
        bar.advance(cfg.pretrain_steps)
    else:
        train_lm(base, tok, facts + qa, cfg.pretrain_steps, 128, 1e-3, torch.Generator().manual_seed(ctx.seed),
                 on_step=lambda _s: bar.advance(1))
        state["sft"] = base.state_dict()
        ctx.save_checkpoint(state)
    rng = rng_stream(ctx.seed, "eval")
    evals = {"balanced": t2_sample(kb, rng, cfg.eval_problems, "test", "balanced"),
             "anti": t2_sample(kb, rng, cfg.eval_problems, "test", "anti"),
             "shortcut": t2_sample(kb, rng, cfg.eval_problems, "test", "shortcut")}
    rl = RLConfig("grpo", iterations=cfg.iterations, prompts_per_iter=cfg.prompts_per_iter, group=cfg.group,
                  max_new=16, eval_every=cfg.eval_every, eval_samples=cfg.eval_samples,
                  grpo=GRPOConfig(variant="dr_grpo", lr=cfg.lr))
    policies = {"sft": base}
    curves = state.setdefault("curves", {})
    weights = state.setdefault("policies", {})
    for name in ("joint", "start", "start_think"):
        policy = copy.deepcopy(base)
        if name in weights:
            policy.load_state_dict(weights[name])
            bar.advance(cfg.iterations)
        elif name == "joint":
            curves[name] = rl_train(policy, tok, partial(_t2_train, kb=kb), evals, t2_reward, rl, ctx.seed * 100 + 1,
                                    on_iteration=lambda _i: bar.advance(1))
        else:  # START: thinking-only phase 1, then phase 2 (start_think: phase 1 for the whole budget)
            n1 = max(1, round(cfg.start_phase1 * cfg.iterations)) if name == "start" else cfg.iterations
            phase1 = rl_train(policy, tok, partial(_t2_train, kb=kb), evals, t2_reward, replace(rl, iterations=n1),
                              ctx.seed * 100 + 2, token_mask=lambda b: thinking_mask(b, tok, "thinking"),
                              on_iteration=lambda _i: bar.advance(1))
            phase2 = []
            if n1 < cfg.iterations and cfg.phase2 != "none":
                which = None if cfg.phase2 == "joint" else (lambda b: thinking_mask(b, tok, "response"))
                phase2 = rl_train(policy, tok, partial(_t2_train, kb=kb), evals, t2_reward,
                                  replace(rl, iterations=cfg.iterations - n1), ctx.seed * 100 + 3, token_mask=which,
                                  on_iteration=lambda _i: bar.advance(1))
            offset = phase1[-1]["samples"]
            curves[name] = phase1 + [{**p, "samples": p["samples"] + offset} for p in phase2[1:]]
        if name not in weights:
            weights[name] = policy.state_dict()
            ctx.save_checkpoint(state)
        policies[name] = policy

    # Cross-Generation: three readers, trained on (question, thinking) -> answer for the SFT people.
    g = torch.Generator().manual_seed(ctx.seed)
    test = evals["balanced"]
    matrix = {}
    reader_train = reader_examples(kb, t2_sample(kb, rng_stream(ctx.seed, "readers"), cfg.sft_questions, "sft",
                                                 "balanced"), rng_stream(ctx.seed, "reader_noise"))
    thinkings = {name: policy_thinkings(p, tok, test, cfg.crossgen_samples, g) for name, p in policies.items()}
    for rname, (d, layers) in READERS.items():
        torch.manual_seed(ctx.seed + 7)
        reader = TinyGPT(TinyGPTConfig(tok.vocab_size, d, layers, 4, 64))
        train_lm(reader, tok, facts + reader_train, cfg.reader_steps, 128, 1e-3, torch.Generator().manual_seed(7),
                 on_step=lambda _s: bar.advance(1))
        row = {"none": reader_accuracy(reader, tok, test, [EMPTY_THINKING] * len(test), g),
               "gold": reader_accuracy(reader, tok, test, [p.gold[: thinking_span(p.gold)[1]] for p in test], g)}
        for name, (problems, ts) in thinkings.items():
            row[name] = reader_accuracy(reader, tok, problems, ts, g)
        row["params"] = sum(p.numel() for p in reader.parameters())
        matrix[rname] = row
    bar.finish()
    final = {name: {split: accuracy(p, tok, problems, t2_reward, cfg.eval_samples, 16, g)[0]
                    for split, problems in evals.items()} for name, p in policies.items()}
    return {"accuracy": final, "curves": curves, "crossgen": matrix}


def _t2_train(rng, n, kb):
    return t2_sample(kb, rng, n, "rl", "shortcut")


def start_gap(split: str):
    return lambda runs: statistics.fmean(r["accuracy"]["start"][split] - r["accuracy"]["joint"][split] for r in runs)


def reader_gap_min(runs: list[Metrics]) -> float:
    return min(statistics.fmean(r["crossgen"][rd]["start"] - r["crossgen"][rd]["joint"] for r in runs)
               for rd in READERS)


def shortcut_gate(runs: list[Metrics]) -> float:
    """Joint GRPO's gain on the shortcut split minus its gain on the anti-shortcut split (S0)."""
    def gain(r, split):
        return r["accuracy"]["joint"][split] - r["accuracy"]["sft"][split]
    return statistics.fmean(gain(r, "shortcut") - gain(r, "anti") for r in runs)


START_CHECKS = (
    ClaimCheck("S1a", "START minus joint GRPO: balanced-test accuracy", start_gap("balanced"), ">=", 0.03),
    ClaimCheck("S1b", "START minus joint GRPO: anti-shortcut accuracy", start_gap("anti"), ">=", 0.05),
    ClaimCheck("S2", "Every reader: accuracy from START's thinking minus from joint GRPO's (worst reader)",
               reader_gap_min, ">=", 0.03),
    ClaimCheck("R1", "S0 gate: joint GRPO's gain on the shortcut split minus on the anti-shortcut split",
               shortcut_gate),
    ClaimCheck("R2", "START minus SFT: balanced-test accuracy",
               lambda runs: statistics.fmean(r["accuracy"]["start"]["balanced"] - r["accuracy"]["sft"]["balanced"]
                                             for r in runs)),
    ClaimCheck("R3", "Thinking efficacy of START with the largest reader",
               lambda runs: _mean(runs, lambda r: efficacy(r["crossgen"]["L"]["start"], r["crossgen"]["L"]["none"],
                                                           r["crossgen"]["L"]["gold"]))),
    ClaimCheck("R4", "START (thinking only, whole budget) minus joint GRPO: anti-shortcut accuracy",
               lambda runs: statistics.fmean(r["accuracy"]["start_think"]["anti"] - r["accuracy"]["joint"]["anti"]
                                             for r in runs)),
)


def start_tables(runs: list[Metrics]) -> list[Table]:
    acc = Table(f"T2 sampled accuracy by test split ({len(runs)} seeds, mean ± 95% CI)",
                ["policy", "balanced", "anti-shortcut", "shortcut (A 75%)"],
                [[POLICY_LABELS[n], *(_ci([r["accuracy"][n][s] for r in runs]) for s in ("balanced", "anti",
                                                                                         "shortcut"))]
                 for n in POLICIES])
    rows = []
    for rd in READERS:
        m = runs[0]["crossgen"][rd]
        cells = [f"{statistics.fmean(r['crossgen'][rd][k] for r in runs):.3f}" for k in ("none", *POLICIES, "gold")]
        eff = [efficacy(statistics.fmean(r["crossgen"][rd][n] for r in runs),
                        statistics.fmean(r["crossgen"][rd]["none"] for r in runs),
                        statistics.fmean(r["crossgen"][rd]["gold"] for r in runs)) for n in POLICIES]
        rows.append([f"{rd} ({m['params'] / 1e6:.2f} M)", *cells,
                     " / ".join("n/a" if e is None else f"{e:.2f}" for e in eff)])
    cross = Table("Cross-Generation: reader accuracy from each policy's thinking (balanced test)",
                  ["reader", "no thinking", *(POLICY_LABELS[n] for n in POLICIES), "gold thinking",
                   "efficacy " + " / ".join(POLICY_LABELS[n] for n in POLICIES)], rows)
    return [acc, cross]


def start_plot(runs: list[Metrics]) -> dict:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4), layout="tight")
    ax1, ax2 = fig.subplots(1, 2)
    for i, name in enumerate(("joint", "start", "start_think")):
        for split, ls in (("balanced", "-"), ("anti", "--")):
            curve = runs[0]["curves"][name]
            ax1.plot([p["samples"] for p in curve], [p[f"acc_{split}"] for p in curve], ls, color=f"C{i}",
                     label=f"{POLICY_LABELS[name]}, {split}")
    ax1.set_xlabel("generated samples")
    ax1.set_ylabel("sampled accuracy")
    ax1.set_title("T2 with a shortcut in the RL prompts (seed 0)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    columns = ("none", *POLICIES, "gold")
    grid = np.array([[statistics.fmean(r["crossgen"][rd][c] for r in runs) for c in columns] for rd in READERS])
    im = ax2.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    for (i, j), v in np.ndenumerate(grid):
        ax2.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k")
    ax2.set_xticks(range(len(columns)), ["no thinking", *(POLICY_LABELS[n] for n in POLICIES), "gold"])
    ax2.set_yticks(range(len(READERS)), [f"reader {r}" for r in READERS])
    ax2.set_title("Cross-Generation accuracy (policy thinking x reader)")
    fig.colorbar(im, ax=ax2)
    return {"crossgen": fig}


START_EXPERIMENT = Experiment(
    name="start",
    system="start",
    summary="Thinking-only RL (START) vs joint GRPO on knowledge QA with a shortcut; Cross-Generation readers.",
    profiles={
        "smoke": Profile(STARTExperimentConfig(n_people=40, n_cities=6, n_countries=5, d_model=32, layers=1,
                                               pretrain_steps=20, fact_repeats=2, sft_questions=100, iterations=2,
                                               prompts_per_iter=4, group=4, eval_every=1, eval_problems=8,
                                               eval_samples=2, reader_steps=10, crossgen_samples=1), seeds=1),
        "quick": Profile(STARTExperimentConfig(pretrain_steps=800, iterations=30, reader_steps=400), seeds=1),
        "full": Profile(STARTExperimentConfig(), seeds=3),
    },
    run=start_run, checks=START_CHECKS, plot=start_plot, tables=start_tables, threads=1, device="cpu",
)
