"""Pilot for the tgh_moe experiment: 2-D pretraining + stage 1 only, evaluated, with timings.

    PYTHONPATH=src python scripts/pilot_tgh_moe.py [--stage1-steps 300]
"""

import argparse
import time

import numpy as np
import torch

from nanorepro.med3d.data import Vocabulary, all_text, make_dataset, make_slices
from nanorepro.med3d.model import ModelConfig, VisionLanguageModel
from nanorepro.med3d.train import TrainConfig, evaluate, pretrain_2d, train_3d

parser = argparse.ArgumentParser()
parser.add_argument("--stage1-steps", type=int, default=300)
parser.add_argument("--pretrain-steps", type=int, default=400)
parser.add_argument("--scratch", action="store_true", help="skip 2-D pretraining")
args = parser.parse_args()
torch.set_num_threads(1)
rng = np.random.default_rng(0)
train, test = make_dataset(1000, rng), make_dataset(150, rng, test=True)
images, captions = make_slices(1500, rng)
vocab = Vocabulary(all_text())
torch.manual_seed(0)
model = VisionLanguageModel(ModelConfig(vocab=len(vocab), depth_tokens=2))
start = time.time()
if not args.scratch:
    curve = pretrain_2d(model, images, captions, vocab, TrainConfig(steps=args.pretrain_steps, batch_size=32), 0)
    print(f"2-D pretraining {time.time() - start:.0f}s, caption loss {curve[0]:.2f} -> {np.mean(curve[-20:]):.2f}")
start = time.time()
curve = train_3d(model, train, vocab, TrainConfig(steps=args.stage1_steps), 1)
print(f"stage 1 {time.time() - start:.0f}s, loss {curve[0]:.2f} -> {np.mean(curve[-20:]):.2f}")
start = time.time()
r = evaluate(model, test, vocab)
r.pop("per_example")
print(f"evaluation {time.time() - start:.0f}s")
for k, v in r.items():
    print(k, v)
