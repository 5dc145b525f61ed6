"""Experiment ``hybrid_lm``: Nemotron 3 Super's pieces at laptop scale, on the Python stdlib bytes.

Per seed, at equal active compute per token, four hybrid models (pattern MEMEM*EMEM*E) are
trained on the same bytes: dense relu2 MLPs, a standard MoE, LatentMoE, and LatentMoE with
emulated NVFP4 training. Then: validation bits per byte; MTP drafting on held-out files
(acceptance alpha_1, alpha_2, mean accepted length tau) and speculative vs plain greedy
decoding speed at batch 1; decode-cache bytes per context against an all-attention model
of the same depth, measured and analytic.

Sizes ("cpu" by default) keep a full run within about an hour on 2 CPU cores: the claims
are checked at 1/30 of the notes' tiny design's compute; GPU runs would be marked as such.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch

from nanorepro.common.experiment import ClaimCheck, Experiment, Metrics, Profile, RunContext, Table
from nanorepro.lm.data import build_corpus, eval_windows
from nanorepro.lm.model import HybridConfig, HybridLM, use_nvfp4
from nanorepro.lm.speculative import greedy_decode, speculative_decode
from nanorepro.lm.train import TrainConfig, train
from nanorepro.nn.nvfp4 import NVFP4Recipe, replace_recipe

VARIANTS = ("dense", "moe", "latent", "latent_nvfp4")
LABELS = {"dense": "dense MLP", "moe": "standard MoE", "latent": "LatentMoE", "latent_nvfp4": "LatentMoE, NVFP4",
          "latent_nvfp4_train_scale": "LatentMoE, NVFP4, training's activation scale"}

STANDARD_MOE = {"cpu": dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=80),
                "nano": dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=160),
                "debug": dict(n_routed_experts=4, num_experts_per_tok=1, moe_intermediate_size=32)}


@dataclass(frozen=True)
class HybridLMConfig:
    size: Literal["cpu", "nano", "debug"] = "cpu"
    steps: int = 400
    batch_size: int = 8
    seq_len: int = 256
    lr: float = 3e-3
    corpus_bytes: int = 8_000_000
    eval_windows: int = 32
    high_precision_last: int = 1  # NVFP4: the last layers kept in high precision (~15% of the network)
    rht: bool = True
    stochastic_rounding: bool = True
    weight_2d: bool = True
    activation_scale: Literal["tensor", "token"] = "tensor"  # NVFP4 training: per-tensor s_global (the recipe)
    # Decoding the NVFP4 model: per-token s_global, so a 3-token verify pass quantizes each token as a
    # 1-token step does and speculative output equals greedy (nn/nvfp4.py); also measured with the above.
    decode_activation_scale: Literal["tensor", "token"] = "token"
    mtp_prompts: int = 8  # held-out prompts for MTP acceptance and decoding speed
    prompt_len: int = 64
    generate: int = 128
    contexts: tuple[int, ...] = (1024, 4096, 16384, 65536)
    measure_max_context: int = 16384  # contexts up to this are prefilled for real; beyond, analytic only
    prefill_chunk: int = 1024

    def validate(self) -> None:
        if min(self.steps, self.batch_size, self.seq_len, self.mtp_prompts, self.generate) < 1:
            raise ValueError("steps, batch_size, seq_len, mtp_prompts and generate must be >= 1")


def variant_config(cfg: HybridLMConfig, variant: str) -> HybridConfig:
    base = HybridConfig.named(cfg.size)
    if variant == "dense":
        return dataclasses.replace(base, pattern=base.pattern.replace("E", "-"), mtp_pattern="*-")
    if variant == "moe":
        return dataclasses.replace(base, moe="standard", **STANDARD_MOE[cfg.size])
    return base


def analytic_cache_bytes(model_cfg: HybridConfig, context: int, value_bytes: int = 4) -> int:
    """bytes = n_attn 2 n_kv hd L b + n_mamba (H P N 4 + (K - 1)(H P + 2 G N) b); fp32 SSM state."""
    c = model_cfg
    kv = c.pattern.count("*") * 2 * c.num_key_value_heads * c.head_dim * context * value_bytes
    d_inner = c.mamba_num_heads * c.mamba_head_dim
    ssm = c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size * 4
    conv = (c.conv_kernel - 1) * (d_inner + 2 * c.n_groups * c.ssm_state_size) * value_bytes
    return kv + c.pattern.count("M") * (ssm + conv)


@torch.no_grad()
def measured_cache_bytes(model: HybridLM, context: int, chunk: int) -> int:
    """Prefill ``context`` tokens (in chunks) and count the bytes the cache holds."""
    device = model.lm_head.weight.device
    cache = model.new_cache(1, device)
    ids = torch.randint(0, 256, (1, context), generator=torch.Generator().manual_seed(0)).to(device)
    for start in range(0, context, chunk):
        model(ids[:, start : start + chunk], cache)
    return cache.nbytes()


def mtp_decoding(model: HybridLM, prompts: torch.Tensor, generate: int) -> dict:
    """Plain greedy vs MTP self-speculative decoding of each prompt at batch 1: acceptance, speed,
    and how many outputs are token-for-token identical. One short untimed warm-up of each first,
    so lazy CUDA initialisation is not timed."""
    greedy_decode(model, prompts[:1], 8)
    speculative_decode(model, prompts[:1], 8)
    plain_s = spec_s = 0.0
    drafted, accepted, rounds, tokens, identical = [0, 0], [0, 0], 0, 0, 0
    for prompt in prompts:
        t0 = time.perf_counter()
        plain = greedy_decode(model, prompt[None], generate)
        plain_s += time.perf_counter() - t0
        spec, stats = speculative_decode(model, prompt[None], generate)
        spec_s += stats.seconds
        identical += int(spec == plain)
        rounds, tokens = rounds + stats.rounds, tokens + stats.tokens
        drafted = [a + b for a, b in zip(drafted, stats.drafted, strict=True)]
        accepted = [a + b for a, b in zip(accepted, stats.accepted, strict=True)]
    alphas = [a / d if d else 0.0 for a, d in zip(accepted, drafted, strict=True)]
    n = len(prompts) * generate
    return {"alpha1": alphas[0], "alpha2": alphas[1], "tau": tokens / rounds, "plain_tokens_per_s": n / plain_s,
            "spec_tokens_per_s": n / spec_s, "speedup": plain_s / spec_s, "identical_outputs": identical,
            "prompts": len(prompts)}


@lru_cache(maxsize=2)
def corpus(max_bytes: int):
    return build_corpus(max_bytes)


def run(cfg: HybridLMConfig, ctx: RunContext) -> Metrics:
    state = ctx.load_checkpoint() or {"done": {}}
    data = corpus(cfg.corpus_bytes)
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len, lr=cfg.lr,
                       eval_every=max(1, cfg.steps // 8), eval_windows=cfg.eval_windows,
                       checkpoint_every=max(1, cfg.steps // 4))
    bar = ctx.task(f"hybrid_lm seed {ctx.seed}", total=len(VARIANTS) * cfg.steps + 2)
    recipe = NVFP4Recipe(rht=cfg.rht, stochastic_rounding=cfg.stochastic_rounding, weight_2d=cfg.weight_2d,
                         activation_scale=cfg.activation_scale)
    autocast = torch.bfloat16 if ctx.device.type == "cuda" else None  # bf16 autocast on CUDA; fp32 on CPU
    models, results = {}, {}
    for variant in VARIANTS:
        torch.manual_seed(ctx.seed)  # the same initialisation for latent and latent_nvfp4
        model = HybridLM(variant_config(cfg, variant)).to(ctx.device)
        nvfp4 = use_nvfp4(model, recipe, cfg.high_precision_last) if variant == "latent_nvfp4" else {}
        if variant in state["done"]:
            model.load_state_dict(state["done"][variant]["weights"])
            bar.advance(cfg.steps)
        else:
            partial = state.get("partial")
            resume = partial["training"] if partial is not None and partial["variant"] == variant else None

            def checkpoint(training, variant=variant):
                ctx.save_checkpoint({**state, "partial": {"variant": variant, "training": training}})

            t0 = time.perf_counter()
            out = train(model, data.train, data.val, tcfg, seed=ctx.seed, resume=resume, checkpoint=checkpoint,
                        on_step=lambda _s: bar.advance(1), autocast_dtype=autocast)
            state["done"][variant] = {"weights": model.state_dict(), "curve": out["curve"],
                                      "seconds": time.perf_counter() - t0}
            state["partial"] = None
            ctx.save_checkpoint(state)
            ctx.board.log(f"hybrid_lm seed {ctx.seed}: {variant} trained in {state['done'][variant]['seconds']:.0f}s, "
                          f"val bpb {out['val_bpb']:.4f}")
        done = state["done"][variant]
        models[variant] = model.eval()
        results[variant] = {
            "val_bpb": done["curve"][-1]["val_bpb"], "curve": done["curve"], "train_seconds": done["seconds"],
            "params": model.num_parameters(), "active_params": model.num_parameters(active=True), "nvfp4": nvfp4,
        }

    # MTP drafting on held-out files, and decoding speed at batch 1 (plain vs speculative, same prompts;
    # fp32 weights). The NVFP4 model decodes with ``decode_activation_scale``, and also with its
    # training scale where that differs (to show what per-tensor scaling does to speculative decoding).
    prompts = eval_windows(data.val, cfg.prompt_len, cfg.mtp_prompts).to(ctx.device)
    mtp = {"latent": mtp_decoding(models["latent"], prompts, cfg.generate)}
    if cfg.decode_activation_scale != cfg.activation_scale:
        mtp["latent_nvfp4_train_scale"] = mtp_decoding(models["latent_nvfp4"], prompts, cfg.generate)
    replace_recipe(models["latent_nvfp4"], activation_scale=cfg.decode_activation_scale)
    mtp["latent_nvfp4"] = mtp_decoding(models["latent_nvfp4"], prompts, cfg.generate)
    bar.advance(1)

    # Decode-cache memory: the hybrid against an all-attention model of the same depth.
    hybrid_cfg = variant_config(cfg, "latent")
    attention_cfg = dataclasses.replace(hybrid_cfg, pattern="*" * len(hybrid_cfg.pattern), mtp_depths=0)
    attention_model = HybridLM(attention_cfg).to(ctx.device).eval()
    cache = []
    for context in cfg.contexts:
        row = {"context": context, "hybrid_analytic": analytic_cache_bytes(hybrid_cfg, context),
               "attention_analytic": analytic_cache_bytes(attention_cfg, context)}
        if context <= cfg.measure_max_context:
            row["hybrid_measured"] = measured_cache_bytes(models["latent"], context, cfg.prefill_chunk)
            row["attention_measured"] = measured_cache_bytes(attention_model, context, cfg.prefill_chunk)
        cache.append(row)
    bar.finish()
    return {"variants": results, "mtp": mtp, "cache": cache, "corpus": data.summary, "device": ctx.device.type,
            "config": {v: dataclasses.asdict(variant_config(cfg, v)) for v in VARIANTS}}


# --------------------------------------------------------------------------- claim checks


def mean_over(runs: list[Metrics], fn) -> float:
    return statistics.fmean(fn(r) for r in runs)


def bpb(variant: str):
    return lambda runs: mean_over(runs, lambda r: r["variants"][variant]["val_bpb"])


def on_gpu(run: Metrics) -> bool:
    return run.get("device", "cpu") == "cuda"  # results from before this field were CPU runs


def cache_at_largest(runs: list[Metrics]) -> float:
    row = runs[0]["cache"][-1]
    hybrid = row.get("hybrid_measured", row["hybrid_analytic"])
    attention = row.get("attention_measured", row["attention_analytic"])
    return hybrid / attention


def cache_formula_error(runs: list[Metrics]) -> float | None:
    errors = [abs(row[f"{m}_measured"] / row[f"{m}_analytic"] - 1) for r in runs for row in r["cache"]
              for m in ("hybrid", "attention") if f"{m}_measured" in row]
    return max(errors) if errors else None


CHECKS = (
    ClaimCheck("L1", "LatentMoE bpb minus standard-MoE bpb (equal active compute)",
               lambda runs: bpb("latent")(runs) - bpb("moe")(runs), "<=", 0.02),
    ClaimCheck("L2", "NVFP4 relative validation-loss gap to LatentMoE in full precision",
               lambda runs: bpb("latent_nvfp4")(runs) / bpb("latent")(runs) - 1, "<=", 0.03),
    ClaimCheck("L3", "MTP mean accepted length tau (2 drafts) on held-out files",
               lambda runs: mean_over(runs, lambda r: r["mtp"]["latent"]["tau"]), ">=", 1.6),
    ClaimCheck("L4", "Decode cache at the largest context: hybrid / all-attention", cache_at_largest, "<=", 0.25),
    ClaimCheck("L5", "Measured cache bytes vs the analytic formula, worst relative error", cache_formula_error,
               "<=", 0.02),
    ClaimCheck("L6", "Speculative / plain greedy decoding speed, batch 1, on a GPU",
               lambda runs: mean_over(runs, lambda r: r["mtp"]["latent"]["speedup"]), ">=", 1.15,
               applies=lambda runs: all(on_gpu(r) for r in runs)),
    ClaimCheck("R1", "Speculative / plain greedy decoding speed, batch 1, on the runs' device",
               lambda runs: mean_over(runs, lambda r: r["mtp"]["latent"]["speedup"])),
    ClaimCheck("R2", "MTP alpha_1 (first draft accepted)",
               lambda runs: mean_over(runs, lambda r: r["mtp"]["latent"]["alpha1"])),
    ClaimCheck("R3", "MTP alpha_2 (second draft accepted after the first)",
               lambda runs: mean_over(runs, lambda r: r["mtp"]["latent"]["alpha2"])),
    ClaimCheck("R4", "Dense-MLP bpb minus LatentMoE bpb", lambda runs: bpb("dense")(runs) - bpb("latent")(runs)),
    ClaimCheck("R5", "MTP tau of the NVFP4-trained model",
               lambda runs: mean_over(runs, lambda r: r["mtp"]["latent_nvfp4"]["tau"])),
    ClaimCheck("R6", "NVFP4 model: fraction of speculative outputs identical to greedy (decoding scale)",
               lambda runs: mean_over(runs, lambda r: r["mtp"]["latent_nvfp4"]["identical_outputs"]
                                      / r["mtp"]["latent_nvfp4"]["prompts"])),
)


def tables(runs: list[Metrics]) -> list[Table]:
    rows = []
    for v in VARIANTS:
        first = runs[0]["variants"][v]
        rows.append([LABELS[v], f"{bpb(v)(runs):.4f}", f"{first['params'] / 1e6:.2f} M",
                     f"{first['active_params'] / 1e6:.2f} M",
                     f"{statistics.fmean(r['variants'][v]['train_seconds'] for r in runs):.0f} s"])
    where = "GPU" if on_gpu(runs[0]) else "CPU"
    models = Table(f"Validation bits per byte (mean of {len(runs)} seeds), parameters, {where} training time",
                   ["model", "val bpb", "parameters", "active", "train time"], rows)
    m = runs[0]["mtp"]
    mtp = Table(f"MTP self-speculative decoding, batch 1, {where} (seed 0)",
                ["model", "alpha_1", "alpha_2", "tau", "plain tok/s", "speculative tok/s", "speed-up",
                 "identical to greedy"],
                [[LABELS[v], f"{m[v]['alpha1']:.3f}", f"{m[v]['alpha2']:.3f}", f"{m[v]['tau']:.2f}",
                  f"{m[v]['plain_tokens_per_s']:.0f}", f"{m[v]['spec_tokens_per_s']:.0f}", f"{m[v]['speedup']:.2f}x",
                  f"{m[v]['identical_outputs']}/{m[v]['prompts']}"] for v in LABELS if v in m])

    def mib(x):
        return "—" if x is None else f"{x / 2**20:.2f}"

    cache = Table("Decode cache (MiB): hybrid vs all-attention of the same depth, measured / analytic",
                  ["context", "hybrid measured", "hybrid analytic", "attention measured", "attention analytic",
                   "ratio"],
                  [[str(r["context"]), mib(r.get("hybrid_measured")), mib(r["hybrid_analytic"]),
                    mib(r.get("attention_measured")), mib(r["attention_analytic"]),
                    f"{r['hybrid_analytic'] / r['attention_analytic']:.3f}"] for r in runs[0]["cache"]])
    return [models, mtp, cache]


def plot(runs: list[Metrics]) -> dict:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4), layout="tight")
    ax1, ax2 = fig.subplots(1, 2)
    for i, v in enumerate(VARIANTS):
        curve = runs[0]["variants"][v]["curve"]
        ax1.plot([p["step"] for p in curve], [p["val_bpb"] for p in curve], marker="o", color=f"C{i}", label=LABELS[v])
    ax1.set_xlabel("step")
    ax1.set_ylabel("validation bits per byte")
    ax1.set_title("Loss curves (seed 0)")
    ax1.grid(alpha=0.3)
    ax1.legend()
    rows = runs[0]["cache"]
    ctx = [r["context"] for r in rows]
    ax2.plot(ctx, [r["hybrid_analytic"] / 2**20 for r in rows], "C2-", label="hybrid, analytic")
    ax2.plot(ctx, [r["attention_analytic"] / 2**20 for r in rows], "C0-", label="all-attention, analytic")
    for key, color in (("hybrid_measured", "C2"), ("attention_measured", "C0")):
        pts = [(r["context"], r[key] / 2**20) for r in rows if key in r]
        if pts:
            ax2.plot(*zip(*pts, strict=True), "o", color=color, label=key.replace("_", ", "))
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("context (tokens)")
    ax2.set_ylabel("decode cache (MiB)")
    ax2.set_title("Cache memory vs context")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    return {"curves_and_cache": fig}


EXPERIMENT = Experiment(
    name="hybrid_lm",
    system="nemotron",
    summary="Hybrid Mamba-2/attention LM: LatentMoE vs MoE vs dense, NVFP4 training, MTP speculative decoding, "
            "cache memory.",
    profiles={
        "smoke": Profile(HybridLMConfig(size="debug", steps=4, batch_size=2, seq_len=32, corpus_bytes=600_000,
                                        eval_windows=2, mtp_prompts=1, prompt_len=16, generate=8,
                                        contexts=(64, 256), measure_max_context=256, prefill_chunk=64), seeds=1),
        "quick": Profile(HybridLMConfig(steps=100, contexts=(1024, 4096, 65536), measure_max_context=4096,
                                        mtp_prompts=4), seeds=1),
        "full": Profile(HybridLMConfig(), seeds=3),
        # The notes' tiny design and GPU benchmark: d = 256, ~6.5M tokens per model (run with --device cuda).
        "gpu": Profile(HybridLMConfig(size="nano", batch_size=32, seq_len=512, eval_windows=64,
                                      measure_max_context=65536, prefill_chunk=4096), seeds=1),
    },
    run=run,
    checks=CHECKS,
    plot=plot,
    tables=tables,
    threads=1,  # 1.26 s/step at 1 thread; a second thread gains little at d = 128 and leaves a core free
    device="cpu",
)

