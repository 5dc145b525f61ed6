"""The practitioner's path: GRPO, ReVal or START on your own problems, checked by a verifier.

    nanorepro llm-rl make-data --out train.jsonl --noisy 0.3      # an example: chain arithmetic (T1)
    nanorepro llm-rl sft --data train.jsonl --out sft.safetensors
    nanorepro llm-rl train --policy sft.safetensors --data train.jsonl --eval test.jsonl --method reval \\
        --out rl.safetensors
    nanorepro llm-rl evaluate --policy rl.safetensors --data test.jsonl
    nanorepro llm-rl make-hf-model --data train.jsonl --out tiny-llama   # a local HF model to try --init DIR with

A problems file is JSON Lines, one object per line:

    {"prompt": "12+34+56=", "answer": "102.", "completion": "<46>102."}

``completion`` (optional; default: the answer) is the reference that ``sft`` imitates: an
optional thinking ``<...>`` and then the answer (a reference may be wrong on purpose: SFT on
noisy references leaves headroom for RL; ``sft`` reports the share the verifier accepts).
The verifier (``answer_reward``) gives 1 when a sampled completion's text after its thinking
equals the answer (surrounding spaces ignored), else 0; a completion that opens a thinking
and never closes it, or is empty, scores 0 and is counted as malformed. START's
thinking-only phase needs references with thinking.

``sft`` builds a character tokenizer over the file's characters and a TinyGPT (nanoGPT-style,
KV cache) and trains it on (prompt, completion) — or, with ``init``, fine-tunes your own
model: a policy file, or a hybrid LM written by ``nanorepro lm train`` (bytes as tokens; the
result stays in the LM's format, so ``lm generate`` reads it). ``train`` runs one RL method
of ``llm_rl`` from that policy (prompts of one length per batch: nothing is padded inside a
prompt); both are resumable (``<out>.ckpt.safetensors``; the same command continues) and
write ``<out>.curve.png``.

A policy file is a nanorepro checkpoint (safetensors; no pickle): the alphabet, the model
config, the generation length, the weights and the history of the runs that made it. Your own
Hugging Face causal LM is a policy too: pass its local model directory (``config.json``,
safetensors weights, its tokenizer; needs ``transformers``; read with ``local_files_only``, so
nothing is downloaded) as ``--policy`` or ``--init``, and the result is written as a model
directory (plus ``nanorepro.json``: the generation length and the runs). With a subword tokenizer,
START's thinking boundary is found by re-encoding the completion's text up to ``>``: exact for
characters and bytes, approximate where a token straddles it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nanorepro.common.checkpoint import load_checkpoint, load_owned_checkpoint, save_checkpoint
from nanorepro.common.errors import UserError
from nanorepro.common.io import atomic_write_bytes, atomic_write_json, file_digest, read_json, write_curve_png
from nanorepro.llm_rl.grpo import GRPOConfig
from nanorepro.llm_rl.loop import RLConfig, accuracy, rl_train, sft_optimizer, thinking_mask, train_lm
from nanorepro.llm_rl.policy import (
    ByteTokenizer,
    CharTokenizer,
    HFPolicy,
    HFTokenizer,
    HybridPolicy,
    TinyGPT,
    TinyGPTConfig,
    sample,
)
from nanorepro.llm_rl.reval import ReValConfig
from nanorepro.llm_rl.tasks import Problem, t1_sample, thinking_span
from nanorepro.lm.tools import MODEL_FORMAT as LM_FORMAT
from nanorepro.lm.tools import build_model

POLICY_FORMAT = "nanorepro.llm_rl.policy/1"
HF_RECORD = "nanorepro.json"   # in a Hugging Face model directory we wrote: generation length, the runs behind it
METHODS = ("grpo", "dr_grpo", "dapo", "rloo", "reval", "start")


def answer_reward(completion: str, problem: Problem) -> tuple[float, bool]:
    """(1 if the text after the thinking is the answer, else 0; malformed?) — never raises."""
    if not completion.strip():
        return 0.0, True
    if completion.startswith("<"):
        span = thinking_span(completion)
        if span is None:
            return 0.0, True
        completion = completion[span[1]:]
    return float(completion.strip() == problem.answer.strip()), False


def load_problems(path: Path) -> list[Problem]:
    """The problems of a JSON Lines file, validated; any fault is one UserError naming the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read problems file {path}: {exc}") from None
    problems = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not {"prompt", "answer"} <= row.keys():
            raise UserError(f'{where}: need an object with "prompt" and "answer" (and optionally "completion")')
        extra = row.keys() - {"prompt", "answer", "completion"}
        if extra:
            raise UserError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
        completion = row.get("completion", row["answer"])
        if not all(isinstance(row.get(k, ""), str) for k in ("prompt", "answer", "completion")):
            raise UserError(f"{where}: prompt, answer and completion must be strings")
        if not row["prompt"] or not row["answer"].strip():
            raise UserError(f"{where}: empty prompt or answer")
        problems.append(Problem(row["prompt"], completion, row["answer"], {"line": number}))
    if not problems:
        raise UserError(f"{path}: no problems")
    return problems


def _check_alphabet(problems: list[Problem], tok: CharTokenizer | ByteTokenizer, path: Path) -> None:
    if tok.alphabet is None:  # bytes: any text
        return
    for p in problems:
        unknown = set(p.prompt + p.gold) - set(tok.alphabet)
        if unknown:
            raise UserError(f"{path} line {p.meta['line']}: character(s) {''.join(sorted(unknown))!r} are not in "
                            f"the policy's alphabet (the characters of the data it was trained on)")


def spread(problems: list[Problem], n: int) -> list[Problem]:
    """At most ``n`` problems taken evenly through the file (a cheap probe of a large file)."""
    return problems[:: max(1, len(problems) // n)][:n]


def by_prompt_length(problems: list[Problem], tok: CharTokenizer | ByteTokenizer):
    """A sampler ``(rng, n) -> n problems of one prompt length`` in tokens (a batch shares it; no padding).

    The length is drawn in proportion to its number of problems, then problems uniformly within it.
    """
    groups: dict[int, list[Problem]] = {}
    for p in problems:
        groups.setdefault(len(tok.encode(p.prompt)), []).append(p)
    lengths = sorted(groups)
    weights = np.array([len(groups[n]) for n in lengths], dtype=float) / len(problems)

    def draw(rng: np.random.Generator, n: int) -> list[Problem]:
        group = groups[lengths[rng.choice(len(lengths), p=weights)]]
        return [group[i] for i in rng.integers(0, len(group), n)]

    return draw


def write_chain_arithmetic(out: Path, n: int, split: str, numbers: int = 3, noisy: float = 0.0,
                           seed: int = 0) -> Path:
    """T1 problems (``tasks.t1_sample``) as a problems file: an example, and the ``reval`` experiment's data.

    A ``noisy`` share of the references shifts the first running sum and carries the error through.
    """
    if split not in ("train", "test") or numbers not in (3, 4) or n < 1 or not 0 <= noisy <= 1:
        raise UserError("need --split train|test, --numbers 3|4, --n >= 1 and 0 <= --noisy <= 1")
    rows = [{"prompt": p.prompt, "answer": p.answer + ".", "completion": p.gold}
            for p in t1_sample(np.random.default_rng([seed, int(split == "test")]), n, split, numbers, noisy)]
    return atomic_write_bytes(out, "".join(json.dumps(r) + "\n" for r in rows).encode())


# --------------------------------------------------------------------------- SFT


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    steps: int = 1000
    batch: int = 64
    lr: float = 1e-3
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    max_new: int | None = None  # tokens generated per completion (None: longest reference + 4)
    checkpoint_every: int = 100

    def validate(self) -> None:
        if min(self.steps, self.batch, self.d_model, self.layers, self.heads, self.checkpoint_every) < 1 \
                or self.lr <= 0 or self.d_model % self.heads:
            raise UserError("--steps, --batch, --layers and --heads must be >= 1, --lr > 0, and --d-model a "
                            "positive multiple of --heads")
        if self.max_new is not None and self.max_new < 1:
            raise UserError(f"--max-new must be >= 1, got {self.max_new}")


def sft(data: Path, out: Path, cfg: SFTConfig, seed: int, board, init: Path | None = None) -> dict:
    """Train on the file's (prompt, completion) pairs and write the policy file.

    From a fresh TinyGPT (``cfg``'s size, a character tokenizer over the file), or from
    ``init``: a policy file, or a hybrid LM from ``nanorepro lm train`` (bytes as tokens).
    """
    cfg.validate()
    problems = load_problems(data)
    if init is None:
        tok = CharTokenizer("".join(sorted({c for p in problems for c in p.prompt + p.gold})))
        base: dict = {"history": []}
    else:
        model, tok, base = load_policy(init)
        _check_out(out, model)
        _check_alphabet(problems, tok, data)
    longest = max(len(tok.encode(p.gold)) for p in problems)
    max_new = cfg.max_new or longest + 4
    if max_new <= longest:
        raise UserError(f"--max-new {max_new} cannot hold the longest reference completion and its end token")
    need = max(len(tok.encode(p.prompt)) for p in problems) + max_new
    if init is None:
        torch.manual_seed(seed)
        model = TinyGPT(TinyGPTConfig(tok.vocab_size, cfg.d_model, cfg.layers, cfg.heads, max_len=need))
    elif isinstance(model, TinyGPT) and need > model.config.max_len:
        raise UserError(f"{init} holds {model.config.max_len} tokens; a prompt and {max_new} new tokens need {need}")
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    owner = {"sft": dataclasses.asdict(cfg), "seed": seed, "data": file_digest(data),
             "init": file_digest(init) if init is not None else None}
    saved = load_owned_checkpoint(ckpt, owner, board.log)
    losses: list[float] = []
    done = 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        losses, done = saved["losses"], len(saved["losses"])
        board.log(f"resuming from {ckpt} at step {done}")
    bar = board.task(f"SFT on {data}", cfg.steps)
    bar.advance(done)
    examples = [(p.prompt, p.gold) for p in problems]
    opt = sft_optimizer(model, cfg.lr)
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
    while done < cfg.steps:  # segments of checkpoint_every steps with their own seeds: resuming changes nothing
        n = min(cfg.checkpoint_every, cfg.steps - done)
        generator = torch.Generator().manual_seed(seed * 100_003 + done)
        losses += train_lm(model, tok, examples, n, cfg.batch, cfg.lr, generator, on_step=lambda _s: bar.advance(1),
                           opt=opt)
        done += n
        if done < cfg.steps:
            save_checkpoint(ckpt, {**owner, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "losses": losses})
    bar.finish()
    g = torch.Generator().manual_seed(seed)
    greedy, malformed = accuracy(model, tok, spread(problems, 500), answer_reward, 1, max_new, g, temperature=0)
    history = base["history"] + [{"stage": "sft", "data": str(data), "problems": len(problems), "seed": seed,
                                  **dataclasses.asdict(cfg), "init": str(init) if init is not None else None,
                                  "final_loss": float(np.mean(losses[-20:])),
                                  "greedy_accuracy_on_data": greedy}]  # on <= 500 problems
    _write_policy(out, model, tok, max_new, history, base)
    ckpt.unlink(missing_ok=True)
    plot = write_curve_png(out, "SFT", {"training loss": (np.arange(1, len(losses) + 1), np.array(losses))},
                       "step", "cross-entropy of the completion")
    correct = float(np.mean([answer_reward(p.gold, p)[0] for p in problems]))
    return {"policy": str(out), "plot": str(plot), "problems": len(problems), "references_correct": correct,
            "tokens": f"the model's tokenizer ({tok.vocab_size} tokens)" if isinstance(tok, HFTokenizer) else
            "bytes as tokens" if tok.alphabet is None else f"{len(tok.alphabet)} characters as tokens",
            "parameters": sum(p.numel() for p in model.parameters()), "final_loss": history[-1]["final_loss"],
            "greedy_accuracy": greedy, "malformed": malformed}


# --------------------------------------------------------------------------- RL


@dataclasses.dataclass(frozen=True)
class RLToolConfig:
    method: str = "dr_grpo"
    iterations: int = 100
    prompts_per_iter: int = 16
    group: int = 8
    lr: float = 1e-4
    mu: int = 1  # GRPO epochs per rollout batch
    beta: float = 0.3  # ReVal's soft-Q temperature
    start_phase1: float = 0.5  # START: share of iterations that train only the thinking
    eval_every: int = 5
    eval_samples: int = 4

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown method '{self.method}' (known: {', '.join(METHODS)})")
        if min(self.iterations, self.prompts_per_iter, self.group, self.mu, self.eval_every, self.eval_samples) < 1:
            raise UserError("--iterations, --prompts, --group, --mu, --eval-every and --eval-samples must be >= 1")
        if self.method == "start" and self.iterations < 2:
            raise UserError("--method start needs --iterations >= 2 (a thinking phase, then a response phase)")
        if self.group < 2 and self.method != "reval":
            raise UserError("group-relative methods need --group >= 2")
        if self.lr <= 0 or self.beta <= 0 or not 0 < self.start_phase1 < 1:
            raise UserError("need --lr > 0, --beta > 0 and 0 < --start-phase1 < 1")

    def phases(self) -> list[tuple[RLConfig, str | None]]:
        """(RLConfig, token mask) per phase: START trains the thinking, then the response."""
        base = RLConfig("grpo", iterations=self.iterations, prompts_per_iter=self.prompts_per_iter, group=self.group,
                        eval_every=self.eval_every, eval_samples=self.eval_samples)
        if self.method == "reval":
            return [(dataclasses.replace(base, method="reval", reval=ReValConfig(
                beta=self.beta, lr=self.lr, minibatch=self.prompts_per_iter * self.group)), None)]
        variant = "dr_grpo" if self.method == "start" else self.method
        base = dataclasses.replace(base, grpo=GRPOConfig(variant=variant, mu=self.mu, lr=self.lr))
        if self.method != "start":
            return [(base, None)]
        n1 = max(1, min(self.iterations - 1, round(self.start_phase1 * self.iterations)))
        return [(dataclasses.replace(base, iterations=n1), "thinking"),
                (dataclasses.replace(base, iterations=self.iterations - n1), "response")]


def train(policy_path: Path, data: Path, out: Path, cfg: RLToolConfig, seed: int, board,
          eval_data: Path | None = None) -> dict:
    """Run ``cfg.method`` from the policy on the file's problems; write the trained policy and its curve."""
    cfg.validate()
    model, tok, state = load_policy(policy_path)
    _check_out(out, model)
    problems = load_problems(data)
    _check_alphabet(problems, tok, data)
    evals = {"train": spread(problems, 200)}
    if eval_data is not None:
        evals["eval"] = load_problems(eval_data)
        _check_alphabet(evals["eval"], tok, eval_data)
    max_new = _max_new(state, tok, problems)
    if cfg.method == "start" and not any(p.gold.startswith("<") for p in problems):
        raise UserError(f"--method start trains the thinking first, and no reference completion in {data} has one "
                        f"(<...> before the answer)")
    ckpt = out.with_name(out.name + ".ckpt.safetensors")
    owner = {"rl": dataclasses.asdict(cfg), "seed": seed, "policy": file_digest(policy_path), "data": file_digest(data),
             "eval": file_digest(eval_data) if eval_data is not None else None}
    saved = load_owned_checkpoint(ckpt, owner, board.log) or {**owner, "curves": []}
    phases = cfg.phases()
    bar = board.task(f"{cfg.method} on {data}", cfg.iterations)
    for curve in saved["curves"]:
        bar.advance(curve[-1]["iteration"])
    if saved.get("resume") is not None or saved["curves"]:
        board.log(f"resuming from {ckpt}")
    if saved.get("resume") is not None:
        bar.advance(saved["resume"]["iteration"])
    if saved["curves"]:
        model.load_state_dict(saved["model"])
    for index, (rl, mask) in enumerate(phases):
        if index < len(saved["curves"]):
            continue
        rl = dataclasses.replace(rl, max_new=max_new)

        def keep(training: dict, index: int = index, before: dict = saved) -> None:
            save_checkpoint(ckpt, {**before, "resume": training, "phase": index})

        resume = saved.get("resume") if saved.get("phase") == index else None
        curve = rl_train(model, tok, by_prompt_length(problems, tok), evals, answer_reward, rl, seed * 100 + index,
                         token_mask=None if mask is None else partial(thinking_mask, tok=tok, which=mask),
                         on_iteration=lambda _i: bar.advance(1), resume=resume, save=keep)
        saved = {**saved, "curves": saved["curves"] + [curve], "model": copy.deepcopy(model.state_dict()),
                 "resume": None, "phase": None}
        if index + 1 < len(phases):
            save_checkpoint(ckpt, saved)
    bar.finish()
    curve = _join(saved["curves"])
    history = state["history"] + [{"stage": cfg.method, "data": str(data), "problems": len(problems), "seed": seed,
                                   **dataclasses.asdict(cfg), "curve": curve}]
    _write_policy(out, model, tok, max_new, history, state)
    ckpt.unlink(missing_ok=True)
    series = {f"{name} split": (np.array([p["samples"] for p in curve]), np.array([p[f"acc_{name}"] for p in curve]))
              for name in evals}
    plot = write_curve_png(out, f"{cfg.method} from {policy_path.name}", series, "generated samples",
                       f"sampled accuracy ({cfg.eval_samples} per problem)")
    return {"policy": str(out), "plot": str(plot), "samples": curve[-1]["samples"],
            **{f"{name}_before": curve[0][f"acc_{name}"] for name in evals},
            **{f"{name}_after": curve[-1][f"acc_{name}"] for name in evals}}


def _join(curves: list[list[dict]]) -> list[dict]:
    """Phases' curves as one: later phases continue the sample and iteration counts."""
    out = list(curves[0])
    for curve in curves[1:]:
        last = out[-1]
        out += [{**p, "samples": p["samples"] + last["samples"], "iteration": p["iteration"] + last["iteration"]}
                for p in curve[1:]]
    return out


# --------------------------------------------------------------------------- evaluation and files


@torch.no_grad()
def greedy_completions(model: nn.Module, tok, problems: list[Problem], max_new: int, chunk: int = 256) -> list[str]:
    """Each problem's greedy completion, in the problems' order (batched by prompt length in tokens)."""
    order: dict[int, list[int]] = {}
    for i, p in enumerate(problems):
        order.setdefault(len(tok.encode(p.prompt)), []).append(i)
    texts = [""] * len(problems)
    model.eval()
    for indices in order.values():
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]
            prompts = torch.tensor([tok.encode(problems[i].prompt) for i in part])
            out = sample(model, prompts, max_new, torch.Generator(), temperature=0, eos=tok.EOS, pad=tok.PAD)
            for i, ids in zip(part, out, strict=True):
                texts[i] = tok.decode(ids)
    return texts


def evaluate(policy_path: Path, data: Path, samples: int, seed: int, show: int = 0,
             predictions: Path | None = None) -> dict:
    """Greedy and sampled (temperature 1) accuracy on the file's problems, malformed shares, examples.

    ``predictions``: also write each problem's greedy completion and reward (JSON Lines).
    """
    if samples < 1:
        raise UserError(f"--samples must be >= 1, got {samples}")
    model, tok, state = load_policy(policy_path)
    problems = load_problems(data)
    _check_alphabet(problems, tok, data)
    max_new = _max_new(state, tok, problems)
    texts = greedy_completions(model, tok, problems, max_new)
    rows = []
    for p, text in zip(problems, texts, strict=True):
        reward, malformed = answer_reward(text, p)
        rows.append({"line": p.meta["line"], "prompt": p.prompt, "completion": text, "answer": p.answer,
                     "reward": reward, "malformed": malformed})
    if predictions is not None:
        atomic_write_bytes(predictions, "".join(json.dumps(r) + "\n" for r in rows).encode())
    g = torch.Generator().manual_seed(seed)
    sampled, sampled_bad = accuracy(model, tok, problems, answer_reward, samples, max_new, g)
    return {"problems": len(problems), "greedy_accuracy": float(np.mean([r["reward"] for r in rows])),
            "greedy_malformed": float(np.mean([r["malformed"] for r in rows])), "sampled_accuracy": sampled,
            "sampled_malformed": sampled_bad, "samples": samples, "stages": [h["stage"] for h in state["history"]],
            "examples": rows[:show]}


def load_policy(path: Path) -> tuple[nn.Module, CharTokenizer | ByteTokenizer | HFTokenizer, dict]:
    """A policy file (TinyGPT, characters), a hybrid LM from ``nanorepro lm train`` (bytes) or a Hugging Face model
    directory (its own tokenizer), ready to train."""
    path = Path(path)
    if path.is_dir():
        return _load_hf(path)
    state = load_checkpoint(path)
    kind = state.get("format") if isinstance(state, dict) else None
    if kind == POLICY_FORMAT:
        model = TinyGPT(TinyGPTConfig(**state["config"]))
        model.load_state_dict(state["weights"])
        return model, CharTokenizer(state["alphabet"]), state
    if kind == LM_FORMAT:
        if state["recipe"] is not None:
            raise UserError(f"{path} was trained under NVFP4; RL here needs a model trained without --nvfp4")
        lm = build_model(state["config"], None)
        lm.load_state_dict(state["weights"])
        return HybridPolicy(lm), ByteTokenizer(), {"history": [], **state}
    raise UserError(f"{path} is neither a nanorepro llm-rl policy ({POLICY_FORMAT}; `nanorepro llm-rl sft` writes "
                    f"one) nor a hybrid LM ({LM_FORMAT}; `nanorepro lm train`)")


def _load_hf(path: Path) -> tuple[HFPolicy, HFTokenizer, dict]:
    """A causal LM and its tokenizer from a local Hugging Face model directory (never the network), in float32."""
    transformers = _transformers(path)
    if not (path / "config.json").exists():
        raise UserError(f"{path} is a directory without config.json: not a Hugging Face model directory")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True).float()
        tok = HFTokenizer(transformers.AutoTokenizer.from_pretrained(path, local_files_only=True))
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load a causal LM and its tokenizer from {path}: {exc}".splitlines()[0]) from None
    state = {"history": []}
    if (path / HF_RECORD).exists():
        state.update(read_json(path / HF_RECORD, "nanorepro record"))
    return HFPolicy(model), tok, state


def _max_new(state: dict, tok, problems: list[Problem]) -> int:
    """The policy's generation length, or for an LM without one, the longest reference + 4 tokens."""
    return state.get("max_new") or max(len(tok.encode(p.gold)) for p in problems) + 4


def _write_policy(out: Path, model: nn.Module, tok, max_new: int, history: list[dict], base: dict) -> None:
    """A TinyGPT as a policy file; a hybrid LM in the LM's own format (so `lm generate` reads it too); a Hugging
    Face model as a model directory (safetensors weights, its tokenizer, ``nanorepro.json``)."""
    if isinstance(model, HFPolicy):
        _write_hf(out, model, tok, {"max_new": max_new, "history": history})
        return
    if isinstance(model, HybridPolicy):
        save_checkpoint(out, {**base, "weights": model.model.state_dict(), "max_new": max_new, "history": history})
        return
    save_checkpoint(out, {"format": POLICY_FORMAT, "alphabet": tok.alphabet,
                          "config": dataclasses.asdict(model.config), "max_new": max_new,
                          "weights": model.state_dict(), "history": history})


def write_tiny_hf_model(data: Path, out: Path, vocab: int = 400, d_model: int = 128, layers: int = 4, heads: int = 4,
                        seed: int = 0) -> dict:
    """A randomly initialised Llama (tied embeddings) and a byte-level BPE tokenizer trained on the problems'
    prompts and references, as a local model directory: the Hugging Face path without a download."""
    transformers = _transformers(out)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if min(vocab, d_model, layers, heads) < 1 or d_model % heads:
        raise UserError("--vocab, --layers and --heads must be >= 1 and --d-model a positive multiple of --heads")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([p.prompt + p.gold for p in load_problems(data)], trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>", pad_token="<pad>",
                                                     unk_token="<unk>")
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=256, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    _write_hf(out, HFPolicy(model), HFTokenizer(tokenizer), {"history": []})
    return {"out": str(out), "vocab": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters())}


def _transformers(path: Path):
    try:
        import transformers
    except ImportError:
        raise UserError(f"{path}: Hugging Face models need transformers (pip install -e \".[hf]\")") from None
    transformers.utils.logging.disable_progress_bar()   # our own bars report progress; its loading bar is noise
    return transformers


def _check_out(out: Path, model: nn.Module) -> None:
    """Before any work: a Hugging Face policy is written as a directory, so ``out`` must not be a file."""
    if isinstance(model, HFPolicy) and out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; a Hugging Face policy is written as a directory: choose another --out")


def _write_hf(out: Path, model: HFPolicy, tok: HFTokenizer, record: dict) -> None:
    """Write the directory beside ``out``, then swap it into place: an interrupted write leaves ``out`` as it was."""
    partial_dir, old = out.with_name(out.name + ".partial"), out.with_name(out.name + ".old")
    shutil.rmtree(partial_dir, ignore_errors=True)
    model.model.save_pretrained(partial_dir)
    tok.tokenizer.save_pretrained(partial_dir)
    atomic_write_json(partial_dir / HF_RECORD, record)
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    partial_dir.rename(out)
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["answer_reward", "load_problems", "write_chain_arithmetic", "write_tiny_hf_model", "sft", "train",
           "evaluate", "load_policy", "SFTConfig", "RLToolConfig", "METHODS", "POLICY_FORMAT"]
