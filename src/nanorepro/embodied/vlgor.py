"""VLGOR's pieces (arXiv 2603.22892): imagined rollouts from (first frame, instruction), counterfactual prompts.

Only VLGOR's abstract was available (``../shared/papers/embodied.md`` §1.1). Confirmed: a model
fine-tuned to predict future states and actions from an initial image and an instruction,
counterfactual prompts to diversify the rollouts, offline RL on the result. Everything else is
**our reconstruction**, after its predecessor KALM (text→rollout generation with rollout→text and
dynamics auxiliary tasks) and the protocol of ``embodied.md`` §5.3:

    data = rollout_arrays(demos, horizon, chunks)          # first frames, instruction, states, chunks
    generator = RolloutGenerator(GeneratorConfig()); generator.fit(data)
    task_cf = counterfactual_task(first_state, task, rng)  # an unseen (colour, relation | zone) in the scene
    tokens = generator.sample(head, wrist, tokenize(task_cf.text), torch_generator,
                              first_state=s0)                # s0: the real first state's DYNAMIC dims
    states, chunks = generator.decode(tokens)              # (B, K+1, 13) dynamic state, (B, K, H, 3)
    full = full_states(states, first_state)                # back to the suite's 30-d state
    solved = label_success(full, tasks)                    # the suite's own predicate: the reward
    keep = disagreement(state_world_model, full, ...) <= threshold   # drop what the world model doubts

``imagine`` does the last five lines for a set of prompts (``prompt_tasks``) and also replays every
rollout in the true suite; ``embodied vlgor`` (``tools.train_vlgor``) and the ``vlgor`` experiment
run the whole pipeline.

The generator is a small causal transformer over one sequence
``[instruction words | head patches | wrist patches | s_0 a_0 s_1 a_1 ... s_K]``; each state is
its 13 dynamic dimensions (gripper x, y, grip; every object's x, y — colours and shapes come
from the real first state) and each chunk its end waypoint and grip (the waypoints in between
interpolated; ``chunk_tokens="waypoints"`` keeps all H), all discretised to 64 bins a dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.common.errors import UserError
from nanorepro.embodied.policy import STATE_DIM, to_float
from nanorepro.embodied.world_model import StateWorldModel, WorldModelConfig
from nanorepro.envs.tabletop import (
    MAX_OBJECTS,
    MAX_WORDS,
    RELATIONS,
    SHAPES,
    VOCAB,
    ZONES,
    Tabletop,
    TabletopConfig,
    Task,
    _unseen,
    tokenize,
)
from nanorepro.nn.transformer import Block
from nanorepro.rl.ensemble import EnsembleConfig

DYNAMIC = np.array([0, 1, 2] + [5 + 5 * k + j for k in range(MAX_OBJECTS) for j in (0, 1)])  # into state()
HELD_REACH = 0.03   # an imagined object this close to a closed gripper counts as held


# --------------------------------------------------------------------------- data

def rollout_arrays(demos: dict[str, np.ndarray], horizon: int, chunks: int) -> dict[str, np.ndarray]:
    """One row per demonstration: first frames, instruction, the dynamic state every H steps, the chunks.

    Episodes longer than ``chunks`` chunks are cut; shorter ones are padded by holding the
    last waypoint and the last state (``length`` is the real number of chunks).
    """
    episode = demos["episode"]
    starts = np.searchsorted(episode, np.arange(len(demos["instruction"])))
    ends = np.searchsorted(episode, np.arange(len(demos["instruction"])), side="right")
    steps = np.minimum(starts[:, None] + np.arange(chunks * horizon + 1)[None], ends[:, None] - 1)
    action = demos["action"][steps[:, :-1]].reshape(len(starts), chunks, horizon, 3)
    states = demos["state"][steps[:, ::horizon]][..., DYNAMIC]
    return {"head": demos["head"][starts], "wrist": demos["wrist"][starts], "instruction": demos["instruction"],
            "first_state": demos["state"][starts], "states": states.astype(np.float32),
            "chunks": action.astype(np.float32), "length": np.minimum(-(-(ends - starts) // horizon), chunks)}


def to_bins(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Values in [0, 1] -> bin ids 0 .. bins-1 (clamped)."""
    return (x * bins).floor().clamp(0, bins - 1).long()


def from_bins(ids: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin ids -> bin centres."""
    return (ids.float() + 0.5) / bins


DELTA_RANGE = 0.5   # changes in [-0.5, 0.5] on bins - 1 levels with an exact zero


def to_delta_bins(delta: torch.Tensor, bins: int) -> torch.Tensor:
    """Changes -> ids 0 .. bins-2 (id bins/2 - 1 is exactly zero), rounded to the nearest level, clamped."""
    centre, step = bins // 2 - 1, 2 * DELTA_RANGE / (bins - 2)
    return ((delta / step).round().clamp(-centre, centre) + centre).long()


def from_delta_bins(ids: torch.Tensor, bins: int) -> torch.Tensor:
    return (ids.float() - (bins // 2 - 1)) * (2 * DELTA_RANGE / (bins - 2))


def full_states(dynamic_BT13: torch.Tensor, first_state_B30: torch.Tensor) -> torch.Tensor:
    """(B, T, 30) suite states from imagined dynamic dimensions and the real first state.

    Colours, shapes and which objects exist come from the first state (absent objects stay at
    zero); velocity is unknown (zero); an object is held when the grip is closed and it is within
    ``HELD_REACH`` of the gripper (the nearest one). **Ours.**
    """
    B, T, _ = dynamic_BT13.shape
    full = first_state_B30[:, None].repeat(1, T, 1).clone()
    full[..., DYNAMIC] = dynamic_BT13
    full[..., 3:5] = 0.0
    objects = full[..., 5:].reshape(B, T, MAX_OBJECTS, 5).clone()
    active = (first_state_B30[:, 5:].view(B, 1, MAX_OBJECTS, 5)[..., :2] != 0).any(-1).expand(B, T, MAX_OBJECTS)
    objects[..., :2] = objects[..., :2] * active[..., None]
    dist = (objects[..., :2] - full[..., None, :2]).norm(dim=-1).masked_fill(~active, math.inf)
    nearest = dist.argmin(-1, keepdim=True)
    held = torch.zeros_like(dist).scatter(-1, nearest, 1.0)
    held *= ((dist.gather(-1, nearest) <= HELD_REACH) & (full[..., 2:3] > 0.5)).float()
    objects[..., 4] = held
    full[..., 5:] = objects.flatten(2)
    return full


def label_success(full_BT30: torch.Tensor, tasks: list[Task]) -> torch.Tensor:
    """(B, T) the suite's success predicate on every imagined state."""
    B, T, _ = full_BT30.shape
    sim = Tabletop(B * T, TabletopConfig(), views=False)
    sim.load_state(full_BT30.reshape(B * T, -1).numpy(), [t for t in tasks for _ in range(T)])
    return torch.as_tensor(sim.success()).view(B, T)


# --------------------------------------------------------------------------- prompts

def counterfactual_task(first_state: np.ndarray, task: Task, rng: np.random.Generator) -> Task | None:
    """The task with its slots edited to a combination outside the training set that the scene affords.

    Push: a (colour, relation) pair of the unseen split between two balls in the scene; place:
    an unseen (colour, zone) pair for a block in the scene. ``None`` for tasks without slots
    (gather, line up) or when the scene affords no unseen combination. First phrasing.
    """
    objects = np.asarray(first_state)[5:].reshape(MAX_OBJECTS, 5)
    present = (objects[:, :2] != 0).any(1)
    colour = np.rint(objects[:, 2] * 4).astype(int)
    balls = sorted(colour[present & (objects[:, 3] == SHAPES.index("ball"))].tolist())
    blocks = sorted(colour[present & (objects[:, 3] == SHAPES.index("block"))].tolist())
    options: list[Task] = []
    if task.kind == "push":
        options = [Task("push", c, o, relation=r) for c in balls for s, r in enumerate(RELATIONS)
                   for o in balls if o != c and _unseen(c, s)]
    elif task.kind == "place":
        options = [Task("place", c, zone=z) for c in blocks for s, z in enumerate(ZONES) if _unseen(c, s)]
    return options[int(rng.integers(len(options)))] if options else None


def paraphrase_task(task: Task, rng: np.random.Generator) -> Task:
    """The same task in another phrasing (the no-counterfactual baseline's prompts)."""
    return Task(task.kind, task.colour, task.other, task.relation, task.zone, phrasing=int(rng.integers(1, 3)))


# --------------------------------------------------------------------------- the generator

@dataclass(frozen=True)
class GeneratorConfig:
    horizon: int = 8
    chunks: int = 10                # rollout length in chunks (demonstrations average ~9)
    bins: int = 64
    view_size: int = 32
    patch: int = 8
    chunk_tokens: str = "end"       # "end": a chunk is its last waypoint + grip, interpolated (ours); "waypoints"
    values: str = "delta"           # "delta": changes from the previous state / the gripper (ours); "absolute"
    d_model: int = 96
    layers: int = 2
    heads: int = 4
    see_image: bool = True          # False: the text-only generator (KALM's analogue), a baseline
    state_prompt: bool = False      # s_0 is given (the first frame's state, read off exactly), not generated (ours)
    caption_weight: float = 0.5     # KALM auxiliary task: rollout -> instruction
    dynamics_weight: float = 0.5    # KALM auxiliary task: (s_t, a_t) -> s_{t+1}
    steps: int = 3000
    batch_size: int = 16
    lr: float = 3e-4


class RolloutGenerator(nn.Module):
    """Causal transformer: (instruction, first frames) -> s_0 a_0 ... s_K, one bin token at a time."""

    def __init__(self, cfg: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        if cfg.chunk_tokens not in ("end", "waypoints"):
            raise ValueError(f"chunk_tokens must be 'end' or 'waypoints', got {cfg.chunk_tokens!r}")
        if cfg.values not in ("delta", "absolute") or (cfg.values == "delta" and cfg.chunk_tokens != "end"):
            raise ValueError(f"values must be 'absolute', or 'delta' with end-waypoint chunks; got {cfg.values!r}")
        self.cfg = cfg
        d, S = cfg.d_model, len(DYNAMIC)
        A = 3 if cfg.chunk_tokens == "end" else 3 * cfg.horizon
        self.state_tokens, self.chunk_tokens = S, A
        self.length = (cfg.chunks + 1) * S + cfg.chunks * A
        self.patches = (cfg.view_size // cfg.patch) ** 2
        self.bin_embed = nn.Embedding(cfg.bins, d)
        self.word_embed = nn.Embedding(len(VOCAB) + 2, d)
        self.patch_embed = nn.ModuleDict({v: nn.Linear(3 * cfg.patch**2, d) for v in ("head", "wrist")})
        self.no_image = nn.Parameter(torch.zeros(d))
        self.word_pos = nn.Parameter(torch.randn(MAX_WORDS, d) * 0.02)
        self.patch_pos = nn.Parameter(torch.randn(2 * self.patches, d) * 0.02)
        self.rollout_pos = nn.Parameter(torch.randn(self.length, d) * 0.02)   # which dimension of which step
        self.blocks = nn.ModuleList(Block(d, cfg.heads) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(d)
        self.bin_head = nn.Linear(d, cfg.bins)
        self.word_head = nn.Linear(d, len(VOCAB) + 2)

    # ---- token layout

    def encode(self, states_BT13: torch.Tensor, chunks_BKH3: torch.Tensor) -> torch.Tensor:
        """(B, L) bin ids in sequence order s_0 a_0 s_1 ... s_K.

        ``values="delta"``: s_0 absolute; then every chunk's end waypoint relative to the gripper and
        every state relative to the previous one, each taken from the *decoded* previous state (so
        rounding errors never accumulate), on ``delta_bins``; grips stay absolute.
        """
        B, K = chunks_BKH3.shape[:2]
        bins = self.cfg.bins
        if self.cfg.values == "absolute":
            s = to_bins(states_BT13, bins)
            a = to_bins(chunks_BKH3[:, :, -1] if self.cfg.chunk_tokens == "end" else chunks_BKH3.flatten(2), bins)
            steps = [torch.cat([s[:, t], a[:, t]], 1) for t in range(K)]
            return torch.cat([*steps, s[:, K]], 1)
        ids = [to_bins(states_BT13[:, 0], bins)]
        state = self._first_state(ids[0])
        for t in range(K):
            end = chunks_BKH3[:, t, -1]
            ids.append(torch.cat([to_delta_bins(end[:, :2] - state[:, :2], bins), to_bins(end[:, 2:], bins)], 1))
            change = to_delta_bins(states_BT13[:, t + 1] - state, bins)
            change[:, 2] = to_bins(states_BT13[:, t + 1, 2], bins)
            ids.append(change)
            state = self._next_state(state, change)
        return torch.cat(ids, 1)

    def _first_state(self, ids_B13: torch.Tensor) -> torch.Tensor:
        state = from_bins(ids_B13, self.cfg.bins)
        state[:, 2] = (state[:, 2] > 0.5).float()
        return state

    def _next_state(self, state: torch.Tensor, change_ids: torch.Tensor) -> torch.Tensor:
        nxt = (state + from_delta_bins(change_ids, self.cfg.bins)).clamp(0.0, 1.0)
        nxt[:, 2] = (from_bins(change_ids[:, 2], self.cfg.bins) > 0.5).float()
        return nxt

    def decode(self, tokens_BL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (B, K+1, 13), chunks (B, K, H, 3)): bin centres; grips snapped to 0/1.

        With ``chunk_tokens="end"`` the H waypoints run in a straight line, evenly spaced, from
        the gripper's position at the chunk's start to its end waypoint, all with the end grip.
        """
        B, (S, A, K, H) = len(tokens_BL), (self.state_tokens, self.chunk_tokens, self.cfg.chunks, self.cfg.horizon)
        if self.cfg.values == "absolute":
            values = from_bins(tokens_BL, self.cfg.bins)
            steps = values[:, : K * (S + A)].view(B, K, S + A)
            states = torch.cat([steps[..., :S], values[:, None, K * (S + A):]], 1)
            states[..., 2] = (states[..., 2] > 0.5).float()
            action = steps[..., S:]
        else:
            state, states, ends = self._first_state(tokens_BL[:, :S]), [], []
            for t in range(K):
                a = tokens_BL[:, S + t * (S + A): S + t * (S + A) + A]
                ends.append(torch.cat([(state[:, :2] + from_delta_bins(a[:, :2], self.cfg.bins)).clamp(0.0, 1.0),
                                       from_bins(a[:, 2:], self.cfg.bins)], 1))
                states.append(state)
                state = self._next_state(state, tokens_BL[:, (t + 1) * (S + A): (t + 1) * (S + A) + S])
            states, action = torch.stack([*states, state], 1), torch.stack(ends, 1)
        if self.cfg.chunk_tokens == "end":
            start = states[:, :K, None, :2]
            frac = torch.arange(1, H + 1).float().view(1, 1, H, 1) / H
            chunks = torch.cat([start + frac * (action[:, :, None, :2] - start),
                                action[:, :, None, 2:].expand(B, K, H, 1)], -1)
        else:
            chunks = action.reshape(B, K, H, 3).clone()
        chunks[..., 2] = (chunks[..., 2] > 0.5).float()
        return states, chunks

    def _prompt(self, head: torch.Tensor, wrist: torch.Tensor) -> torch.Tensor:
        """(B, 2 x patches, d): both first frames as patch tokens (or the learned no-image token)."""
        B, p = len(head), self.cfg.patch
        if not self.cfg.see_image:
            return self.no_image.expand(B, 2 * self.patches, -1) + self.patch_pos
        parts = []
        for view, images in (("head", head), ("wrist", wrist)):
            x = F.unfold(to_float(images), p, stride=p).transpose(1, 2)       # (B, patches, 3 p p)
            parts.append(self.patch_embed[view](x))
        return torch.cat(parts, 1) + self.patch_pos

    def _words(self, instruction: torch.Tensor) -> torch.Tensor:
        return self.word_embed(instruction) + self.word_pos

    def _rollout(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.bin_embed(tokens) + self.rollout_pos[offset: offset + tokens.shape[1]]

    def _run(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, cache=None if cache is None else cache[i])
        return self.ln(x)

    # ---- training

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """Text->rollout cross-entropy, plus KALM's rollout->text and one-step dynamics auxiliaries."""
        cfg, S, A = self.cfg, self.state_tokens, self.chunk_tokens
        tokens = self.encode(batch["states"], batch["chunks"])
        image = self._prompt(batch["head"], batch["wrist"])
        words = self._words(batch["instruction"])
        rollout = self._rollout(tokens)
        prefix = words.shape[1] + image.shape[1]
        h = self._run(torch.cat([words, image, rollout[:, :-1]], 1))
        given = S if cfg.state_prompt else 0     # a given s_0 is context, not a target
        out = {"rollout": F.cross_entropy(self.bin_head(h[:, prefix - 1 + given:]).flatten(0, 1),
                                          tokens[:, given:].flatten())}
        if cfg.caption_weight > 0:
            h = self._run(torch.cat([image, rollout, words[:, :-1]], 1))
            logits = self.word_head(h[:, image.shape[1] + rollout.shape[1] - 1:])
            out["caption"] = F.cross_entropy(logits.flatten(0, 1), batch["instruction"].flatten())
        if cfg.dynamics_weight > 0:
            t = int(torch.randint(cfg.chunks, (1,), generator=generator))
            start = t * (S + A)
            h = self._run(rollout[:, start: start + 2 * S + A - 1])
            target = tokens[:, start + S + A: start + 2 * S + A]
            out["dynamics"] = F.cross_entropy(self.bin_head(h[:, S + A - 1:]).flatten(0, 1), target.flatten())
        out["loss"] = (out["rollout"] + cfg.caption_weight * out.get("caption", 0.0)
                       + cfg.dynamics_weight * out.get("dynamics", 0.0))
        return out

    def fit(self, data: dict[str, np.ndarray], seed: int = 0, on_step=None) -> list[float]:
        """AdamW with warm-up and cosine decay on ``rollout_arrays`` rows; returns the loss curve."""
        cfg = self.cfg
        gen = torch.Generator().manual_seed(seed)
        tensors = {k: torch.as_tensor(data[k]) for k in ("head", "wrist", "instruction", "states", "chunks")}
        opt = torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / max(cfg.steps, 1))))
        n, curve = len(tensors["states"]), []
        self.train()
        for step in range(cfg.steps):
            idx = torch.randint(n, (cfg.batch_size,), generator=gen)
            loss = self.losses({k: v[idx] for k, v in tensors.items()}, gen)["loss"]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.parameters(), 1.0)
            opt.step()
            schedule.step()
            curve.append(loss.item())
            if on_step:
                on_step(step)
        self.eval()
        return curve

    # ---- generation

    @torch.no_grad()
    def sample(self, head: torch.Tensor, wrist: torch.Tensor, instruction: torch.Tensor,
               generator: torch.Generator | None = None, temperature: float = 1.0,
               first_state: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) rollout tokens sampled one at a time with a KV cache (deterministic under ``generator``).
        With ``state_prompt`` the first state's 13 dynamic dimensions (``first_state``) open the rollout."""
        cache: list = [[] for _ in self.blocks]
        prompt = [self._words(instruction), self._prompt(head, wrist)]
        tokens = []
        if self.cfg.state_prompt:
            if first_state is None:
                raise ValueError("a generator with state_prompt=True needs the first state to sample from")
            given = to_bins(first_state, self.cfg.bins)
            prompt.append(self._rollout(given))
            tokens = list(given.split(1, dim=1))
        h = self._run(torch.cat(prompt, 1), cache)
        for i in range(len(tokens), self.length):
            logits = self.bin_head(h[:, -1]) / max(temperature, 1e-6)
            token = torch.multinomial(logits.softmax(-1), 1, generator=generator)
            tokens.append(token)
            if i + 1 < self.length:
                h = self._run(self._rollout(token, offset=i), cache)
        return torch.cat(tokens, 1)


# --------------------------------------------------------------------------- the filter and the replay check

@torch.no_grad()
def disagreement(world_model: StateWorldModel, full_BT30: torch.Tensor, instruction_B16: torch.Tensor,
                 chunks_BKH3: torch.Tensor, steps_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per rollout, over its first ``steps`` chunks: the largest ensemble disagreement of the state world
    model, and the largest error between its prediction and the imagined next state (dynamic dims)."""
    B, K = chunks_BKH3.shape[:2]
    state = full_BT30[:, :K].reshape(B * K, -1)
    predicted, _, uncertainty = world_model.predict(state, instruction_B16.repeat_interleave(K, 0),
                                                    chunks_BKH3.reshape(B * K, *chunks_BKH3.shape[2:]))
    error = (predicted - full_BT30[:, 1:].reshape(B * K, -1))[:, DYNAMIC].abs().max(-1).values
    inside = torch.arange(K)[None] < steps_B[:, None]
    worst = [torch.where(inside, x.view(B, K), torch.zeros(())).max(1).values for x in (uncertainty, error)]
    return worst[0], worst[1]


def replay(first_states: np.ndarray, tasks: list[Task], chunks_BKH3: np.ndarray,
           config: TabletopConfig = TabletopConfig()) -> dict[str, np.ndarray]:
    """Execute imagined chunks from the real first states in the true suite: success and the states after
    each chunk (the replay diagnostic)."""
    B, K, H, _ = chunks_BKH3.shape
    sim = Tabletop(B, config, views=False)
    sim.load_state(first_states, tasks)
    solved = np.zeros(B, bool)
    states = []
    for k in range(K):
        for h in range(H):
            _, success = sim.step(chunks_BKH3[:, k, h])
            solved |= success
        states.append(sim.state()[:, DYNAMIC])
    return {"success": solved, "states": np.stack(states, 1)}


# --------------------------------------------------------------------------- imagined sets

def filter_world_model(horizon: int, steps: int) -> StateWorldModel:
    """The filter: a 5-member chunk-level state world model trained for ``steps``."""
    return StateWorldModel(STATE_DIM, horizon, WorldModelConfig(ensemble=EnsembleConfig(
        members=5, elites=5, hidden=256, layers=3, max_steps=steps, eval_every=max(1, steps // 6))))


@torch.no_grad()
def filter_thresholds(layout: RolloutGenerator, world_model: StateWorldModel, held: dict[str, np.ndarray],
                      quantile: float) -> tuple[float, float]:
    """The filter's (disagreement, error) thresholds: their ``quantile`` over held-out real rollouts
    (``rollout_arrays``) passed through the generator's token layout, i.e. what a perfect generator emits."""
    states, chunks = layout.decode(layout.encode(torch.as_tensor(held["states"]), torch.as_tensor(held["chunks"])))
    full = full_states(states, torch.as_tensor(held["first_state"]))
    doubt, error = disagreement(world_model, full, torch.as_tensor(held["instruction"]), chunks,
                                torch.as_tensor(held["length"]))
    return float(doubt.quantile(quantile)), float(error.quantile(quantile))


def prompt_tasks(kind: str, first_states: np.ndarray, tasks: list[Task], n: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, list[Task]]:
    """``n`` (demonstration row, prompt task) pairs: counterfactual slot edits (``kind="counterfactual"``) or
    paraphrases of real first frames; prompts the first frame already satisfies are skipped (nothing to imagine)."""
    if kind == "counterfactual" and not any(t.kind in ("push", "place") for t in tasks):
        raise UserError("counterfactual prompts edit push or place tasks; the demonstrations have none")
    rows: list[int] = []
    chosen: list[Task] = []
    fruitless = 0
    while len(rows) < n:
        if fruitless == 100:
            raise UserError(f"found {len(rows)} of {n} {kind} prompts: every one drawn is already satisfied by its "
                            "first frame")
        candidates = []
        while len(candidates) < n - len(rows):
            i = int(rng.integers(len(tasks)))
            task = counterfactual_task(first_states[i], tasks[i], rng) if kind == "counterfactual" else \
                paraphrase_task(tasks[i], rng)
            if task is not None:
                candidates.append((i, task))
        done = label_success(torch.as_tensor(first_states[[i for i, _ in candidates]])[:, None],
                             [t for _, t in candidates])[:, 0]
        before = len(rows)
        for (i, task), solved in zip(candidates, done.tolist(), strict=True):
            if not solved:
                rows.append(i)
                chosen.append(task)
        fruitless = fruitless + 1 if len(rows) == before else 0
    return np.array(rows), chosen


def solved_steps(solved_BT: torch.Tensor) -> torch.Tensor:
    """Chunks until the first success (K where none): a rollout's transitions end there."""
    after = solved_BT[:, 1:]
    return torch.where(after.any(1), after.float().argmax(1) + 1, torch.full((len(after),), after.shape[1]))


@torch.no_grad()
def imagine(generator: RolloutGenerator, world_model: StateWorldModel, data: dict[str, np.ndarray],
            rows: np.ndarray, tasks: list[Task], thresholds: tuple[float, float], seed: int,
            temperature: float = 1.0, examples: int = 6, config: TabletopConfig = TabletopConfig()) -> dict:
    """Sample, label, filter and replay one imagined set from the first frames ``data[...][rows]`` prompted with
    ``tasks``. -> {"transitions": the kept chunk transitions (``offline_rl.TRANSITION_KEYS``), each rollout's
    ending at its first imagined success; "stats": the filter's and the replay's fractions; "examples": a few
    rollouts, imagined and replayed, for ``plot_rollouts``}."""
    instruction = torch.as_tensor(np.stack([tokenize(t.text) for t in tasks]))
    head, wrist = torch.as_tensor(data["head"][rows]), torch.as_tensor(data["wrist"][rows])
    first = torch.as_tensor(data["first_state"][rows])
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.cat([generator.sample(head[i:i + 256], wrist[i:i + 256], instruction[i:i + 256], gen,
                                         temperature, first[i:i + 256, DYNAMIC])
                        for i in range(0, len(rows), 256)])
    states, chunks = generator.decode(tokens)
    full = full_states(states, first)
    solved = label_success(full, tasks)
    steps = solved_steps(solved)
    doubt, error = disagreement(world_model, full, instruction, chunks, steps)
    keep = (doubt <= thresholds[0]) & (error <= thresholds[1])
    imagined_success = solved[:, 1:].any(1)
    replayed = replay(first.numpy(), tasks, chunks.numpy(), config)
    replay_success = torch.as_tensor(replayed["success"])
    K = chunks.shape[1]
    live = (torch.arange(K)[None] < steps[:, None]) & keep[:, None]
    b, k = live.nonzero(as_tuple=True)
    transitions = {"state": full[b, k], "instruction": instruction[b], "chunk": chunks[b, k],
                   "reward": solved[b, k + 1].float(), "next_state": full[b, k + 1], "done": solved[b, k + 1].float()}

    def frac(mask, of=None):
        of = torch.ones_like(mask) if of is None else of
        return float(mask[of].float().mean()) if of.any() else None

    stats = {"rollouts": len(rows), "kept": frac(keep), "transitions": len(b),
             "imagined_success": frac(imagined_success), "imagined_success_kept": frac(imagined_success, keep),
             "replay_success": frac(replay_success), "replay_success_kept": frac(replay_success, keep),
             "agreement": frac(imagined_success == replay_success),
             "agreement_kept": frac(imagined_success == replay_success, keep),
             "precision_kept": frac(replay_success, keep & imagined_success)}
    shown = torch.argsort((~(keep & imagined_success)).float(), stable=True)[:examples]
    examples_out = [{"text": tasks[i].text, "imagined": states[i, :, :].tolist(),
                     "replayed": [first[i, DYNAMIC].tolist(), *replayed["states"][i].tolist()],
                     "present": (first[i, 5:].view(-1, 5)[:, :2] != 0).any(1).tolist(),
                     "colour": first[i, 5:].view(-1, 5)[:, 2].tolist(), "kept": bool(keep[i]),
                     "imagined_success": bool(imagined_success[i]), "replay_success": bool(replay_success[i])}
                    for i in shown.tolist()]
    return {"transitions": transitions, "stats": stats, "examples": examples_out}


def plot_rollouts(examples: list[dict], title: str):
    """A figure: each example's imagined rollout (top) over its replay in the true suite (bottom); the
    gripper's path in black, every object's in its colour."""
    import matplotlib.pyplot as plt

    palette = ["#d62728", "#2ca02c", "#1f77b4", "#e6b800", "#9467bd"]
    cols = max(1, len(examples))
    grid, axes = plt.subplots(2, cols, figsize=(2.6 * cols, 5.4), squeeze=False)
    for c, ex in enumerate(examples):
        for r, key in enumerate(("imagined", "replayed")):
            ax, path = axes[r][c], np.array(ex[key])
            ax.plot(path[:, 0], path[:, 1], "k.-", lw=1, ms=3)
            for j, present in enumerate(ex["present"]):
                if present:
                    colour = palette[int(round(ex["colour"][j] * 4)) % len(palette)]
                    ax.plot(path[:, 3 + 2 * j], path[:, 4 + 2 * j], "-", color=colour, lw=1)
                    ax.plot(path[-1, 3 + 2 * j], path[-1, 4 + 2 * j], "o", color=colour, ms=5)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xticks([])
            ax.set_yticks([])
            ok = ex["imagined_success"] if key == "imagined" else ex["replay_success"]
            ax.set_title(f"{key}: {'solved' if ok else 'not solved'}", fontsize=7)
        axes[0][c].set_xlabel(ex["text"], fontsize=6)
    grid.suptitle(title, fontsize=8)
    grid.tight_layout()
    return grid
