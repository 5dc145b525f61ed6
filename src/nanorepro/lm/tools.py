"""The practitioner's path: train the hybrid LM on your own text, then decode with MTP drafts.

    nanorepro lm train --data notes/ --pattern "*.md" --out lm.safetensors --steps 400
    nanorepro lm generate --model lm.safetensors --prompt "def parse(" --tokens 200

``train`` builds ``HybridLM(HybridConfig.named(size))`` (byte-level; LatentMoE, MTP x2),
optionally under Nemotron 3 Super's NVFP4 map (``--nvfp4``), and trains it with
``lm.train.train`` (AdamW, WSD, router-bias balancing). It is resumable: the training state
is checkpointed to ``<out>.ckpt.safetensors`` and the same command continues from it.
``generate`` decodes greedily, by default with MTP self-speculative decoding (the main
model verifies two MTP drafts per forward; the output equals plain greedy decoding), or
samples at a temperature (plain decoding, seeded).

A model file is a nanorepro checkpoint (safetensors; no pickle): weights, model config,
NVFP4 recipe, training curve and the corpus summary (bytes, files, SHA-256).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from nanorepro.common.checkpoint import load_checkpoint, load_owned_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.lm.data import text_corpus
from nanorepro.lm.model import EOS, NAMED_SIZES, PAD, HybridConfig, HybridLM, config_dict, use_nvfp4
from nanorepro.lm.speculative import greedy_decode, speculative_decode
from nanorepro.lm.train import TrainConfig, train
from nanorepro.nn.nvfp4 import NVFP4Recipe, replace_recipe

MODEL_FORMAT = "nanorepro.lm.model/1"


def build_model(config: dict, recipe: dict | None, high_precision_last: int = 1) -> HybridLM:
    model = HybridLM(HybridConfig(**config))
    if recipe is not None:
        use_nvfp4(model, NVFP4Recipe(**recipe), high_precision_last)
    return model


def train_lm(data: Path, out: Path, size: str, tcfg: TrainConfig, seed: int, board, *, pattern: str = "*",
             nvfp4: bool = False, device: torch.device = torch.device("cpu")) -> dict:
    """Train on the bytes of ``data`` (a file or a folder); write the model file; return a summary."""
    if size not in NAMED_SIZES:
        raise UserError(f"unknown size '{size}' (known: {', '.join(NAMED_SIZES)})")
    corpus = text_corpus(data, pattern)
    need = tcfg.seq_len + 2
    if len(corpus.train) < need or len(corpus.val) < need:
        raise UserError(f"{data}: {len(corpus.train)} training and {len(corpus.val)} held-out bytes; both need at "
                        f"least seq_len + 2 = {need} (give more text or a shorter --seq-len)")
    model_cfg = HybridConfig.named(size)
    recipe = dataclasses.asdict(NVFP4Recipe()) if nvfp4 else None
    torch.manual_seed(seed)
    model = build_model(config_dict(model_cfg), recipe).to(device)
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    owner = {"config": config_dict(model_cfg), "recipe": recipe, "train": dataclasses.asdict(tcfg), "seed": seed,
             "corpus": corpus.sha256}
    saved = load_owned_checkpoint(ckpt, owner, board.log)
    resume = saved["training"] if saved else None
    if resume is not None:
        board.log(f"resuming from {ckpt} at step {resume['step']}")
    bar = board.task(f"hybrid LM ({size}) on {data}", tcfg.steps)
    if resume is not None:
        bar.advance(resume["step"])
    autocast = torch.bfloat16 if device.type == "cuda" else None
    t0 = time.perf_counter()
    result = train(model, corpus.train, corpus.val, tcfg, seed=seed, resume=resume, autocast_dtype=autocast,
                   on_step=lambda _step: bar.advance(1),
                   checkpoint=lambda training: save_checkpoint(ckpt, {**owner, "training": training}))
    bar.finish()
    save_checkpoint(out, {"format": MODEL_FORMAT, "config": config_dict(model_cfg), "recipe": recipe,
                          "weights": {k: v.cpu() for k, v in model.state_dict().items()},
                          "curve": result["curve"], "corpus": corpus.summary, "train": dataclasses.asdict(tcfg)})
    ckpt.unlink(missing_ok=True)
    return {"model": str(out), "val_bpb": result["val_bpb"], "seconds": time.perf_counter() - t0,
            "parameters": model.num_parameters(), "active": model.num_parameters(active=True), **corpus.summary}


def load_model(path: Path, device: torch.device = torch.device("cpu")) -> tuple[HybridLM, dict]:
    """The model in eval mode; an NVFP4 model decodes with per-token activation scales (nn/nvfp4.py)."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise UserError(f"{path} is not a nanorepro LM (format {MODEL_FORMAT})")
    model = build_model(state["config"], state["recipe"])
    model.load_state_dict(state["weights"])
    if state["recipe"] is not None:
        replace_recipe(model, activation_scale="token")  # speculative output == greedy output
    return model.to(device).eval(), state


def generate(model_path: Path, prompt: str, tokens: int, speculative: bool = True,
             device: torch.device = torch.device("cpu"), temperature: float = 0.0, seed: int = 0) -> dict:
    """Continuation of ``prompt`` (UTF-8 bytes), cut at the first end-of-text token.

    Greedy (``temperature`` 0; by default with MTP drafts, the same output), or sampled at
    ``temperature`` from a generator seeded with ``seed`` (plain decoding: the drafts'
    verification here is greedy).
    """
    if not prompt:
        raise UserError("the prompt is empty")
    if tokens < 1:
        raise UserError(f"--tokens must be >= 1, got {tokens}")
    if temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {temperature}")
    model, _ = load_model(model_path, device)
    ids = torch.tensor([list(prompt.encode("utf-8"))], device=device)
    extra: dict = {}
    if temperature > 0:
        from nanorepro.llm_rl.policy import HybridPolicy, sample

        generator = torch.Generator(device=device).manual_seed(seed)
        t0 = time.perf_counter()
        out = sample(HybridPolicy(model), ids, tokens, generator, temperature, eos=EOS, pad=PAD)[0].tolist()
        out = out[: out.index(EOS) + 1] if EOS in out else out  # PAD follows the end of text
    else:
        decode = speculative_decode if speculative else greedy_decode
        decode(model, ids, 4)  # untimed warm-up (lazy initialisation), so tokens/s measures decoding
        t0 = time.perf_counter()
        if speculative:
            out, stats = speculative_decode(model, ids, tokens)
            extra = {"tau": stats.tau, "alphas": stats.alphas}
        else:
            out = greedy_decode(model, ids, tokens)
    seconds = time.perf_counter() - t0
    out = out[:tokens]
    text_ids = out[: out.index(EOS)] if EOS in out else out
    data = bytes(t for t in text_ids if t < 256)
    return {"text": data.decode("utf-8", errors="replace"), "tokens": len(out), "seconds": seconds,
            "tokens_per_s": len(out) / seconds, **extra}


__all__ = ["train_lm", "load_model", "generate", "MODEL_FORMAT"]
