"""The ten systems nanorepro reproduces, and the registry of experiments that check them.

To add an experiment: build an ``Experiment`` (``nanorepro.common.experiment``) in its
area package and append it to ``_EXPERIMENT_MODULES`` below; its system row in the
report then shows its claim checks instead of "not implemented".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache

from nanorepro.common.errors import UserError
from nanorepro.common.experiment import Experiment


@dataclass(frozen=True)
class System:
    key: str
    name: str
    paper: str  # title and arXiv id
    claim: str  # the paper's headline claim, in one sentence
    package: str


SYSTEMS: tuple[System, ...] = (
    System("nemotron", "Nemotron 3 Super", "Nemotron 3 Super (NVIDIA), arXiv 2604.12374",
           "Hybrid Mamba-attention LatentMoE with MTP speculative decoding and NVFP4 pretraining: "
           "comparable accuracy at up to 2.2x / 7.5x higher throughput than GPT-OSS-120B / Qwen3.5-122B.",
           "nanorepro.lm"),
    System("reval", "ReVal", "ReVal: value-based off-policy RL for LLMs, arXiv 2603.23355",
           "Bellman-update RL with replay converges faster than GRPO and beats it (+2.7 AIME24, +4.5 GPQA).",
           "nanorepro.llm_rl"),
    System("start", "START", "START: Separated Thinking And Response Training, arXiv 2603.20799",
           "Thinking-only RL with answer rewards improves thinking quality (Cross-Generation) and final "
           "answers on general QA, where plain RL finds shortcuts.",
           "nanorepro.llm_rl"),
    System("dual_qdm", "Dual Q-DM", "Non-Adversarial Imitation Learning Provably Free of Compounding Errors: "
           "The Role of Bellman Constraints, arXiv 2603.22713",
           "IQ-Learn reduces to BC (gap quadratic in H, uniform Q suppression off the demonstrations); "
           "Bellman constraints (Dual Q-DM) propagate high Q-values, recover expert actions beyond the data "
           "and match AIL.",
           "nanorepro.imitation"),
    System("reinvbc", "ReinVBC", "ReinVBC: offline model-based RL for vehicle braking control, arXiv 2604.04401",
           "An offline model-based RL braking policy can replace a production-grade ABS.",
           "nanorepro.braking"),
    System("vlgor", "VLGOR", "VLGOR: visual-language knowledge-guided offline RL, arXiv 2603.22892",
           "Imagined rollouts from (image, instruction) with counterfactual prompts raise success on unseen "
           "tasks by over 24 points.",
           "nanorepro.embodied"),
    System("vla_mbpo", "VLA-MBPO", "VLA-MBPO: model-based policy optimisation for VLAs, arXiv 2603.20607",
           "Chunk-level branched rollouts in a multi-view world model improve a chunked policy's success "
           "and sample efficiency.",
           "nanorepro.embodied"),
    System("sup", "SuP", "Speedup Patch (SuP), arXiv 2603.20658",
           "An offline CMDP scheduler that downsamples action chunks gives 1.8x faster execution at the "
           "original success rate.",
           "nanorepro.embodied"),
    System("sigma", "SIGMA", "SIGMA: semantic-grounded instruction-driven generative recommender, arXiv 2602.22913",
           "Grounded semantic IDs + item-ID tokens, multi-task instructions and adaptive probabilistic fusion "
           "improve accuracy and diversity over generative and ID-based recommenders.",
           "nanorepro.recsys"),
    System("tgh_moe", "TGH-MoE", "Adapting 2D MLLMs for 3D CT with a Text-Guided Hierarchical MoE, arXiv 2604.10233",
           "Reusing a 2D MLLM for 3D volumes with a text-guided hierarchical MoE and two-stage training beats "
           "existing 3D medical MLLMs on report generation and VQA.",
           "nanorepro.med3d"),
    System("tabletop", "Tabletop (shared ground)", "Our suite for VLGOR, VLA-MBPO and SuP (no paper): an ACT-style "
           "chunked policy and the chunk-level world models VLA-MBPO uses",
           "A chunked policy cloned from limited demonstrations reaches a middling success to improve on, and "
           "chunk-level world models score real chunks' success; decoding the wrist view after the head view "
           "keeps the two views consistent.",
           "nanorepro.embodied"),
)

# module path -> attribute holding its Experiment; imported lazily (torch-heavy modules).
_EXPERIMENT_MODULES: tuple[tuple[str, str], ...] = (
    ("nanorepro.imitation.cliff", "EXPERIMENT"),
    ("nanorepro.imitation.mujoco_experiment", "EXPERIMENT"),
    ("nanorepro.braking.experiment", "EXPERIMENT"),
    ("nanorepro.lm.experiment", "EXPERIMENT"),
    ("nanorepro.llm_rl.experiment", "REVAL_EXPERIMENT"),
    ("nanorepro.llm_rl.experiment", "START_EXPERIMENT"),
    ("nanorepro.recsys.experiment", "SIGMA_EXPERIMENT"),
    ("nanorepro.recsys.movielens_experiment", "EXPERIMENT"),
    ("nanorepro.embodied.experiment", "EXPERIMENT"),
    ("nanorepro.med3d.experiment", "EXPERIMENT"),
    ("nanorepro.embodied.sup_experiment", "EXPERIMENT"),
    ("nanorepro.embodied.vla_mbpo_experiment", "EXPERIMENT"),
    ("nanorepro.embodied.vlgor_experiment", "EXPERIMENT"),
)


@lru_cache(maxsize=1)
def registry() -> dict[str, Experiment]:
    experiments = [getattr(importlib.import_module(mod), attr) for mod, attr in _EXPERIMENT_MODULES]
    systems = {s.key for s in SYSTEMS}
    for exp in experiments:
        assert exp.system in systems, f"{exp.name}: unknown system {exp.system}"
    return {exp.name: exp for exp in experiments}


def get_experiment(name: str) -> Experiment:
    experiments = registry()
    if name not in experiments:
        raise UserError(f"unknown experiment '{name}' (known: {', '.join(experiments)})")
    return experiments[name]


def get_system(key: str) -> System:
    return next(s for s in SYSTEMS if s.key == key)
