"""Experiment ``tabletop_world_models``: the chunked policy and both chunk-level world models on Tabletop.

The shared ground of VLGOR, VLA-MBPO and SuP, measured once: scripted demonstrations of
training tasks; the ACT-style policy trained by behaviour cloning on nested subsets of
them (success vs number of demonstrations, in the real suite); the state world model; the
pixel world model with interleaved (head, then wrist given head) and independent view
decoding, sharing the same VQ tokenizers. World models are scored on held-out real
chunks: chunks of held-out demonstrations and of the policy's own rollouts (which include
failures), so the success heads see both outcomes.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from nanorepro.common.experiment import ClaimCheck, Experiment, Metrics, Profile, RunContext, Table
from nanorepro.common.stats import spearman
from nanorepro.embodied.demos import make_demos
from nanorepro.embodied.pixel_world_model import (
    PROPRIO,
    PixelWorldModel,
    PixelWorldModelConfig,
    VQConfig,
    cross_view_inconsistency,
    token_transitions,
)
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, rollout, to_float, train_bc
from nanorepro.embodied.world_model import StateWorldModel, WorldModelConfig, auroc, chunk_transitions, demo_chunks
from nanorepro.envs.tabletop import TabletopConfig, sample_task

SPLITS = ("train", "unseen", "paraphrase", "novel")
VIEWS = ("head", "wrist")


@dataclass(frozen=True)
class TabletopWorldModelsConfig:
    demos: int = 500                       # training-task demonstrations (the main policy's data)
    curve_demos: tuple[int, ...] = (150,)  # smaller nested subsets for the success-vs-demos curve
    held_out_demos: int = 60
    horizon: int = 8
    policy_steps: int = 4000
    eval_tasks: int = 60                   # per split
    eval_steps: int = 200
    state_wm_steps: int = 3000
    vq_steps: int = 2000
    wm_steps: int = 1500
    wm_eval: int = 512                     # held-out transitions for the per-view metrics
    frames: int = 3                        # sample transitions shown in the report


def _episodes(data: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` episodes of demonstration arrays."""
    rows = data["episode"] < n
    out = {k: v[rows] for k, v in data.items() if k in ("state", "head", "wrist", "action", "precise", "solved",
                                                         "episode")}
    return {**out, "instruction": data["instruction"][:n], "success": data["success"][:n], "chunk": data["chunk"]}


def _concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def _pixel_metrics(model: PixelWorldModel, chunks: dict[str, np.ndarray], window: float, batch: int = 128) -> dict:
    """Per-view errors, token accuracy, cross-view inconsistency, success logits, uncertainty of one model."""
    sums: dict[str, list] = {}
    for i in range(0, len(chunks["solved"]), batch):
        part = {k: torch.as_tensor(v[i: i + batch]) for k, v in chunks.items()}
        obs = {k: part[k] for k in ("state", "head", "wrist")}
        codes_now = model.tokenize(part["head"], part["wrist"])
        codes_next = model.tokenize(part["next_head"], part["next_wrist"])
        out = model.predict_codes({"instruction": part["instruction"], "chunk": part["chunk"].float(),
                                   "proprio": obs["state"][:, :PROPRIO], "head_now": codes_now[0],
                                   "wrist_now": codes_now[1]})
        row: dict[str, torch.Tensor] = {"success": out["success"], "uncertainty": out["uncertainty"]}
        with torch.no_grad():
            predicted = {}
            for v, now, nxt in zip(VIEWS, codes_now, codes_next, strict=True):
                tok = model.tokenizers[v]
                real = to_float(part[f"next_{v}"])
                predicted[v] = tok.decode(out[v]).clamp(0, 1)
                row[f"{v}_mae"] = (predicted[v] - real).abs().mean((1, 2, 3))
                row[f"{v}_copy_mae"] = (to_float(part[v]) - real).abs().mean((1, 2, 3))
                row[f"{v}_recon_mae"] = (tok.decode(nxt).clamp(0, 1) - real).abs().mean((1, 2, 3))
                row[f"{v}_token_acc"] = (out[v] == nxt).float().mean(1)
                row[f"{v}_copy_token_acc"] = (now == nxt).float().mean(1)
            row["inconsistency"] = cross_view_inconsistency(predicted["head"], predicted["wrist"], window)
            row["inconsistency_real"] = cross_view_inconsistency(to_float(part["next_head"]),
                                                                 to_float(part["next_wrist"]), window)
        for k, v in row.items():
            sums.setdefault(k, []).append(v)
    return {k: torch.cat(v).numpy() for k, v in sums.items()}


def _success_logits(model: PixelWorldModel, chunks: dict[str, np.ndarray], batch: int = 256) -> np.ndarray:
    """The success head alone (one pass over the context; no frames decoded)."""
    out = []
    for i in range(0, len(chunks["solved"]), batch):
        part = {k: torch.as_tensor(chunks[k][i: i + batch]) for k in ("state", "head", "wrist", "instruction", "chunk")}
        out.append(model.success_logits(part, part["instruction"], part["chunk"].float()))
    return torch.cat(out).numpy()


def _encode_frames(images: np.ndarray) -> dict:
    images = np.ascontiguousarray(images, dtype=np.uint8)
    return {"shape": list(images.shape), "data": base64.b64encode(images.tobytes()).decode()}


def decode_frames(stored: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(stored["data"]), np.uint8).reshape(stored["shape"])


def tabletop_run(cfg: TabletopWorldModelsConfig, ctx: RunContext) -> Metrics:
    state = ctx.load_checkpoint() or {}
    wall = state.setdefault("wall", {})
    counts = sorted({*cfg.curve_demos, cfg.demos})
    bar = ctx.task(f"tabletop seed {ctx.seed}", total=1 + len(counts) + 4)
    seed = ctx.seed
    t0 = time.time()
    rng = np.random.default_rng(seed)
    train_tasks = [sample_task("train", rng) for _ in range(cfg.demos)]
    held_tasks = [sample_task("train", rng) for _ in range(cfg.held_out_demos)]
    demos = make_demos(train_tasks, seed=seed, horizon=cfg.horizon)
    held = make_demos(held_tasks, seed=seed + 10_000, horizon=cfg.horizon)
    eval_rng = np.random.default_rng(seed + 20_000)
    evaluation = {s: [sample_task(s, eval_rng) for _ in range(cfg.eval_tasks)] for s in SPLITS}
    view_size = demos["head"].shape[1]
    wall["demos_s"] = time.time() - t0
    bar.advance(1)

    # 1. the chunked policy, on nested subsets of the demonstrations
    pcfg = PolicyConfig(horizon=cfg.horizon, view_size=view_size)
    curve = state.setdefault("curve", {})
    for n in counts:
        if str(n) in curve:
            bar.advance(1)
            continue
        t0 = time.time()
        torch.manual_seed(seed)
        policy = ChunkPolicy(pcfg)
        losses = train_bc(policy, _episodes(demos, n), cfg.policy_steps, seed=seed)
        splits = SPLITS if n == cfg.demos else ("train", "unseen")
        curve[str(n)] = {s: float(rollout(policy, evaluation[s], seed + 30_000, cfg.eval_steps)["success"].mean())
                         for s in splits}
        curve[str(n)]["final_loss"] = float(np.mean(losses[-100:]))
        wall[f"policy_{n}_s"] = time.time() - t0
        if n == cfg.demos:
            state["policy"] = policy.state_dict()
        ctx.save_checkpoint(state)
        bar.advance(1)
    policy = ChunkPolicy(pcfg)
    policy.load_state_dict(state["policy"])
    rollouts = rollout(policy, evaluation["train"], seed + 30_000, cfg.eval_steps, record=True)
    rollouts.pop("success")
    real = {"demos": demo_chunks(held, cfg.horizon), "rollouts": rollouts}
    both = _concat(real["demos"], real["rollouts"])

    # 2. the state world model
    if "state_wm" not in state:
        t0 = time.time()
        torch.manual_seed(seed)
        transitions = chunk_transitions(demos, cfg.horizon)
        split = torch.randperm(len(transitions["solved"]), generator=torch.Generator().manual_seed(seed))
        n_valid = len(split) // 10
        valid = {k: v[split[:n_valid]] for k, v in transitions.items()}
        train = {k: v[split[n_valid:]] for k, v in transitions.items()}
        wm = StateWorldModel(transitions["state"].shape[1], cfg.horizon, WorldModelConfig(
            ensemble=replace(WorldModelConfig().ensemble, max_steps=cfg.state_wm_steps,
                             eval_every=max(1, cfg.state_wm_steps // 12))))
        wm.fit(train, valid, seed=seed)
        result = {}
        for name, chunks in (*real.items(), ("all", both)):
            s, ins, ch = (torch.as_tensor(chunks[k]) for k in ("state", "instruction", "chunk"))
            predicted, logit, uncertainty = wm.predict(s, ins, ch.float())
            nxt = torch.as_tensor(chunks["next_state"])
            result[name] = {"state_mse": float(((predicted - nxt) ** 2).mean()),
                            "no_change_mse": float(((s - nxt) ** 2).mean()),
                            "auroc": _auroc_or_none(logit.numpy(), chunks["solved"]),
                            "positives": int(chunks["solved"].sum()), "chunks": len(chunks["solved"])}
        state["state_wm"] = result
        wall["state_wm_s"] = time.time() - t0
        ctx.save_checkpoint(state)
    bar.advance(1)

    # 3. the pixel world models: shared VQ tokenizers, interleaved vs independent view decoding
    window = TabletopConfig().wrist_window
    base = PixelWorldModelConfig(vq=replace(VQConfig(), steps=cfg.vq_steps), steps=cfg.wm_steps)
    models = {"interleaved": PixelWorldModel(view_size, cfg.horizon, base),
              "independent": PixelWorldModel(view_size, cfg.horizon, replace(base, interleaved=False))}
    if "tokenizers" not in state:
        t0 = time.time()
        torch.manual_seed(seed)
        for v in VIEWS:
            models["interleaved"].tokenizers[v].fit(torch.as_tensor(demos[v]), seed=seed)
        state["tokenizers"] = models["interleaved"].tokenizers.state_dict()
        wall["vq_s"] = time.time() - t0
        ctx.save_checkpoint(state)
    bar.advance(1)
    for model in models.values():
        model.tokenizers.load_state_dict(state["tokenizers"])
    pixel = state.setdefault("pixel", {})
    transitions = token_transitions(models["interleaved"], demos, cfg.horizon)
    eval_rows = np.random.default_rng(seed).permutation(len(real["demos"]["solved"]))[: cfg.wm_eval]
    held_eval = {k: v[np.sort(eval_rows)] for k, v in real["demos"].items()}
    frames = state.setdefault("frames", {})
    for name, model in models.items():
        if name in pixel:
            continue
        t0 = time.time()
        torch.manual_seed(seed)
        losses = model.fit(transitions, seed=seed)
        wall[f"pixel_{name}_s"] = time.time() - t0
        model.eval()
        per_view = _pixel_metrics(model, held_eval, window)
        scores = {k: _success_logits(model, chunks) for k, chunks in real.items()}
        metrics = {k: float(v.mean()) for k, v in per_view.items() if k not in ("success", "uncertainty")}
        metrics["auroc"] = {k: _auroc_or_none(v, real[k]["solved"]) for k, v in scores.items()}
        metrics["auroc"]["all"] = _auroc_or_none(np.concatenate([scores["demos"], scores["rollouts"]]),
                                                both["solved"])
        error = per_view["head_mae"] + per_view["wrist_mae"]
        metrics["uncertainty_error_spearman"] = spearman(per_view["uncertainty"], error)
        metrics["final_loss"] = float(np.mean(losses[-100:]))
        pixel[name] = metrics
        if seed == 0 and cfg.frames:
            moved = np.abs(held_eval["next_state"][:, :2] - held_eval["state"][:, :2]).sum(1)
            pick = np.sort(np.argsort(-moved)[: cfg.frames])
            sample = {k: torch.as_tensor(v[pick]) for k, v in held_eval.items()}
            head, wrist, _, _ = model.predict({k: sample[k] for k in ("state", "head", "wrist")},
                                              sample["instruction"], sample["chunk"].float())
            for v, img in zip(VIEWS, (head, wrist), strict=True):
                frames[f"{name}_{v}"] = _encode_frames((img.permute(0, 2, 3, 1) * 255).round().numpy())
                frames[f"now_{v}"] = _encode_frames(sample[v].numpy())
                frames[f"real_{v}"] = _encode_frames(sample[f"next_{v}"].numpy())
        ctx.save_checkpoint(state)
        bar.advance(1)
    bar.finish()
    return {"curve": curve, "state_wm": state["state_wm"], "pixel": pixel, "frames": frames, "wall": wall,
            "sizes": {"demo_steps": len(demos["state"]), "demos_solved": float(demos["success"].mean()),
                      "train_transitions": len(transitions["solved"]),
                      "held_out_chunks": len(real["demos"]["solved"]),
                      "rollout_chunks": len(real["rollouts"]["solved"])}}


def _auroc_or_none(scores: np.ndarray, labels: np.ndarray) -> float | None:
    labels = np.asarray(labels, bool)
    return auroc(scores, labels) if 0 < labels.sum() < len(labels) else None


# --------------------------------------------------------------------------- claim checks (fixed before the run)

def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _policy_success(runs: list[Metrics], split: str = "train") -> float | None:
    return _mean([r["curve"][max(r["curve"], key=int)].get(split) for r in runs])


def _inconsistency_ratio(runs: list[Metrics]) -> float | None:
    a = _mean([r["pixel"]["interleaved"]["inconsistency"] for r in runs])
    b = _mean([r["pixel"]["independent"]["inconsistency"] for r in runs])
    return None if a is None or not b else a / b


TABLETOP_CHECKS = (
    ClaimCheck("T1", "Chunked BC policy, success on 60 training tasks (200 steps): middling, as a base to improve",
               _policy_success, "in", (0.40, 0.70)),
    ClaimCheck("T2", "Pixel world model (interleaved) success-head AUROC on held-out real chunks "
                     "(held-out demonstrations + policy rollouts)",
               lambda r: _mean([x["pixel"]["interleaved"]["auroc"]["all"] for x in r]), ">=", 0.85),
    ClaimCheck("T3", "State world model success-head AUROC, same chunks",
               lambda r: _mean([x["state_wm"]["all"]["auroc"] for x in r]), ">=", 0.85),
    ClaimCheck("T4", "Cross-view inconsistency, interleaved / independent decoding (< 1: interleaving helps)",
               _inconsistency_ratio, "<=", 1.0, seed_spread=True),
    ClaimCheck("R1", "State world model: end-of-chunk state MSE / no-change MSE (held-out demonstrations)",
               lambda r: _mean([x["state_wm"]["demos"]["state_mse"] / x["state_wm"]["demos"]["no_change_mse"]
                                for x in r])),
    ClaimCheck("R2", "Pixel world model (interleaved): head-view MAE / copy-the-current-frame MAE",
               lambda r: _mean([x["pixel"]["interleaved"]["head_mae"] / x["pixel"]["interleaved"]["head_copy_mae"]
                                for x in r])),
    ClaimCheck("R3", "Chunked BC policy, success on 60 unseen combinations", lambda r: _policy_success(r, "unseen")),
)


def tabletop_tables(runs: list[Metrics]) -> list[Table]:
    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    counts = sorted(runs[0]["curve"], key=int)
    curve = Table(f"Policy success vs demonstrations (60 tasks a split, mean of {len(runs)} seeds)",
                  ["demonstrations", *SPLITS, "final BC loss"],
                  [[n, *(fmt(_mean([r["curve"][n].get(s) for r in runs])) for s in SPLITS),
                    fmt(_mean([r["curve"][n]["final_loss"] for r in runs]))] for n in counts])
    rows = []
    for name in ("interleaved", "independent"):
        def m(key, name=name):
            return fmt(_mean([r["pixel"][name][key] for r in runs]))
        rows.append([name, m("head_mae"), m("head_copy_mae"), m("head_recon_mae"), m("head_token_acc"),
                     m("wrist_mae"), m("wrist_copy_mae"), m("wrist_recon_mae"), m("wrist_token_acc"),
                     m("inconsistency"), m("inconsistency_real"),
                     fmt(_mean([r["pixel"][name]["auroc"]["all"] for r in runs])),
                     m("uncertainty_error_spearman")])
    pixel = Table("Pixel world model on held-out demonstration chunks (MAE in [0, 1] pixel units; copy = the "
                  "current frame; recon = VQ reconstruction of the real next frame)",
                  ["decoding", "head MAE", "head copy", "head recon", "head token acc", "wrist MAE", "wrist copy",
                   "wrist recon", "wrist token acc", "cross-view inconsistency", "same on real frames",
                   "success AUROC", "Spearman(entropy, error)"], rows)
    state_rows = [[k, fmt(_mean([r["state_wm"][k]["state_mse"] for r in runs])),
                   fmt(_mean([r["state_wm"][k]["no_change_mse"] for r in runs])),
                   fmt(_mean([r["state_wm"][k]["auroc"] for r in runs])),
                   str(runs[0]["state_wm"][k]["chunks"]), str(runs[0]["state_wm"][k]["positives"])]
                  for k in ("demos", "rollouts", "all")]
    state = Table("State world model on real chunks", ["chunks from", "state MSE", "no-change MSE", "success AUROC",
                                                       "chunks (seed 0)", "positives (seed 0)"], state_rows)
    return [curve, state, pixel]


def tabletop_plot(runs: list[Metrics]) -> dict:
    import matplotlib.pyplot as plt

    figures = {}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    counts = sorted(runs[0]["curve"], key=int)
    for split in ("train", "unseen"):
        ax.plot([int(n) for n in counts], [_mean([r["curve"][n].get(split) for r in runs]) for n in counts],
                marker="o", label=split)
    ax.set_xlabel("demonstrations")
    ax.set_ylabel("success")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Chunked BC policy")
    fig.tight_layout()
    figures["policy_curve"] = fig
    frames = next((r["frames"] for r in runs if r.get("frames")), None)
    if frames:
        columns = ("now", "real", "interleaved", "independent")
        n = decode_frames(frames["now_head"]).shape[0]
        fig, axes = plt.subplots(2 * n, len(columns), figsize=(2 * len(columns), 2 * 2 * n))
        for i in range(n):
            for j, c in enumerate(columns):
                for k, v in enumerate(VIEWS):
                    ax = axes[2 * i + k, j]
                    ax.imshow(decode_frames(frames[f"{c}_{v}"])[i], interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if i == 0 and k == 0:
                        ax.set_title({"now": "chunk start", "real": "real end", "interleaved": "predicted, interleaved",
                                      "independent": "predicted, independent"}[c], fontsize=8)
                    if j == 0:
                        ax.set_ylabel(v, fontsize=8)
        fig.tight_layout()
        figures["frames"] = fig
    return figures


EXPERIMENT = Experiment(
    name="tabletop_world_models",
    system="tabletop",
    summary="The embodied systems' shared ground on the Tabletop suite: a chunked BC policy (success vs "
            "demonstrations), a state world model and a VQ pixel world model with interleaved vs independent "
            "two-view decoding, scored on held-out real chunks",
    profiles={
        "smoke": Profile(TabletopWorldModelsConfig(demos=8, curve_demos=(4,), held_out_demos=4, policy_steps=5,
                                                   eval_tasks=4, eval_steps=16, state_wm_steps=10, vq_steps=5,
                                                   wm_steps=3, wm_eval=16, frames=2), seeds=1),
        "quick": Profile(TabletopWorldModelsConfig(demos=100, curve_demos=(), held_out_demos=30, policy_steps=1000,
                                                   eval_tasks=30, state_wm_steps=1000, vq_steps=500, wm_steps=400,
                                                   wm_eval=128), seeds=1),
        "full": Profile(TabletopWorldModelsConfig(), seeds=3),
    },
    run=tabletop_run, checks=TABLETOP_CHECKS, plot=tabletop_plot, tables=tabletop_tables, threads=1, device="cpu",
)
