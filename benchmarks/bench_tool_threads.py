"""The user commands' work at 1 and 2 torch threads: decides `llm-rl`'s and `lm`'s default count.

    python benchmarks/bench_tool_threads.py [--reps 5]

Times, on the default TinyGPT (d 128, 4 layers) and chain-arithmetic problems: an SFT step
(batch 128, as in `llm-rl sft` and the `reval` experiment) and one RL iteration (16 prompts x
8 samples: rollout, then a Dr. GRPO update; or ReVal's 4 replayed minibatches); and a
training step of the hybrid LM at `lm train`'s defaults (size cpu, 8 x 256 bytes). Each
figure is the median of ``reps`` timings after a warm-up; the ratio compares the two thread
counts measured in the same run. Prints one JSON line per workload. (The other commands'
areas have their own benchmarks: bench_imitation, bench_braking, bench_recsys, bench_med3d.)
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from nanorepro.llm_rl.loop import RLConfig, rl_train, train_lm  # noqa: E402
from nanorepro.llm_rl.policy import CharTokenizer, TinyGPT, TinyGPTConfig  # noqa: E402
from nanorepro.llm_rl.tasks import T1_ALPHABET, t1_reward, t1_sample  # noqa: E402
from nanorepro.lm.model import HybridConfig, HybridLM  # noqa: E402
from nanorepro.lm.train import TrainConfig, train  # noqa: E402
from timing import median_time  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    tok = CharTokenizer(T1_ALPHABET)
    problems = t1_sample(np.random.default_rng(0), 2000, "train", 3, 0.3)
    examples = [(p.prompt, p.gold) for p in problems]
    torch.manual_seed(0)
    model = TinyGPT(TinyGPTConfig(tok.vocab_size, 128, 4, 4, 40))

    def sft_steps():
        train_lm(model, tok, examples, 5, 128, 1e-3, torch.Generator().manual_seed(0))

    def rl_iteration(method):
        def run():
            rl_train(model, tok, lambda rng, n: [problems[i] for i in rng.integers(0, 2000, n)], {}, t1_reward,
                     RLConfig(method, iterations=2, max_new=16, eval_every=100), seed=0)
        return run

    stream = np.random.default_rng(0).integers(0, 256, 200_000).astype(np.uint16)
    lm = HybridLM(HybridConfig.named("cpu"))

    def lm_steps():
        train(lm, stream, stream[:10_000], TrainConfig(steps=3, batch_size=8, seq_len=256, eval_every=1000,
                                                       eval_windows=1), seed=0)

    for name, fn, per in (("llm_rl_sft_step_batch128", sft_steps, 5),
                          ("llm_rl_iteration_dr_grpo", rl_iteration("grpo"), 2),
                          ("llm_rl_iteration_reval", rl_iteration("reval"), 2),
                          ("lm_train_step_cpu_size", lm_steps, 3)):
        seconds = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            seconds[threads] = median_time(fn, args.reps) / per
        print(json.dumps({"bench": name, "s_1_thread": round(seconds[1], 4), "s_2_threads": round(seconds[2], 4),
                          "speedup_2_over_1": round(seconds[1] / seconds[2], 2)}))


if __name__ == "__main__":
    main()
