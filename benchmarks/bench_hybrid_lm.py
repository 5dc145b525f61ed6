"""Our hybrid LM against Hugging Face's NemotronH on the same tiny config, timed in one run.

    python benchmarks/bench_hybrid_lm.py [--threads 2] [--reps 3]   (needs `pip install -e .[peers]`)

1. forward tokens/s (inference, no cache) on a batch of 4 x 256 tokens;
2. greedy decoding tokens/s at batch 1 (64-token prompt, 64 new tokens; both with caches);
3. our speculative (MTP, 2 drafts) vs our plain greedy decoding on a model with an MTP block.
The same random weights are loaded into both implementations (logits agree to ~1e-6).
Prints one JSON object per line; ratios are ours / theirs.
"""

from __future__ import annotations

import argparse
import json

import torch

from nanorepro.lm.model import HybridConfig, HybridLM, hf_state_dict
from nanorepro.lm.speculative import greedy_decode, speculative_decode
from timing import median_time


@torch.no_grad()
def main(threads: int, reps: int) -> None:
    torch.set_num_threads(threads)
    from transformers import NemotronHConfig, NemotronHForCausalLM

    cfg = HybridConfig.named("nano", mtp_depths=0)
    torch.manual_seed(0)
    ours = HybridLM(cfg).eval()
    theirs = NemotronHForCausalLM(NemotronHConfig(**cfg.to_hf())).eval()
    theirs.load_state_dict(hf_state_dict(ours))
    batch = torch.randint(0, 256, (4, 256))
    t_ours = median_time(lambda: ours(batch), reps)
    t_theirs = median_time(lambda: theirs(batch, use_cache=False), reps)
    print(json.dumps({"bench": "forward", "threads": threads, "tokens": batch.numel(),
                      "ours_tokens_per_s": batch.numel() / t_ours, "hf_tokens_per_s": batch.numel() / t_theirs,
                      "ratio": t_theirs / t_ours}), flush=True)

    prompt = torch.randint(0, 256, (1, 64))
    t_ours = median_time(lambda: greedy_decode(ours, prompt, 64), reps)
    t_theirs = median_time(lambda: theirs.generate(prompt, max_new_tokens=64, min_new_tokens=64, do_sample=False),
                           reps)
    print(json.dumps({"bench": "greedy_decode", "threads": threads, "new_tokens": 64,
                      "ours_tokens_per_s": 64 / t_ours, "hf_tokens_per_s": 64 / t_theirs,
                      "ratio": t_theirs / t_ours}), flush=True)

    mtp_model = HybridLM(HybridConfig.named("nano")).eval()
    t_plain = median_time(lambda: greedy_decode(mtp_model, prompt, 64), reps)
    t_spec = median_time(lambda: speculative_decode(mtp_model, prompt, 64), reps)
    _, stats = speculative_decode(mtp_model, prompt, 64)
    print(json.dumps({"bench": "speculative_untrained", "threads": threads, "tau": stats.tau,
                      "speedup": t_plain / t_spec,
                      "note": "random weights: drafts are rarely accepted; see hybrid_lm for trained numbers"}),
          flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    main(args.threads, args.reps)
