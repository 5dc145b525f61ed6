"""Run by test_train.py under torchrun: a micro training whose curve rank 0 writes to argv[1]."""

import json
import sys

import numpy as np
import torch
import torch.distributed as dist

from nanorepro.lm.model import HybridConfig, HybridLM
from nanorepro.lm.train import TrainConfig, train

if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = HybridLM(HybridConfig.named("debug"))
    stream = np.random.default_rng(0).integers(0, 256, 20000).astype(np.uint16)
    cfg = TrainConfig(steps=6, batch_size=4, seq_len=32, lr=3e-3, eval_every=1, eval_windows=2)
    result = train(model, stream, stream, cfg, seed=0)
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(result["curve"], f)
    dist.barrier()  # every rank done before teardown (gloo can abort on an unsynchronised destroy)
    dist.destroy_process_group()
