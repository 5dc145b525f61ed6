"""Run by test_ddp.py under torchrun: a few GRPO and ReVal iterations; rank 0 writes what it saw."""

import json
import sys

import torch
import torch.distributed as dist

from nanorepro.llm_rl.loop import RLConfig, rl_train
from nanorepro.llm_rl.policy import CharTokenizer, TinyGPT, TinyGPTConfig
from nanorepro.llm_rl.tasks import T1_ALPHABET, t1_reward, t1_sample

if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    tok = CharTokenizer(T1_ALPHABET)
    report = {}
    for method in ("grpo", "reval"):
        torch.manual_seed(0)
        policy = TinyGPT(TinyGPTConfig(tok.vocab_size, 16, 1, 2, 40))
        cfg = RLConfig(method, iterations=3, prompts_per_iter=2, group=4, max_new=10, eval_every=3, eval_samples=1)
        curve = rl_train(policy, tok, lambda r, n: t1_sample(r, n, "train"), {"test": t1_sample(
            __import__("numpy").random.default_rng(0), 4, "test")}, t1_reward, cfg, seed=0)
        flat = torch.cat([p.detach().flatten() for p in policy.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, flat)
        report[method] = {"samples": curve[-1]["samples"],
                          "max_param_diff": max((g - gathered[0]).abs().max().item() for g in gathered),
                          "changed": (flat - torch.cat([p.detach().flatten() for p in TinyGPT(TinyGPTConfig(
                              tok.vocab_size, 16, 1, 2, 40)).parameters()])).abs().max().item()}
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(report, f)
    dist.barrier()  # every rank done before teardown (gloo can abort on an unsynchronised destroy)
    dist.destroy_process_group()
