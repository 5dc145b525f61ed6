import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nanorepro.common.checkpoint import load_checkpoint, save_checkpoint
from nanorepro.lm.data import build_corpus
from nanorepro.lm.model import EOS, HybridConfig, HybridLM
from nanorepro.lm.train import TrainConfig, train, wsd_lr


def test_wsd_schedule_by_hand():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_frac=0.05, decay_frac=0.2, min_lr_ratio=0.01)
    assert wsd_lr(0, cfg) == pytest.approx(0.2) and wsd_lr(4, cfg) == pytest.approx(1.0)
    assert wsd_lr(50, cfg) == 1.0 and wsd_lr(80, cfg) == 1.0
    assert wsd_lr(90, cfg) == pytest.approx(1 - 0.5**0.5)
    assert wsd_lr(99, cfg) == pytest.approx(max(0.01, 1 - (19 / 20) ** 0.5))


def test_stdlib_corpus_is_deterministic_with_files_held_out():
    a, b = build_corpus(1_000_000), build_corpus(1_000_000)
    assert a.sha256 == b.sha256 and np.array_equal(a.train, b.train)
    assert a.train.max() <= EOS and (a.val == EOS).sum() >= 1
    assert len(a.val) < 0.2 * len(a.train)


def micro(steps=8):
    torch.manual_seed(0)
    model = HybridLM(HybridConfig.named("debug"))
    stream = np.random.default_rng(0).integers(0, 256, 20000).astype(np.uint16)
    return model, stream, TrainConfig(steps=steps, batch_size=4, seq_len=32, lr=3e-3, eval_every=4, eval_windows=2,
                                      checkpoint_every=4)


def test_training_resumes_exactly(tmp_path):
    model, stream, cfg = micro()
    full = train(model, stream, stream, cfg, seed=0)
    model, stream, cfg = micro()
    saved = []
    train(model, stream, stream, cfg, seed=0, checkpoint=saved.append)
    save_checkpoint(tmp_path / "c.safetensors", saved[0])
    model, stream, cfg = micro()
    resumed = train(model, stream, stream, cfg, seed=0, resume=load_checkpoint(tmp_path / "c.safetensors"))
    assert resumed["curve"] == full["curve"]


def test_torchrun_two_processes_match_one(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    curves = {}
    for n in (1, 2):
        out = tmp_path / f"curve{n}.json"
        subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master_port",
                        str(29500 + n), str(worker), str(out)], check=True, env=env, capture_output=True,
                       timeout=240)
        curves[n] = json.loads(out.read_text())
    one, two = ([p["ce"] for p in curves[n]] for n in (1, 2))
    assert one[-1] < one[0]
    assert np.allclose(one, two, rtol=2e-3), (one, two)


def test_micro_run_loss_falls_in_bf16_autocast_and_nvfp4():
    from nanorepro.lm.model import use_nvfp4
    from nanorepro.nn.nvfp4 import NVFP4Recipe

    for mode in ("bf16", "nvfp4"):
        model, stream, cfg = micro(steps=40)
        stream = np.tile(np.frombuffer(b"def f(x):\n    return x + 1\n", dtype=np.uint8).astype(np.uint16), 400)
        if mode == "nvfp4":
            use_nvfp4(model, NVFP4Recipe())
        curve = train(model, stream, stream, dataclasses.replace(cfg, eval_every=10), seed=0,
                      autocast_dtype=torch.bfloat16 if mode == "bf16" else None)["curve"]
        losses = [p["ce"] for p in curve]
        assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], (mode, losses)
