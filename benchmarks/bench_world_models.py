"""Train and predict throughput of the Tabletop world models and the chunked policy, at 1 and 2 threads.

    python benchmarks/bench_world_models.py [--reps 3]

Chunk transitions per second: a training step (forward, backward, Adam) of the state
world model (5-member ensemble), the VQ tokenizer (one view), the pixel world model's
dynamics transformer (interleaved and independent decoding), and the policy's BC step;
prediction of end-of-chunk frames (tokenize both views, decode head then wrist, detokenize).
The independent / interleaved ratio is measured in the same run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch

from nanorepro.embodied.pixel_world_model import PixelWorldModel, PixelWorldModelConfig
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig
from nanorepro.embodied.world_model import StateWorldModel, features
from nanorepro.envs.tabletop import MAX_WORDS
from timing import median_time

H, P = 8, 32


def _obs(B: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"state": torch.rand(B, 30, generator=g), "instruction": torch.randint(0, 20, (B, MAX_WORDS), generator=g),
            "head": torch.randint(0, 256, (B, P, P, 3), dtype=torch.uint8, generator=g),
            "wrist": torch.randint(0, 256, (B, P, P, 3), dtype=torch.uint8, generator=g)}


def _train_rate(module: torch.nn.Module, loss_fn, batch: int, reps: int, steps: int = 5) -> float:
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)

    def run():
        for _ in range(steps):
            loss = loss_fn()
            opt.zero_grad()
            loss.backward()
            opt.step()

    return batch * steps / median_time(run, reps)


def bench_threads(reps: int, g: torch.Generator) -> dict:
    out = {}
    obs, chunk = _obs(64, g), torch.rand(64, H, 3, generator=g)
    policy = ChunkPolicy(PolicyConfig(horizon=H))
    out["policy_bc_samples_per_s"] = _train_rate(policy, lambda: policy.loss(obs, chunk), 64, reps)
    wm = StateWorldModel(30, H)
    x = features(obs["state"], obs["instruction"], chunk)
    out["state_wm_train_samples_per_s"] = _train_rate(wm, lambda: wm.dynamics.mse(x, obs["state"]).sum(), 64, reps)
    models = {"interleaved": PixelWorldModel(P, H),
              "independent": PixelWorldModel(P, H, replace(PixelWorldModelConfig(), interleaved=False))}
    tok = models["interleaved"].tokenizers["head"]
    out["vq_train_images_per_s"] = _train_rate(tok, lambda: tok.loss(obs["head"])[0], 64, reps)
    for name, model in models.items():
        B, n = model.cfg.batch_size, model.sizes["head_query"]
        batch = {"instruction": obs["instruction"][:B], "chunk": chunk[:B], "proprio": obs["state"][:B, :5],
                 **{k: torch.randint(0, 128, (B, n), generator=g) for k in
                    ("head_now", "wrist_now", "head_next", "wrist_next")}, "solved": torch.zeros(B)}
        out[f"pixel_{name}_train_transitions_per_s"] = _train_rate(model, lambda m=model, b=batch: m.loss(b), B, reps)
        model.eval()
        out[f"pixel_{name}_predict_transitions_per_s"] = 64 / median_time(
            lambda m=model: m.predict(obs, obs["instruction"], chunk), reps)
    out["independent_over_interleaved_predict"] = (out["pixel_independent_predict_transitions_per_s"]
                                                   / out["pixel_interleaved_predict_transitions_per_s"])
    return out


def bench(reps: int) -> dict:
    out = {"bench": "tabletop_world_models", "view_px": P, "horizon": H}
    g = torch.Generator().manual_seed(0)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out.update({f"{k}_{threads}thr": v for k, v in bench_threads(reps, g).items()})
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    print(json.dumps(bench(parser.parse_args().reps)))
