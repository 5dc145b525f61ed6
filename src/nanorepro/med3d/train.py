"""Training and evaluation of the vision-language model: 2-D pretraining, 3-D stages, metrics.

Text layout: [visual tokens][bos] prompt [sep] answer [eos]; the loss is the per-example
mean cross-entropy of the answer tokens and eos (so a 40-word report and a one-word VQA
answer weigh the same), plus, for MoE encoders, the balance loss and the task router's
cross-entropy on the task label (our reconstruction of how the text router is trained).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nanorepro.med3d.data import CAPTION_PROMPT, TASKS, Dataset3D, Examples, Vocabulary, parse_findings
from nanorepro.med3d.metrics import corpus_bleu, finding_counts, micro_f1, rouge_l, token_f1
from nanorepro.med3d.model import VisionLanguageModel


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600
    batch_size: int = 16
    lr: float = 5e-4
    warmup: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0


def pad(rows: list[list[int]], value: int = 0) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def teacher_forcing(vocab: Vocabulary, prompts: list[str], answers: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, T) of bos prompt sep answer eos, right-padded, and the mask of answer targets (B, T)."""
    rows, targets = [], []
    for prompt, answer in zip(prompts, answers, strict=True):
        p, a = vocab.encode(prompt), vocab.encode(answer)
        rows.append([vocab.bos, *p, vocab.sep, *a, vocab.eos])
        targets.append([0] * (len(p) + 2) + [1] * (len(a) + 1))  # position t is predicted from t - 1
    return pad(rows, vocab.pad), pad(targets).bool()


def sequence_logprob(model: VisionLanguageModel, visual: torch.Tensor, text: torch.Tensor,
                     target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log-probabilities of the target tokens of each row, and their count."""
    logits = model.logits(visual, text[:, :-1])
    logp = torch.log_softmax(logits.float(), -1).gather(-1, text[:, 1:, None]).squeeze(-1)
    mask = target[:, 1:].float()
    return (logp * mask).sum(1), mask.sum(1)


def lm_loss(model: VisionLanguageModel, visual: torch.Tensor, text: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    total, count = sequence_logprob(model, visual, text, target)
    return -(total / count.clamp_min(1)).mean()


def optimiser(model: torch.nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, Callable[[int], float]]:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def schedule(step: int) -> float:  # linear warm-up, cosine to 10%
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.45 * (1 + np.cos(np.pi * min(progress, 1.0)))

    return opt, schedule


def _step(model, opt, schedule, step, loss, cfg: TrainConfig) -> None:
    for group in opt.param_groups:
        group["lr"] = cfg.lr * schedule(step)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()


def pretrain_2d(model: VisionLanguageModel, images: np.ndarray, captions: list[str], vocab: Vocabulary,
                cfg: TrainConfig, seed: int, mask_ratio: float = 0.5, mim_weight: float = 1.0,
                progress: Callable[[int], None] | None = None) -> list[float]:
    """The stand-in 2-D MLLM: slice captioning + SimMIM-style masked patch regression on single slices."""
    gen = np.random.default_rng(seed)
    patch, grid = model.cfg.patch, model.cfg.image // model.cfg.patch
    head = torch.nn.Linear(model.cfg.d_vision, patch * patch)  # pixel head, dropped after pretraining
    model.encoder.depth_pos.requires_grad_(False)               # stays zero: the 3-D model starts as the 2-D one
    params = torch.nn.ModuleList([model, head])
    opt, schedule = optimiser(params, cfg)
    curve = []
    model.train()
    for step in range(cfg.steps):
        idx = gen.integers(len(images), size=cfg.batch_size)
        x = torch.from_numpy(images[idx]).unsqueeze(1)                         # (B, 1, H, W)
        masked = torch.from_numpy(gen.random((cfg.batch_size, grid * grid)) < mask_ratio)
        tokens = model.encoder(x, masked=masked)                               # (B, P, d)
        pixels = x.view(-1, grid, patch, grid, patch).permute(0, 1, 3, 2, 4).reshape(-1, grid * grid, patch ** 2)
        mim = F.l1_loss(head(tokens)[masked], pixels[masked])
        visual = model.projector(model.encoder(x)) + model.visual_type
        text, target = teacher_forcing(vocab, [CAPTION_PROMPT] * len(idx), [captions[i] for i in idx])
        caption = lm_loss(model, visual, text, target)
        _step(params, opt, schedule, step, caption + mim_weight * mim, cfg)
        curve.append(float(caption.detach()))
        if progress:
            progress(step)
    model.encoder.depth_pos.requires_grad_(True)
    return curve


def batch(data: Dataset3D, vocab: Vocabulary, idx) -> tuple[torch.Tensor, ...]:
    ex = data.examples
    volumes = torch.from_numpy(data.volumes[[ex.volume[i] for i in idx]])
    text, target = teacher_forcing(vocab, [ex.prompt[i] for i in idx], [ex.answer[i] for i in idx])
    prompt = pad([vocab.encode(ex.prompt[i]) for i in idx], vocab.pad)
    return volumes, prompt, text, target, torch.tensor([ex.task[i] for i in idx])


def train_3d(model: VisionLanguageModel, data: Dataset3D, vocab: Vocabulary, cfg: TrainConfig, seed: int,
             progress: Callable[[int], None] | None = None) -> list[float]:
    """Steps over a task-balanced mixture (a third each of report, closed and open VQA examples)."""
    gen = np.random.default_rng(seed)
    by_task = [np.asarray(data.examples.select(t)) for t in TASKS]
    opt, schedule = optimiser(model, cfg)
    coef = model.cfg
    curve = []
    model.train()
    for step in range(cfg.steps):
        tasks = gen.integers(len(TASKS), size=cfg.batch_size)
        idx = [int(by_task[t][gen.integers(len(by_task[t]))]) for t in tasks]
        volumes, prompt, text, target, task = batch(data, vocab, idx)
        loss = lm_loss(model, model.visual_tokens(volumes, prompt), text, target)
        loss = loss + coef.balance_coef * model.aux_loss()
        if model.routes_by_task():
            loss = loss + coef.route_coef * F.cross_entropy(model.task_logits(prompt), task)
        _step(model, opt, schedule, step, loss, cfg)
        curve.append(float(loss.detach()))
        if progress:
            progress(step)
    return curve


# --------------------------------------------------------------------------- inference

@torch.no_grad()
def generate(model: VisionLanguageModel, volumes: torch.Tensor, prompts: list[str], vocab: Vocabulary,
             max_new: int = 50) -> list[str]:
    """Greedy decoding after bos prompt sep (full recomputation each step; the texts are short)."""
    model.eval()
    prompt_ids = pad([vocab.encode(p) for p in prompts], vocab.pad)
    visual = model.visual_tokens(volumes, prompt_ids)
    rows = [[vocab.bos, *vocab.encode(p), vocab.sep] for p in prompts]
    length = torch.tensor([len(r) for r in rows])
    max_new = min(max_new, model.cfg.max_text - int(length.max()))
    text = pad([r + [vocab.pad] * max_new for r in rows], vocab.pad)
    done = torch.zeros(len(rows), dtype=torch.bool)
    arange = torch.arange(len(rows))
    for _ in range(max_new):
        logits = model.logits(visual, text[:, : int(length.max())])
        nxt = logits[arange, length - 1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, vocab.pad), nxt)
        text[arange, length] = nxt
        length = length + (~done).long()
        done |= nxt == vocab.eos
        if done.all():
            break
    return [vocab.decode(text[i, len(rows[i]):].tolist()) for i in range(len(rows))]


@torch.no_grad()
def choose_option(model: VisionLanguageModel, volumes: torch.Tensor, prompts: list[str],
                  options: list[tuple[str, ...]], vocab: Vocabulary) -> list[int]:
    """Closed VQA by option likelihood: the option with the highest mean token log-probability."""
    model.eval()
    prompt_ids = pad([vocab.encode(p) for p in prompts], vocab.pad)
    visual = model.visual_tokens(volumes, prompt_ids)
    n_options = len(options[0])
    flat_prompts = [p for p in prompts for _ in range(n_options)]
    text, target = teacher_forcing(vocab, flat_prompts, [o for opts in options for o in opts])
    total, count = sequence_logprob(model, visual.repeat_interleave(n_options, 0), text, target)
    return (total / count).view(len(prompts), n_options).argmax(-1).tolist()


@torch.no_grad()
def evaluate(model: VisionLanguageModel, data: Dataset3D, vocab: Vocabulary, batch_size: int = 50,
             samples: int = 3) -> dict:
    """Report metrics, closed and open VQA, and task-routing accuracy on a test set."""
    ex: Examples = data.examples
    volumes = torch.from_numpy(data.volumes)

    def chunks(idx):
        return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]

    reports_idx, generated = ex.select("report"), []
    for part in chunks(reports_idx):
        generated += generate(model, volumes[[ex.volume[i] for i in part]], [ex.prompt[i] for i in part], vocab)
    references = [ex.answer[i] for i in reports_idx]
    counts = [finding_counts(parse_findings(g), parse_findings(r)) for g, r in zip(generated, references, strict=True)]

    closed_idx, correct = ex.select("closed"), []
    for part in chunks(closed_idx):
        picks = choose_option(model, volumes[[ex.volume[i] for i in part]], [ex.prompt[i] for i in part],
                              [ex.options[i] for i in part], vocab)
        correct += [float(ex.options[i][k] == ex.answer[i]) for i, k in zip(part, picks, strict=True)]

    open_idx, answers = ex.select("open"), []
    for part in chunks(open_idx):
        answers += generate(model, volumes[[ex.volume[i] for i in part]], [ex.prompt[i] for i in part], vocab,
                            max_new=6)
    exact = [float(a == ex.answer[i]) for a, i in zip(answers, open_idx, strict=True)]
    f1 = [token_f1(a, ex.answer[i]) for a, i in zip(answers, open_idx, strict=True)]

    qtypes = sorted({ex.qtype[i] for i in closed_idx})
    out = {
        "bleu1": corpus_bleu(generated, references, 1), "bleu4": corpus_bleu(generated, references, 4),
        "rouge_l": float(np.mean([rouge_l(g, r) for g, r in zip(generated, references, strict=True)])),
        "finding_f1": micro_f1(counts),
        "closed_acc": float(np.mean(correct)), "open_em": float(np.mean(exact)), "open_f1": float(np.mean(f1)),
        "closed_acc_by_type": {q: float(np.mean([c for c, i in zip(correct, closed_idx, strict=True)
                                                 if ex.qtype[i] == q])) for q in qtypes},
        "closed_acc_unseen_wording": _mean_or_none([c for c, i in zip(correct, closed_idx, strict=True)
                                                    if ex.held_out[i]]),
        "per_example": {"closed_correct": correct, "open_exact": exact, "finding_counts": [list(c) for c in counts]},
        "samples": [{"volume": ex.volume[i], "generated": g, "reference": r}
                    for i, g, r in list(zip(reports_idx, generated, references, strict=True))[:samples]],
    }
    if model.routes_by_task():
        right, unseen = [], []
        for part in chunks(list(range(len(ex)))):
            prompt_ids = pad([vocab.encode(ex.prompt[i]) for i in part], vocab.pad)
            ok = (model.task_logits(prompt_ids).argmax(-1) == torch.tensor([ex.task[i] for i in part])).tolist()
            right += ok
            unseen += [o for o, i in zip(ok, part, strict=True) if ex.held_out[i]]
        out["routing_acc"] = float(np.mean(right))
        out["routing_acc_unseen_wording"] = _mean_or_none(unseen)
    return out


def _mean_or_none(values: list) -> float | None:
    return float(np.mean(values)) if values else None
