"""The ``nanorepro`` command: list | run | reproduce | report.

Bad input (an unknown experiment, profile or config key, a value that does not parse,
a malformed results file) prints one ``nanorepro: error: ...`` line and exits with 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from nanorepro.common.errors import UserError
from nanorepro.common.progress import ProgressBoard

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Compact, tested reproductions of ten recent ML systems.",
)

# Torch threads of the user commands, measured on the idle 2-core CPU (2 threads / 1): llm-rl SFT step 1.67x,
# RL iteration 1.49x (Dr. GRPO) and 1.68x (ReVal), lm train step 1.70x (bench_tool_threads.py); braking's SAC
# update 0.98x (bench_braking.py), so its ensemble training decides (the reinvbc experiment runs on 2);
# embodied: BC step 1.79x (views, batch 64) and 1.27x (objects, batch 256), SuP fitted-Q step 1.18x, acting in
# 64 scenes 1.14x; vla-mbpo's VQ step 1.73x, pixel world model step 1.74x, imagined PPO iteration 1.56x
# (bench_tool_threads.py --only embodied; 2026-11-29 run: BC views 1.88x, objects 1.47x, fitted-Q 1.20x, act 1.24x);
# vlgor's generator step 1.74x, sampling 64 rollouts 1.50x, IQL critic step 1.24-1.53x (two runs).
BRAKING_THREADS, LM_THREADS, LLM_RL_THREADS, EMBODIED_THREADS = 2, 2, 2, 2

RESULTS = typer.Option(Path("results"), "--results", help="Results store (results/NAME/PROFILE/seedS.json).")
REPORTS = typer.Option(Path("reports"), "--reports", help="Where index.html, summary.md and plots/ are written.")


@app.command("list")
def list_experiments() -> None:
    """List the ten systems and the experiments that check their claims."""
    from nanorepro.experiments import SYSTEMS, registry

    experiments = registry()
    for system in SYSTEMS:
        mine = [e for e in experiments.values() if e.system == system.key]
        status = ", ".join(e.name for e in mine) if mine else "not implemented"
        typer.echo(f"{system.name:<18} {status}")
        typer.echo(f"    paper: {system.paper}")
        typer.echo(f"    claim: {system.claim}")
        for exp in mine:
            seeds = ", ".join(f"{p}={prof.seeds}" for p, prof in exp.profiles.items())
            typer.echo(f"    {exp.name}: {exp.summary} (seeds: {seeds})")
            for check in exp.checks:
                typer.echo(f"      {check.key}: {check.statement} [{check.threshold_text()}]")


PROFILE_HELP = "smoke | quick | full (some experiments add their own, e.g. hybrid_lm's gpu)"

@app.command()
def run(
    name: str = typer.Argument(..., help="Experiment name (see `nanorepro list`)."),
    profile: str = typer.Option("quick", "--profile", help=PROFILE_HELP),
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="Config override key=value (repeatable)."),
    results: Path = RESULTS,
    threads: int | None = typer.Option(None, "--threads", help="torch threads (default: the experiment's)."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda (default: the experiment's)."),
) -> None:
    """Run one experiment for one seed and store its result."""
    from nanorepro.experiments import get_experiment
    from nanorepro.runner import check_profile, run_one

    exp = get_experiment(name)
    check_profile(profile, exp)
    if device not in (None, "auto", "cpu", "cuda"):
        raise UserError(f"unknown device '{device}' (choose from auto, cpu, cuda)")
    with ProgressBoard() as board:
        outcome = run_one(exp, profile, seed, results_root=results, board=board, overrides=overrides or [],
                          threads=threads, device=device)
    result = outcome.result
    typer.echo(f"{exp.name} ({result['profile']}, seed {seed}) finished in {result['wall_time_s']:.1f}s "
               f"-> {outcome.path}")
    for check in result["claim_checks"]:
        verdict = "n/a" if check.get("applicable") is False else \
            {True: "pass", False: "MISS", None: "reported"}[check["passed"]]
        value = "n/a" if check["value"] is None else f"{check['value']:.4g}"
        typer.echo(f"  {check['key']:<4} {verdict:<8} {value:>10}  {check['statement']}")


@app.command()
def reproduce(
    profile: str = typer.Option("quick", "--profile", help=PROFILE_HELP),
    only: list[str] | None = typer.Option(None, "--only", help="Experiment name (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Rerun seeds that already have a result."),
    results: Path = RESULTS,
    reports: Path = REPORTS,
) -> None:
    """Run every experiment's seeds for a profile (resumable), then render the report."""
    from nanorepro.report.render import render_report
    from nanorepro.runner import reproduce as reproduce_all

    with ProgressBoard() as board:
        failures = reproduce_all(profile, only=only, force=force, results_root=results, board=board)
    html_path, md_path = render_report(results, reports, profile)
    typer.echo(f"report: {html_path} and {md_path}")
    if failures:
        for line in failures:
            typer.echo(f"failed: {line}", err=True)
        raise typer.Exit(1)


@app.command()
def report(
    profile: str = typer.Option("full", "--profile", help=PROFILE_HELP),
    results: Path = RESULTS,
    reports: Path = REPORTS,
) -> None:
    """Re-render the report from stored results (no experiment is run)."""
    from nanorepro.report.render import render_report
    from nanorepro.runner import check_profile

    html_path, md_path = render_report(results, reports, check_profile(profile))
    typer.echo(f"report: {html_path} and {md_path}")


braking_app = typer.Typer(no_args_is_help=True, help="ReinVBC on your own braking logs.")
app.add_typer(braking_app, name="braking")


def _threads(best: int):
    """A group callback: its commands run on ``best`` torch threads (measured in benchmarks/;
    OMP_NUM_THREADS overrides)."""

    def callback() -> None:
        from nanorepro.common.device import default_threads

        default_threads(best)

    return callback


braking_app.callback()(_threads(BRAKING_THREADS))
ABS_GRID = typer.Option("full", "--abs-grid", help="Tuning grid of the reference ABS: full | small (tests).")


def check_grid(grid: str) -> str:
    if grid not in ("full", "small"):
        raise UserError(f"unknown --abs-grid '{grid}' (full or small)")
    return grid


@braking_app.command("make-data")
def braking_make_data(
    out: Path = typer.Option(..., "--out", help="Where to write the logs (.npz, the documented format)."),
    stops: int = typer.Option(300, "--stops", help="Logged stops (every 5th is validation)."),
    seed: int = typer.Option(0, "--seed"),
    abs_grid: str = ABS_GRID,
) -> None:
    """Log a noisy, perturbed rule-based ABS on dry asphalt, wet asphalt and snow."""
    from nanorepro.braking.tools import make_data

    if stops < 10:
        raise UserError(f"need at least 10 stops, got {stops}")
    with ProgressBoard() as board:
        info = make_data(out, stops, seed, board, check_grid(abs_grid))
    typer.echo(f"{info['stops']} stops, {info['transitions']} transitions -> {out}")
    for surface, distance in info["mean_distance"].items():
        typer.echo(f"  {surface:<12} mean stopping distance {distance:.1f} m")


@braking_app.command("train")
def braking_train(
    data: Path = typer.Option(..., "--data", help="Braking logs (.npz; see docs/reinvbc.md for the format)."),
    out: Path = typer.Option(Path("policy.safetensors"), "--out", help="Where to write the policy."),
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="ReinVBCConfig override key=value."),
) -> None:
    """Learn stop models from the logs and a ReinVBC policy in them (no simulator involved)."""
    from nanorepro.braking.reinvbc import ReinVBCConfig
    from nanorepro.braking.tools import train
    from nanorepro.common.config import apply_overrides

    cfg = apply_overrides(ReinVBCConfig(), overrides or [])
    with ProgressBoard() as board:
        info = train(data, out, cfg, seed, board)
    gate = info["gate"]
    typer.echo(f"policy -> {info['policy']} (checkpoint of update {info['selected_update']}, chosen in model B)")
    typer.echo(f"model gate: logged commands replayed in the model give {gate['open_loop_ratio']:.3f}x the "
               "logged stopping distance")


@braking_app.command("evaluate")
def braking_evaluate(
    policy: Path = typer.Option(..., "--policy", help="A policy written by `nanorepro braking train`."),
    surfaces: list[str] = typer.Option(..., "--surface", help="A surface name or JSON (repeatable): "
                                       '"snow", \'{"c1":1.2,"c2":25,"c3":0.5}\', a blend or a mid-stop change.'),
    speeds: str = typer.Option("15,30,20", "--speeds", help="first,last,count of initial speeds (m/s)."),
    seed: int = typer.Option(0, "--seed"),
    abs_grid: str = ABS_GRID,
) -> None:
    """Stopping distance of the policy and of the tuned rule-based ABS in the simulator."""
    import numpy as np

    from nanorepro.braking.tools import evaluate
    from nanorepro.envs.braking import parse_road

    try:
        first, last, count = (float(x) for x in speeds.split(","))
    except ValueError:
        raise UserError(f"bad --speeds {speeds!r}: expected first,last,count") from None
    roads = [parse_road(spec) for spec in surfaces]
    rows = evaluate(policy, roads, np.linspace(first, last, int(count)), seed, check_grid(abs_grid))
    typer.echo(f"{'road':<36} {'policy (m)':>10} {'ABS (m)':>9} {'ratio':>7} {'lock':>6} {'ABS lock':>8}")
    for r in rows:
        typer.echo(f"{r['road']:<36} {r['policy_m']:>10.1f} {r['abs_m']:>9.1f} {r['ratio']:>7.3f} "
                   f"{r['policy_lock']:>6.3f} {r['abs_lock']:>8.3f}")


recsys_app = typer.Typer(no_args_is_help=True, help="SIGMA on your own interactions (RecBole atomic files).")
app.add_typer(recsys_app, name="recsys")
recsys_app.callback()(_threads(2))  # bench_recsys: 1.5x faster training steps, 1.75x scoring


@recsys_app.command("train")
def recsys_train(
    inter: Path = typer.Option(..., "--inter", help="RecBole .inter file (user_id, item_id, optional timestamp)."),
    item: Path | None = typer.Option(None, "--item", help="RecBole .item file (its text fields are used)."),
    out: Path = typer.Option(Path("recsys.safetensors"), "--out", help="Where to write the model."),
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="RecsysConfig override key=value."),
) -> None:
    """Ground item text, build hybrid item tokens and train the SIGMA decoder (last item per user held out)."""
    from nanorepro.common.config import apply_overrides
    from nanorepro.recsys.tools import RecsysConfig, train

    cfg = apply_overrides(RecsysConfig(), overrides or [])
    with ProgressBoard() as board:
        info = train(inter, item, out, cfg, seed, board)
    typer.echo(f"{info['users']} users, {info['items']} items, {info['train']} training examples "
               f"({'with' if info['text'] else 'without'} item text) -> {info['model']}")
    typer.echo(f"best validation Recall@10 (full ranking, last item per user): {info['valid_recall10']:.4f}")


@recsys_app.command("recommend")
def recsys_recommend(
    model: Path = typer.Option(..., "--model", help="A model written by `nanorepro recsys train`."),
    inter: Path = typer.Option(..., "--inter", help="Interactions holding the user's history."),
    user: str = typer.Option(..., "--user", help="user_id as written in the .inter file."),
    k: int = typer.Option(10, "--k", min=1),
    task: str = typer.Option("JustForYou", "--task", help="One of the seven instruction tasks."),
    instruction: str = typer.Option("recommend for me", "--instruction"),
) -> None:
    """Top-k items for one user (items already in the history are excluded)."""
    from nanorepro.recsys.tools import recommend

    for rank, (item_id, text, logp) in enumerate(recommend(model, inter, user, k, task, instruction), start=1):
        typer.echo(f"{rank:>3}. {item_id:<12} {logp:>8.3f}  {text}")


med3d_app = typer.Typer(no_args_is_help=True, help="TGH-MoE on CT volumes: train on phantoms, report on NIfTI files.")
app.add_typer(med3d_app, name="med3d")
med3d_app.callback()(_threads(2))  # bench_med3d: 1.3-1.6x for one process


@med3d_app.command("train")
def med3d_train(
    out: Path = typer.Option(Path("med3d.safetensors"), "--out", help="Where to write the model."),
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="TGHExperimentConfig override key=value."),
) -> None:
    """2-D pretraining, stage 1 and stage 2 (TGH-MoE) on procedural phantoms; prints test metrics."""
    from nanorepro.common.config import apply_overrides
    from nanorepro.med3d.experiment import TGHExperimentConfig
    from nanorepro.med3d.tools import train

    cfg = apply_overrides(TGHExperimentConfig(), overrides or [])
    with ProgressBoard() as board:
        info = train(out, cfg, seed, board)
    typer.echo(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()))


@med3d_app.command("report")
def med3d_report(
    model: Path = typer.Option(..., "--model", help="A model written by `nanorepro med3d train`."),
    volume: Path = typer.Option(..., "--volume", help="A NIfTI volume (.nii or .nii.gz)."),
) -> None:
    """Generate a report for a volume."""
    from nanorepro.med3d.tools import report

    typer.echo(report(model, volume))


@med3d_app.command("ask")
def med3d_ask(
    model: Path = typer.Option(..., "--model", help="A model written by `nanorepro med3d train`."),
    volume: Path = typer.Option(..., "--volume", help="A NIfTI volume (.nii or .nii.gz)."),
    question: str = typer.Option(..., "--question", help='e.g. "how many lesions are there ?"'),
    options: list[str] | None = typer.Option(None, "--option", help="Closed question: give 2-4 options."),
) -> None:
    """Answer a question about a volume (open, or closed by option likelihood)."""
    from nanorepro.med3d.tools import ask

    typer.echo(ask(model, volume, question, options))


lm_app = typer.Typer(no_args_is_help=True, help="The hybrid Mamba/attention LatentMoE LM on your own text.")
app.add_typer(lm_app, name="lm")
lm_app.callback()(_threads(LM_THREADS))


@lm_app.command("train")
def lm_train(
    data: Path = typer.Option(..., "--data", help="A text file, or a folder of them (see --pattern)."),
    pattern: str = typer.Option("*", "--pattern", help='Files of the folder to read, e.g. "*.md" (recursive).'),
    out: Path = typer.Option(Path("lm.safetensors"), "--out", help="Model file to write."),
    size: str = typer.Option("cpu", "--size", help="debug | cpu (d 128, the experiment's) | nano (d 256)."),
    steps: int = typer.Option(400, "--steps"),
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences per step."),
    seq_len: int = typer.Option(256, "--seq-len", help="Bytes per sequence."),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate of the WSD schedule."),
    nvfp4: bool = typer.Option(False, "--nvfp4", help="Train under Nemotron 3 Super's NVFP4 map (emulated)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (bf16 autocast on CUDA)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train the hybrid LM (Mamba-2 + attention + LatentMoE + MTP) on your bytes.

    Interrupted? Run the same command again: it resumes from OUT.ckpt.safetensors.
    """
    from nanorepro.common.device import pick_device
    from nanorepro.lm.tools import train_lm
    from nanorepro.lm.train import TrainConfig

    if min(steps, batch_size, seq_len) < 1 or lr <= 0:
        raise UserError("--steps, --batch-size and --seq-len must be >= 1 and --lr > 0")
    tcfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, eval_every=max(1, steps // 8),
                       checkpoint_every=max(1, min(100, steps // 4)))
    with ProgressBoard() as board:
        info = train_lm(data, out, size, tcfg, seed, board, pattern=pattern, nvfp4=nvfp4, device=pick_device(device))
    typer.echo(f"{info['files']} files, {info['train_bytes']:,} training / {info['val_bytes']:,} held-out bytes; "
               f"{info['parameters']:,} parameters ({info['active']:,} active)")
    typer.echo(f"held-out bits per byte {info['val_bpb']:.3f} after {steps} steps ({info['seconds']:.0f} s) "
               f"-> {info['model']}")


@lm_app.command("generate")
def lm_generate(
    model: Path = typer.Option(..., "--model", help="A model file written by `lm train`."),
    prompt: str = typer.Option(..., "--prompt"),
    tokens: int = typer.Option(200, "--tokens", help="Bytes to generate (stops early at end of text)."),
    plain: bool = typer.Option(False, "--plain", help="Plain greedy decoding instead of MTP speculative."),
    temperature: float = typer.Option(0.0, "--temperature", help="0: greedy; > 0: sample (plain decoding)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler (with --temperature)."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Continuation of a prompt: greedy, by default with MTP self-speculative decoding (same output), or sampled."""
    from nanorepro.common.device import pick_device
    from nanorepro.lm.tools import generate

    info = generate(model, prompt, tokens, speculative=not plain, device=pick_device(device),
                    temperature=temperature, seed=seed)
    typer.echo(prompt + info["text"])
    detail = f"; tau {info['tau']:.2f} tokens per forward" if "tau" in info else ""
    typer.echo(f"[{info['tokens']} tokens, {info['tokens_per_s']:.0f} tokens/s{detail}]", err=True)


llm_rl_app = typer.Typer(no_args_is_help=True, help="GRPO, ReVal or START on your own problems with a verifier.")
app.add_typer(llm_rl_app, name="llm-rl")
llm_rl_app.callback()(_threads(LLM_RL_THREADS))
PROBLEMS_HELP = 'JSON Lines: {"prompt": ..., "answer": ..., "completion": "<thinking>answer" (optional)} per line.'


@llm_rl_app.command("make-data")
def llm_rl_make_data(
    out: Path = typer.Option(Path("train.jsonl"), "--out"),
    split: str = typer.Option("train", "--split", help="train | test (disjoint number tuples)."),
    n: int = typer.Option(3000, "--n", help="Problems."),
    numbers: int = typer.Option(3, "--numbers", help="Terms per chain: 3 or 4."),
    noisy: float = typer.Option(0.0, "--noisy", help="Share of references with a wrong running sum."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write example problems: chain arithmetic ("12+34+56=" -> "<46>102."), the reval experiment's task."""
    from nanorepro.llm_rl.tools import write_chain_arithmetic

    typer.echo(f"{n} {split} problems -> {write_chain_arithmetic(out, n, split, numbers, noisy, seed)}")


@llm_rl_app.command("make-hf-model")
def llm_rl_make_hf_model(
    data: Path = typer.Option(..., "--data", help="Problems whose text trains the tokenizer (JSON Lines)."),
    out: Path = typer.Option(Path("tiny-llama"), "--out", help="Model directory to write."),
    vocab: int = typer.Option(400, "--vocab", help="BPE vocabulary size."),
    d_model: int = typer.Option(128, "--d-model"),
    layers: int = typer.Option(4, "--layers"),
    heads: int = typer.Option(4, "--heads"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a small, untrained Llama and a BPE tokenizer as a local Hugging Face model directory (needs
    transformers): the --init/--policy DIR path without downloading a model."""
    from nanorepro.llm_rl.tools import write_tiny_hf_model

    info = write_tiny_hf_model(data, out, vocab, d_model, layers, heads, seed)
    typer.echo(f"Llama with {info['parameters']:,} parameters, {info['vocab']} tokens -> {info['out']}")


@llm_rl_app.command("sft")
def llm_rl_sft(
    data: Path = typer.Option(..., "--data", help=PROBLEMS_HELP),
    out: Path = typer.Option(Path("sft.safetensors"), "--out", help="Policy file to write."),
    steps: int = typer.Option(1000, "--steps"),
    batch: int = typer.Option(64, "--batch", help="Sequences per step."),
    lr: float = typer.Option(1e-3, "--lr"),
    d_model: int = typer.Option(128, "--d-model"),
    layers: int = typer.Option(4, "--layers"),
    max_new: int | None = typer.Option(None, "--max-new", help="Tokens per completion (default: longest + 4)."),
    init: Path | None = typer.Option(None, "--init", help="Start from this policy, a Hugging Face model directory "
                                     "(its tokenizer), or a hybrid LM from `lm train` (bytes as tokens), instead of "
                                     "a fresh TinyGPT (--d-model, --layers)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fine-tune a policy on the problems' reference completions (a start for RL).

    By default a fresh character-level TinyGPT; with --init, your own model.

    Interrupted? Run the same command again: it resumes from OUT.ckpt.safetensors.
    """
    from nanorepro.llm_rl.tools import SFTConfig, sft

    cfg = SFTConfig(steps=steps, batch=batch, lr=lr, d_model=d_model, layers=layers, max_new=max_new)
    with ProgressBoard() as board:
        info = sft(data, out, cfg, seed, board, init=init)
    typer.echo(f"{info['problems']} problems ({info['references_correct']:.0%} of the references pass the verifier), "
               f"{info['tokens']}, {info['parameters']:,} parameters; "
               f"final loss {info['final_loss']:.3f}, greedy accuracy on (up to 500 of) the problems "
               f"{info['greedy_accuracy']:.3f} -> {info['policy']} (curve: {info['plot']})")


@llm_rl_app.command("train")
def llm_rl_train(
    policy: Path = typer.Option(..., "--policy", help="A policy file from `llm-rl sft` (or an earlier `train`), "
                                "or a local Hugging Face model directory."),
    data: Path = typer.Option(..., "--data", help="Training problems. " + PROBLEMS_HELP),
    eval_data: Path | None = typer.Option(None, "--eval", help="Held-out problems, evaluated along the way."),
    out: Path = typer.Option(Path("rl.safetensors"), "--out", help="Policy file to write."),
    method: str = typer.Option("dr_grpo", "--method", help="grpo | dr_grpo | dapo | rloo | reval | start."),
    iterations: int = typer.Option(100, "--iterations", help="Rollout/update rounds."),
    prompts: int = typer.Option(16, "--prompts", help="Prompts per iteration."),
    group: int = typer.Option(8, "--group", help="Completions sampled per prompt."),
    lr: float = typer.Option(1e-4, "--lr"),
    mu: int = typer.Option(1, "--mu", help="GRPO epochs per rollout batch."),
    beta: float = typer.Option(0.3, "--beta", help="ReVal: soft-Q temperature."),
    start_phase1: float = typer.Option(0.5, "--start-phase1", help="START: share of thinking-only iterations."),
    eval_every: int = typer.Option(5, "--eval-every"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """RL from a policy on problems with a verifier (reward 1 when the answer after the thinking is right).

    Interrupted? Run the same command again: it resumes from OUT.ckpt.safetensors.
    """
    from nanorepro.llm_rl.tools import RLToolConfig, train

    cfg = RLToolConfig(method=method, iterations=iterations, prompts_per_iter=prompts, group=group, lr=lr, mu=mu,
                       beta=beta, start_phase1=start_phase1, eval_every=eval_every)
    with ProgressBoard() as board:
        info = train(policy, data, out, cfg, seed, board, eval_data=eval_data)
    splits = [k[: -len("_before")] for k in info if k.endswith("_before")]
    gains = ", ".join(f"{s} {info[s + '_before']:.3f} -> {info[s + '_after']:.3f}" for s in splits)
    typer.echo(f"{method}: sampled accuracy {gains} after {info['samples']:,} samples -> {info['policy']} "
               f"(curve: {info['plot']})")


@llm_rl_app.command("evaluate")
def llm_rl_evaluate(
    policy: Path = typer.Option(..., "--policy", help="A policy file from `llm-rl sft` or `llm-rl train`, or a "
                                "Hugging Face model directory."),
    data: Path = typer.Option(..., "--data", help=PROBLEMS_HELP),
    samples: int = typer.Option(4, "--samples", help="Sampled completions per problem (temperature 1)."),
    show: int = typer.Option(3, "--show", help="Print the greedy completion of the first N problems."),
    predictions: Path | None = typer.Option(None, "--predictions", help="Write every greedy completion and "
                                            "its reward here (JSON Lines)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Greedy and sampled accuracy of a policy on problems, and the share of malformed completions."""
    from nanorepro.llm_rl.tools import evaluate

    info = evaluate(policy, data, samples, seed, show, predictions)
    for example in info["examples"]:
        typer.echo(f"{example['prompt']}{example['completion']}    [answer {example['answer']}, "
                   f"reward {example['reward']:.0f}]")
    typer.echo(f"{info['problems']} problems ({' -> '.join(info['stages'])}): greedy accuracy "
               f"{info['greedy_accuracy']:.3f} (malformed {info['greedy_malformed']:.3f}), sampled "
               f"{info['sampled_accuracy']:.3f} (malformed {info['sampled_malformed']:.3f}, {samples} per problem)")


imitation_app = typer.Typer(no_args_is_help=True, help="Imitation learning on Gymnasium continuous control.")
app.add_typer(imitation_app, name="imitation")
imitation_app.callback()(_threads(1))  # bench_imitation: SAC at width 128 is faster on one thread; see `train`


@imitation_app.command("make-experts")
def imitation_make_experts(
    env: str = typer.Argument(..., help="A Gymnasium env id with Box spaces, e.g. HalfCheetah-v5."),
    out: Path | None = typer.Option(None, "--out", help="Demo file (.npz; default ENV.npz here)."),
    steps: int = typer.Option(150_000, "--steps", help="SAC training steps."),
    episodes: int = typer.Option(10, "--episodes", help="Deterministic expert episodes written."),
    hidden: int = typer.Option(128, "--hidden", help="Width of SAC's two hidden layers."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train a SAC expert and write its demonstrations (+ a JSON sidecar with returns and versions).

    Interrupted? Run the same command again: it resumes from OUT's .ckpt.safetensors.
    """
    from nanorepro.imitation.experts import ExpertConfig, make_experts

    cfg = ExpertConfig(steps=steps, episodes=episodes, hidden=hidden, seed=seed,
                       start_steps=min(5_000, steps // 10), eval_every=min(10_000, steps))
    path = out or Path(f"{env}.npz")
    with ProgressBoard() as board:
        demos = make_experts(env, path, cfg, board)
    meta = demos.meta
    typer.echo(f"{meta['episodes']} episodes, {meta['transitions']} transitions -> {path}")
    typer.echo(f"expert return {meta['expert_return']:.1f} +- {meta['expert_return_std']:.1f}; "
               f"random policy {meta['random_return']:.1f}")


@imitation_app.command("train")
def imitation_train(
    env: str = typer.Argument(..., help="The Gymnasium env id the demonstrations come from."),
    demos: Path | None = typer.Option(None, "--demos", help="Demo file (.npz + .json sidecar, as make-experts "
                                      "writes); default: the bundled one for ENV (HalfCheetah-v5, Hopper-v5)."),
    learner: str = typer.Option("dqdm", "--learner", help="bc | gail | iq_e | iq_m | dqdm (Dual Q-DM)."),
    out: Path = typer.Option(Path("policy.safetensors"), "--out", help="Policy file to write."),
    steps: int = typer.Option(100_000, "--steps", help="Env steps (BC: gradient steps)."),
    start_steps: int = typer.Option(2_000, "--start-steps", help="Uniform random env steps before updates."),
    update_every: int = typer.Option(2, "--update-every", help="Env steps per gradient update."),
    eval_every: int = typer.Option(5_000, "--eval-every", help="Steps between evaluations (the curve)."),
    eval_episodes: int = typer.Option(10, "--eval-episodes"),
    demo_episodes: int = typer.Option(0, "--demo-episodes", help="Demonstration episodes used (0: all)."),
    subsample: int = typer.Option(1, "--subsample", help="Keep every k-th demonstrated transition (1: all)."),
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="ImitationConfig override key=value."),
) -> None:
    """Imitate the demonstrations with one learner; write the policy and its learning-curve plot.

    Interrupted? Run the same command again: online learners resume from OUT.ckpt.safetensors.
    """
    from nanorepro.common.device import default_threads
    from nanorepro.imitation.demos import bundled_demos_path
    from nanorepro.imitation.tools import learner_config, train
    from nanorepro.rl.online import Budget

    budget = Budget(env_steps=steps, start_steps=0 if learner == "bc" else min(start_steps, steps - 1),
                    update_every=update_every, eval_every=min(eval_every, steps), eval_episodes=eval_episodes)
    picked = [f"subsample={subsample}"] + ([f"demo_episodes={demo_episodes}"] if demo_episodes else [])
    cfg = learner_config(env, picked + (overrides or []))
    if cfg.hidden >= 256:  # bench_imitation: 2 threads 1.18x at width 256 (0.82x at 128)
        default_threads(2)
    with ProgressBoard() as board:
        info = train(env, demos or bundled_demos_path(env), learner, out, cfg, budget, seed, board,
                     all_episodes=not demo_episodes)
    score = "" if info["final_normalised"] is None else f" (normalised {info['final_normalised']:.3f})"
    typer.echo(f"last evaluation: return {info['final_return']:.1f}{score}")
    typer.echo(f"policy -> {info['policy']}; learning curve -> {info['plot']}")


@imitation_app.command("evaluate")
def imitation_evaluate(
    env: str = typer.Argument(..., help="A Gymnasium env id with the policy's spaces."),
    policy: Path = typer.Option(..., "--policy", help="A policy file written by `imitation train`."),
    episodes: int = typer.Option(10, "--episodes"),
    seed: int = typer.Option(0, "--seed"),
    demos: Path | None = typer.Option(None, "--demos", help="Demo file: adds the normalised return."),
) -> None:
    """Deterministic return of a trained imitation policy."""
    from nanorepro.imitation.tools import evaluate_policy

    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    info = evaluate_policy(policy, env, episodes, seed, demos)
    score = "" if info["normalised"] is None else f"; normalised {info['normalised']:.3f}"
    typer.echo(f"{env}: return {info['return_mean']:.1f} +- {info['return_std']:.1f} over {episodes} episodes{score}")


embodied_app = typer.Typer(no_args_is_help=True,
                           help="Tabletop: demonstrations, chunked policies (cloned, distilled, fine-tuned by "
                           "VLA-MBPO, trained offline on VLGOR's imagined rollouts), SuP's scheduler.")
app.add_typer(embodied_app, name="embodied")
embodied_app.callback()(_threads(EMBODIED_THREADS))
GRASP_MAX_SPEED = typer.Option(0.15, "--grasp-max-speed", help="Table/s above which closing grasps nothing "
                               "(SuP's suite; inf: the other experiments' suite).")
FROZEN_POLICY = typer.Option(..., "--policy", help="A `train-policy` file, or 'scripted' (the demonstrator).")


@embodied_app.command("make-demos")
def embodied_make_demos(
    out: Path = typer.Option(Path("demos.npz"), "--out", help="Demonstration file to write (.npz)."),
    episodes: int = typer.Option(300, "--episodes", help="Tasks sampled, one scripted demonstration each."),
    split: str = typer.Option("train", "--split", help="train | unseen | paraphrase | novel."),
    horizon: int = typer.Option(8, "--horizon", help="Chunk length the policy will predict."),
    view_size: int = typer.Option(32, "--view-size", help="Pixels per side of each camera view."),
    grasp_max_speed: float = GRASP_MAX_SPEED,
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Plan and execute scripted demonstrations (two camera views, instruction, waypoints, casual/precise labels)."""
    from nanorepro.embodied.tools import make_demo_file

    info = make_demo_file(out, episodes, split, seed, horizon, grasp_max_speed, view_size)
    typer.echo(f"{info['episodes']} demonstrations ({info['success']:.0%} solved), {info['steps']} steps -> {out}")


@embodied_app.command("train-policy")
def embodied_train_policy(
    demos: Path = typer.Option(..., "--demos", help="Demonstrations (.npz from make-demos; docs/tabletop.md)."),
    out: Path = typer.Option(Path("policy.safetensors"), "--out", help="Policy file to write."),
    encoder: str = typer.Option("views", "--encoder", help="views | query_views | view_tokens | query_tokens | "
                                "objects (reads the simulator's object poses: privileged)."),
    steps: int = typer.Option(3000, "--steps"),
    batch: int = typer.Option(64, "--batch"),
    lr: float = typer.Option(1e-3, "--lr"),
    grad_clip: float | None = typer.Option(None, "--grad-clip", help="Clip the gradient norm to this."),
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="PolicyConfig override key=value."),
) -> None:
    """Behaviour-clone a chunked policy on the demonstrations.

    Interrupted? Run the same command again: it resumes from OUT.ckpt.safetensors.
    """
    from nanorepro.common.config import apply_overrides
    from nanorepro.embodied.policy import PolicyConfig
    from nanorepro.embodied.tools import BCConfig, train_policy

    cfg = apply_overrides(PolicyConfig(encoder=encoder), overrides or [])
    with ProgressBoard() as board:
        info = train_policy(demos, out, cfg, BCConfig(steps, batch, lr, grad_clip), seed, board)
    typer.echo(f"{info['demos']} demonstrations, {info['rows']} rows, {info['parameters']:,} parameters; final loss "
               f"{info['final_loss']:.3f} -> {info['policy']} (curve: {info['plot']})")


@embodied_app.command("distill")
def embodied_distill(
    teacher: Path = typer.Option(..., "--teacher", help="A train-policy file with --encoder objects (privileged)."),
    demos: Path = typer.Option(..., "--demos", help="The demonstrations (first behaviour cloning, then half of "
                               "every batch)."),
    out: Path = typer.Option(Path("policy.safetensors"), "--out", help="Camera policy file to write."),
    encoder: str = typer.Option("query_views", "--encoder", help="The student's: views | query_views | "
                                "view_tokens | query_tokens."),
    rounds: int = typer.Option(16, "--rounds", help="DAgger rounds (~75 s each on 2 cores)."),
    round_steps: int = typer.Option(1000, "--round-steps", help="Gradient steps per round."),
    round_tasks: int = typer.Option(200, "--round-tasks", help="Tasks the student runs (and the teacher labels) "
                                    "per round."),
    bc_steps: int = typer.Option(1000, "--bc-steps", help="Behaviour cloning before the first round."),
    grasp_max_speed: float = GRASP_MAX_SPEED,
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="The student's PolicyConfig key=value "
                                               "(default linear_readout=true)."),
) -> None:
    """Train a camera policy by DAgger from a privileged policy that reads the object poses.

    Interrupted? Run the same command again: it resumes after the last finished round.
    """
    from nanorepro.common.config import apply_overrides
    from nanorepro.embodied.distill import DAggerConfig
    from nanorepro.embodied.policy import PolicyConfig
    from nanorepro.embodied.tools import distill

    cfg = apply_overrides(PolicyConfig(encoder=encoder, linear_readout=True), overrides or [])
    dagger_cfg = DAggerConfig(bc_steps=bc_steps, rounds=rounds, round_steps=round_steps, round_tasks=round_tasks)
    with ProgressBoard() as board:
        info = distill(teacher, demos, out, cfg, dagger_cfg, seed, board, grasp_max_speed)
    typer.echo(f"success on 100 fresh training tasks: {info['final_success']:.2f} -> {info['policy']} "
               f"(curve: {info['plot']})")


@embodied_app.command("sup")
def embodied_sup(
    policy: str = FROZEN_POLICY,
    out: Path = typer.Option(Path("scheduler.safetensors"), "--out", help="Scheduler file to write."),
    budgets: str = typer.Option("0.05,0.1,0.2,0.4,0.8", "--budgets", help="Cost budgets d, as fractions of the "
                                "mean predicted k = 4 cost; the fastest within --tolerance on validation is kept."),
    log_episodes: int = typer.Option(300, "--log-episodes", help="Logged episodes (random rate per chunk)."),
    valid_episodes: int = typer.Option(100, "--valid-episodes", help="Episodes that choose the budget."),
    tolerance: float = typer.Option(0.01, "--tolerance", help="Validation success drop allowed."),
    wm_steps: int = typer.Option(2000, "--wm-steps", help="World-model training steps (at most)."),
    grasp_max_speed: float = GRASP_MAX_SPEED,
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="SupToolConfig override key=value "
                                               "(e.g. dual_iterations, q_steps, max_steps)."),
) -> None:
    """Learn SuP's per-chunk downsampling rate for a frozen policy, offline, from logged rollouts.

    Interrupted? Run the same command again: it resumes from OUT.ckpt.safetensors.
    """
    from nanorepro.common.config import apply_overrides
    from nanorepro.embodied.tools import SupToolConfig, fit_sup

    try:
        fractions = tuple(float(x) for x in budgets.split(","))
    except ValueError:
        raise UserError(f"bad --budgets {budgets!r}: expected comma-separated numbers") from None
    cfg = apply_overrides(SupToolConfig(budgets=fractions, log_episodes=log_episodes, valid_episodes=valid_episodes,
                                        tolerance=tolerance, wm_steps=wm_steps, grasp_max_speed=grasp_max_speed),
                          overrides or [])
    with ProgressBoard() as board:
        info = fit_sup(policy, out, cfg, seed, board)
    typer.echo(f"logged {info['logged_chunks']} chunks ({info['log_success']:.0%} of episodes solved); validation "
               f"base success {info['valid_base_success']:.3f}")
    for f, v in info["validation"].items():
        speed = "n/a" if v["speedup"] is None else f"{v['speedup']:.2f}x"
        typer.echo(f"  budget {f:<5g} success {v['success']:.3f}  speed-up {speed}")
    note = "" if info["eligible"] else " (no budget kept the base success: the smallest is kept)"
    typer.echo(f"budget {info['budget']:g}{note} -> {info['scheduler']}")


@embodied_app.command("vla-mbpo")
def embodied_vla_mbpo(
    policy: Path = typer.Option(..., "--policy", help="A camera policy file (train-policy or distill)."),
    demos: Path = typer.Option(..., "--demos", help="Demonstrations: the world model's training data and half of "
                               "the branch starts."),
    out: Path = typer.Option(Path("vla_mbpo.safetensors"), "--out", help="Fine-tuned policy file to write."),
    rounds: int = typer.Option(3, "--rounds", help="Rounds of real episodes -> imagined PPO -> evaluation."),
    real_tasks: int = typer.Option(16, "--real-tasks", help="Real episodes per round (the real-step budget)."),
    branch: int = typer.Option(2, "--branch", help="Chunks per imagined branch, k (the paper: 2-3)."),
    iterations: int = typer.Option(60, "--iterations", help="PPO iterations on imagined branches per round."),
    grasp_max_speed: float = GRASP_MAX_SPEED,
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="VlaMbpoToolConfig override key=value "
                                               "(e.g. wm_steps, ppo_lr, kl_coef, eval_tasks; ours: refit_steps, "
                                               "reward=probability)."),
) -> None:
    """Fine-tune a camera policy by chunk-level PPO on branched rollouts in the two-view pixel world model.

    Interrupted? Run the same command again: it resumes after the world model and after every round.
    """
    from nanorepro.common.config import apply_overrides
    from nanorepro.embodied.tools import VlaMbpoToolConfig, fine_tune_vla_mbpo

    cfg = apply_overrides(VlaMbpoToolConfig(rounds=rounds, real_tasks=real_tasks, branch_chunks=branch,
                                            iterations=iterations, grasp_max_speed=grasp_max_speed), overrides or [])
    with ProgressBoard() as board:
        info = fine_tune_vla_mbpo(policy, demos, out, cfg, seed, board)
    typer.echo(f"success on {cfg.eval_tasks} training tasks: {info['base_success']:.3f} -> {info['success']:.3f} "
               f"after {info['real_steps']} real control steps -> {info['policy']} (curve: {info['plot']})")


@embodied_app.command("vlgor")
def embodied_vlgor(
    demos: Path = typer.Option(..., "--demos", help="Demonstrations (.npz from make-demos): the generator's, the "
                               "filter's and the offline RL's data."),
    out: Path = typer.Option(Path("vlgor.safetensors"), "--out", help="Policy file to write (reads the object "
                             "poses: --encoder objects)."),
    imagined: int = typer.Option(1024, "--imagined", help="Counterfactual rollouts to imagine."),
    generator_steps: int = typer.Option(2500, "--generator-steps", help="Rollout generator training steps."),
    policy_steps: int = typer.Option(2500, "--policy-steps", help="AWR steps of each policy."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Also train IQL on the real demonstrations "
                                 "alone, from the same initialisation, and evaluate both on the same tasks."),
    eval_tasks: int = typer.Option(100, "--eval-tasks", help="Tasks per split (train, unseen); 0: no evaluation."),
    grasp_max_speed: float = GRASP_MAX_SPEED,
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="VlgorToolConfig override key=value "
                                               "(e.g. chunks, wm_steps, filter_quantile, imagined_fraction, beta)."),
) -> None:
    """Offline RL on the demonstrations plus imagined counterfactual rollouts (VLGOR), for unseen tasks.

    Interrupted? Run the same command again: it resumes after the last finished stage.
    """
    from nanorepro.common.config import apply_overrides
    from nanorepro.embodied.tools import VlgorToolConfig, train_vlgor

    cfg = apply_overrides(VlgorToolConfig(imagined=imagined, generator_steps=generator_steps,
                                          policy_steps=policy_steps, compare=compare, eval_tasks=eval_tasks,
                                          grasp_max_speed=grasp_max_speed), overrides or [])
    with ProgressBoard() as board:
        info = train_vlgor(demos, out, cfg, seed, board)
    stats = info["imagined"]
    typer.echo(f"imagined {stats['rollouts']} rollouts from {info['episodes']} demonstrations; the filter kept "
               f"{stats['kept']:.2f} ({stats['transitions']} chunk transitions); the imagined outcome is the "
               f"replayed one for {stats['agreement']:.2f} of all rollouts (figure: {info['plot']}; kept transitions: "
               f"{info['imagined_file']})")
    for method, success in info["success"].items():
        name = "VLGOR (real + imagined)" if method == "vlgor" else "IQL, real data only"
        typer.echo(f"  {name:<24} " + "  ".join(f"{split} {v:.3f}" for split, v in success.items()))
    typer.echo(f"-> {info['policy']}")


@embodied_app.command("evaluate")
def embodied_evaluate(
    policy: str = FROZEN_POLICY,
    scheduler: Path | None = typer.Option(None, "--scheduler", help="A scheduler file from `embodied sup`."),
    rate: int | None = typer.Option(None, "--rate", help="A fixed downsampling rate instead (1-4)."),
    episodes: int = typer.Option(300, "--episodes"),
    split: str = typer.Option("train", "--split", help="train | unseen | paraphrase | novel."),
    grasp_max_speed: float | None = typer.Option(None, "--grasp-max-speed", help="Default: the scheduler's "
                                                 "suite, else 0.15 (SuP's)."),
    max_steps: int = typer.Option(300, "--max-steps", help="Control steps an episode may take."),
    seed: int = typer.Option(12345, "--seed", help="Scenes (keep it away from the seeds used for training)."),
) -> None:
    """The frozen policy at full rate and with a scheduler on the same scenes: success and speed-up."""
    from nanorepro.embodied.tools import evaluate

    if max_steps < 1:
        raise UserError(f"--max-steps must be at least 1, got {max_steps}")
    info = evaluate(policy, episodes, split, seed, scheduler, rate, max_steps, grasp_max_speed)
    speed = "n/a (no episode solved by both)" if info["speedup"] is None else f"{info['speedup']:.2f}x"
    typer.echo(f"{episodes} {split} episodes: base success {info['base_success']:.3f}; {info['scheduler']} "
               f"{info['success']:.3f} (difference {info['success_diff']:+.3f}, one-sided 95% lower bound "
               f"{info['success_diff_lower95']:+.3f}); control steps per episode solved by both: speed-up {speed}")


def _fail(message: str, code: int) -> None:
    # Plain print, not rich: a terminal-width wrap would split the one error line.
    print(f"nanorepro: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="nanorepro", standalone_mode=False)
    except UserError as exc:
        _fail(str(exc), exc.exit_code)
    except typer.Abort:
        _fail("interrupted", 130)
    except Exception as exc:
        # Click's usage errors (typer vendors click, so match its interface, not its class).
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            _fail(exc.format_message(), 2)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
