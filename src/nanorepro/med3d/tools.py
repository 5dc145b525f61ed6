"""TGH-MoE as a tool: train on phantoms, then report on or answer questions about a NIfTI volume.

    nanorepro med3d train --out med3d.safetensors [--set stage2_steps=600]
    nanorepro med3d report --model med3d.safetensors --volume scan.nii.gz
    nanorepro med3d ask --model med3d.safetensors --volume scan.nii.gz --question "how many lesions are there ?"

The model is trained on procedural phantoms only: on a real scan its words describe what
the phantom world taught it, nothing more (a demonstration of the pipeline, not a diagnosis).
Questions must use the grammar's vocabulary (see ``nanorepro.med3d.data.QUESTIONS``).
The model file is a nanorepro checkpoint (safetensors; nothing is unpickled).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.med3d.data import REPORT_PROMPTS, PhantomConfig, Vocabulary, all_text, make_dataset, make_slices
from nanorepro.med3d.experiment import TGHExperimentConfig
from nanorepro.med3d.io import load_nifti
from nanorepro.med3d.model import ModelConfig, VisionLanguageModel
from nanorepro.med3d.train import TrainConfig, choose_option, evaluate, generate, pretrain_2d, train_3d

MODEL_FORMAT = "nanorepro.med3d.model/1"


def train(out: Path, cfg: TGHExperimentConfig, seed: int, board) -> dict:
    """2-D pretraining, stage 1 (dense) and stage 2 (TGH-MoE), as in the experiment's main arm."""
    rng = np.random.default_rng(seed)
    phantom = PhantomConfig(slices=cfg.slices, size=cfg.image)
    data, test = make_dataset(cfg.train_volumes, rng, phantom), make_dataset(cfg.test_volumes, rng, phantom, True)
    images, captions = make_slices(cfg.slice_volumes, rng, phantom, cfg.slices_per_volume)
    vocab = Vocabulary(all_text())
    torch.manual_seed(seed)
    model = VisionLanguageModel(ModelConfig(vocab=len(vocab), image=cfg.image, max_slices=cfg.slices,
                                            depth_tokens=cfg.depth_tokens, experts=cfg.experts, top_k=cfg.top_k))
    bar = board.task("med3d train", total=cfg.pretrain_steps + cfg.stage1_steps + cfg.stage2_steps)
    step = TrainConfig(batch_size=cfg.batch_size, lr=cfg.lr)
    pretrain_2d(model, images, captions, vocab, TrainConfig(steps=cfg.pretrain_steps, batch_size=cfg.pretrain_batch,
                                                            lr=cfg.lr), seed, progress=lambda _: bar.advance(1))
    train_3d(model, data, vocab, dataclasses.replace(step, steps=cfg.stage1_steps), seed + 1,
             progress=lambda _: bar.advance(1))
    model.convert("tgh", noise=cfg.upcycle_noise, generator=torch.Generator().manual_seed(seed))
    train_3d(model, data, vocab, dataclasses.replace(step, steps=cfg.stage2_steps), seed + 2,
             progress=lambda _: bar.advance(1))
    bar.finish()
    metrics = evaluate(model, test, vocab)
    save_checkpoint(out, {"format": MODEL_FORMAT, "config": dataclasses.asdict(model.cfg),
                          "weights": model.state_dict()})
    return {"model": str(out), **{k: metrics[k] for k in ("finding_f1", "closed_acc", "open_em", "bleu1")}}


def _load(model_path: Path) -> tuple[VisionLanguageModel, Vocabulary]:
    state = load_checkpoint(model_path)
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise UserError(f"{model_path} is not a nanorepro med3d model (format {MODEL_FORMAT})")
    model = VisionLanguageModel(ModelConfig(**state["config"]))
    model.load_state_dict(state["weights"])
    return model.eval(), Vocabulary(all_text())


def _volume(model: VisionLanguageModel, volume: Path) -> torch.Tensor:
    return torch.from_numpy(load_nifti(volume, model.cfg.max_slices, model.cfg.image))[None]


def report(model_path: Path, volume: Path) -> str:
    model, vocab = _load(model_path)
    return generate(model, _volume(model, volume), [REPORT_PROMPTS[0]], vocab)[0]


def ask(model_path: Path, volume: Path, question: str, options: list[str] | None = None) -> str:
    """Open answer by greedy decoding, or (with 2+ options) the most likely option."""
    model, vocab = _load(model_path)
    try:
        prompt = question
        if options:
            prompt += " choices : " + " ".join(f"{letter} {o}" for letter, o in zip("abcd", options, strict=False))
            vocab.encode(prompt + " .")
            for option in options:
                vocab.encode(option)
        else:
            vocab.encode(prompt)
    except ValueError as err:
        raise UserError(f"{err} (questions use the phantom grammar's words)") from None
    x = _volume(model, volume)
    if options:
        if not 2 <= len(options) <= 4:
            raise UserError(f"give 2 to 4 options, got {len(options)}")
        return options[choose_option(model, x, [prompt + " ."], [tuple(options)], vocab)[0]]
    return generate(model, x, [question], vocab, max_new=6)[0]
