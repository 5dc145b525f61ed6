"""The user commands' work at 1 and 2 torch threads: decides `llm-rl`'s, `lm`'s and `embodied`'s default count.

    python benchmarks/bench_tool_threads.py [--reps 5] [--only embodied]

Times, on the default TinyGPT (d 128, 4 layers) and chain-arithmetic problems: an SFT step
(batch 128, as in `llm-rl sft` and the `reval` experiment) and one RL iteration (16 prompts x
8 samples: rollout, then a Dr. GRPO update; or ReVal's 4 replayed minibatches); and a
training step of the hybrid LM at `lm train`'s defaults (size cpu, 8 x 256 bytes); for
`embodied`: a behaviour-cloning step of the view policy (batch 64) and of the object policy
(batch 256), a fitted-Q step of SuP's scheduler (batch 256), the view policy acting in 64
scenes for 40 control steps, and `vla-mbpo`'s work: a VQ tokenizer step, a pixel world model
step (batch 16) and a VLA-MBPO iteration (64 imagined chunks, k = 2, then PPO); and `vlgor`'s: a
rollout generator step (batch 16), sampling 64 rollouts and an IQL critic step (batch 256). Each
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
from nanorepro.embodied.demos import make_demos  # noqa: E402
from nanorepro.embodied.offline_rl import demo_transitions, fit_critics  # noqa: E402
from nanorepro.embodied.pixel_world_model import (  # noqa: E402
    PixelWorldModel,
    PixelWorldModelConfig,
    VQConfig,
    token_transitions,
)
from nanorepro.embodied.policy import ChunkPolicy, PolicyConfig, train_bc  # noqa: E402
from nanorepro.embodied.sup import (  # noqa: E402
    PolicyChunks,
    SchedulerConfig,
    execute,
    fixed_rate,
    random_rates,
    train_scheduler,
)
from nanorepro.embodied.vla_mbpo import ImaginedPPO, LoopConfig, PPOConfig  # noqa: E402
from nanorepro.embodied.vlgor import DYNAMIC, GeneratorConfig, RolloutGenerator, rollout_arrays  # noqa: E402
from nanorepro.envs.tabletop import sample_task  # noqa: E402
from nanorepro.llm_rl.loop import RLConfig, rl_train, train_lm  # noqa: E402
from nanorepro.llm_rl.policy import CharTokenizer, TinyGPT, TinyGPTConfig  # noqa: E402
from nanorepro.llm_rl.tasks import T1_ALPHABET, t1_reward, t1_sample  # noqa: E402
from nanorepro.lm.model import HybridConfig, HybridLM  # noqa: E402
from nanorepro.lm.train import TrainConfig, train  # noqa: E402
from timing import median_time  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", default="", help="Run the workloads whose name starts with this.")
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

    rng = np.random.default_rng(0)
    demos = make_demos([sample_task("train", rng) for _ in range(64)], seed=0)
    views, objects = ChunkPolicy(PolicyConfig()), ChunkPolicy(PolicyConfig(encoder="objects"))
    scenes = [sample_task("train", rng) for _ in range(64)]
    log = execute(lambda sim, h: PolicyChunks(views), scenes, 0, random_rates(0), max_steps=40, record=True,
                  views=True)["rows"]
    costs = rng.random((len(log["state"]), 4))

    def bc_steps(policy, batch):
        return lambda: train_bc(policy, demos, 5, batch)

    def act_in_scenes():
        execute(lambda sim, h: PolicyChunks(views), scenes, 0, fixed_rate(1), max_steps=40, views=True)

    def q_steps():
        train_scheduler(log, costs, 0.5, SchedulerConfig(dual_iterations=1, q_steps=20))

    wm = PixelWorldModel(32, 8, PixelWorldModelConfig(vq=VQConfig(steps=5), steps=5))
    for view in ("head", "wrist"):
        wm.tokenizers[view].fit(torch.as_tensor(demos[view]), seed=0)
    transitions = token_transitions(wm, demos, 8)
    pool = {k: torch.as_tensor(demos[k]) for k in ("state", "head", "wrist")}
    pool["instruction"] = torch.as_tensor(demos["instruction"][demos["episode"]])

    def vq_steps():
        wm.tokenizers["head"].fit(torch.as_tensor(demos["head"]), seed=0)

    def wm_steps():
        wm.fit(transitions, seed=0)

    def imagined_ppo_iterations():
        loop = ImaginedPPO(views, wm.eval(), float("inf"), pool, pool, LoopConfig(2, 2, 64), PPOConfig(), 0)
        loop.improve()

    rollouts = rollout_arrays(demos, 8, 10)
    generator = RolloutGenerator(GeneratorConfig(state_prompt=True, steps=5))
    real = demo_transitions(demos, 8)

    def generator_steps():
        generator.fit(rollouts, seed=0)

    def sample_rollouts():
        first = torch.as_tensor(rollouts["first_state"][:, DYNAMIC])
        generator.sample(*(torch.as_tensor(rollouts[k]) for k in ("head", "wrist", "instruction")),
                         torch.Generator().manual_seed(0), first_state=first)

    def critic_steps():
        fit_critics(real, 20, 0, torch.Generator().manual_seed(0))

    for name, fn, per in (("embodied_bc_step_views_batch64", bc_steps(views, 64), 5),
                          ("embodied_bc_step_objects_batch256", bc_steps(objects, 256), 5),
                          ("embodied_sup_fitted_q_step", q_steps, 20),
                          ("embodied_act_64_scenes_40_steps", act_in_scenes, 1),
                          ("embodied_vq_tokenizer_step", vq_steps, 5),
                          ("embodied_pixel_world_model_step_batch16", wm_steps, 5),
                          ("embodied_vla_mbpo_iteration_64_imagined_chunks", imagined_ppo_iterations, 2),
                          ("embodied_vlgor_generator_step_batch16", generator_steps, 5),
                          ("embodied_vlgor_sample_64_rollouts", sample_rollouts, 1),
                          ("embodied_vlgor_critic_step_batch256", critic_steps, 20),
                          ("llm_rl_sft_step_batch128", sft_steps, 5),
                          ("llm_rl_iteration_dr_grpo", rl_iteration("grpo"), 2),
                          ("llm_rl_iteration_reval", rl_iteration("reval"), 2),
                          ("lm_train_step_cpu_size", lm_steps, 3)):
        if not name.startswith(args.only):
            continue
        seconds = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            seconds[threads] = median_time(fn, args.reps) / per
        print(json.dumps({"bench": name, "s_1_thread": round(seconds[1], 4), "s_2_threads": round(seconds[2], 4),
                          "speedup_2_over_1": round(seconds[1] / seconds[2], 2)}))


if __name__ == "__main__":
    main()
