"""ReVal (Wang, Li, Xu et al., arXiv 2603.23355): value-based, off-policy RL for LMs with replay.

Only summaries of the paper were available: logits as soft-Q, a stepwise internal-consistency
signal plus a trajectory-level outcome signal, a FIFO replay buffer sampled uniformly. The
loss below is **our reconstruction** (docs/reval.md), from the same group's endogenous-reward
paper (EndoRM, arXiv 2506.23235) and TBRM (arXiv 2505.15311). With l the raw logits:

    Q(s, a) = beta l(s, a),   V(s) = beta logsumexp l(s, .),  V = 0 after the last token
    r_endo(s_t, a_t) = beta l_ref(s_t, a_t) - beta logsumexp l_ref(s_{t+1}, .)      (0 at the end)
    L_step = mean_t (Q(s_t, a_t) - [r_endo,t + R 1[t = T] + sg V_target(s_{t+1})])^2
    L_traj = (beta sum_t log(pi / pi_ref)(a_t | s_t) + beta [lse l(s_1) - lse l_ref(s_1)] - R)^2
    L = lambda_step L_step + lambda_traj L_traj

At initialisation (theta = ref) every stepwise residual is zero except the last, -R, and the
trajectory term is the square of the sum of the residuals (it telescopes): credit reaches
every token at once. Updates draw K minibatches per rollout batch from a FIFO buffer; the
bootstrap target is an EMA copy of the policy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from nanorepro.llm_rl.policy import completion_logits


@dataclass(frozen=True)
class ReValConfig:
    beta: float = 0.3
    lambda_step: float = 1.0
    lambda_traj: float = 1.0
    endogenous: bool = True  # False: r_endo = 0 (ablation "no endogenous reward")
    buffer_batches: int = 4  # FIFO capacity, in rollout batches
    updates_per_batch: int = 4  # K
    minibatch: int = 128
    ema: float = 0.99  # target network Polyak rate (1.0: no target, bootstrap from the policy itself)
    lr: float = 1e-4
    grad_clip: float = 1.0


def reval_terms(logits: torch.Tensor, ref_logits: torch.Tensor, target_logits: torch.Tensor,
                completions: torch.Tensor, mask: torch.Tensor, R: torch.Tensor, cfg: ReValConfig):
    """-> (L_step, L_traj, residuals (N, L)). Logits are (N, L, V) at the states before each token.

    ``residuals`` use the policy's own V(s_{t+1}) (not the target): their sum is the trajectory
    term's inside. The last valid token is the terminal step.
    """
    b = cfg.beta
    logits, ref_logits = logits.float(), ref_logits.float()
    lengths = mask.sum(1).long()
    last = torch.nn.functional.one_hot(lengths - 1, mask.shape[1]).float()  # 1 at the terminal token
    q = b * logits.gather(-1, completions.unsqueeze(-1)).squeeze(-1)
    lse = b * torch.logsumexp(logits, -1)  # V(s_t), (N, L)
    lse_ref = b * torch.logsumexp(ref_logits, -1)
    lse_tgt = b * torch.logsumexp(target_logits.float(), -1)

    def next_state(v: torch.Tensor) -> torch.Tensor:  # V(s_{t+1}), 0 after the terminal token
        shifted = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
        return shifted * (1 - last) * mask

    r_endo = b * ref_logits.gather(-1, completions.unsqueeze(-1)).squeeze(-1) - next_state(lse_ref)
    if not cfg.endogenous:
        r_endo = torch.zeros_like(r_endo)
    outcome = last * R[:, None]
    y = (r_endo + outcome + next_state(lse_tgt)).detach()
    step = (((q - y) ** 2) * mask).sum() / mask.sum().clamp_min(1)
    residuals = (q - r_endo - outcome - next_state(lse)) * mask
    log_ratio = (torch.log_softmax(logits, -1) - torch.log_softmax(ref_logits, -1)).gather(
        -1, completions.unsqueeze(-1)).squeeze(-1)
    inner = b * (log_ratio * mask).sum(1) + (lse[:, 0] - lse_ref[:, 0]) - R
    traj = (inner**2).mean()
    return step, traj, residuals


class FIFOReplay:
    """Whole rollout batches in, uniform minibatches out; the oldest batch leaves first."""

    def __init__(self, capacity_batches: int):
        self.capacity = capacity_batches
        self.batches: list[dict[str, torch.Tensor]] = []

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        self.batches.append(batch)
        if len(self.batches) > self.capacity:
            self.batches.pop(0)

    def __len__(self) -> int:
        return sum(len(b["R"]) for b in self.batches)

    def sample(self, n: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
        """``n`` rows drawn uniformly over the buffer, as one minibatch per prompt length (no padding)."""
        by_length: dict[int, list[dict[str, torch.Tensor]]] = {}
        for b in self.batches:
            by_length.setdefault(b["prompts"].shape[1], []).append(b)
        groups = [{k: torch.cat([b[k] for b in bs]) for k in bs[0]} for bs in by_length.values()]
        sizes = torch.tensor([len(g["R"]) for g in groups])
        ends = torch.cumsum(sizes, 0)
        idx = torch.randint(0, int(ends[-1]), (n,), generator=generator)
        group_of = torch.searchsorted(ends, idx, right=True)
        out = []
        for i, group in enumerate(groups):
            local = idx[group_of == i] - (ends[i] - sizes[i])
            if len(local):
                out.append({k: v[local] for k, v in group.items()})
        return out


class ReVal:
    """The learner: a frozen reference, an EMA target and a FIFO buffer around the policy.

    ``trained`` is the module whose forward the loss differentiates (the policy, or the
    policy wrapped in DistributedDataParallel); it shares the policy's parameters.
    """

    def __init__(self, policy: nn.Module, cfg: ReValConfig, trained: nn.Module | None = None):
        self.policy, self.cfg = policy, cfg
        self.trained = policy if trained is None else trained
        self.ref = copy.deepcopy(policy).requires_grad_(False).eval()
        self.target = copy.deepcopy(policy).requires_grad_(False).eval()
        self.buffer = FIFOReplay(cfg.buffer_batches)
        self.opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)

    def state_dict(self) -> dict:
        """Everything but the policy's own weights: reference, target, optimizer, replay buffer."""
        return {"ref": self.ref.state_dict(), "target": self.target.state_dict(), "opt": self.opt.state_dict(),
                "buffer": list(self.buffer.batches)}

    def load_state_dict(self, state: dict) -> None:
        self.ref.load_state_dict(state["ref"])
        self.target.load_state_dict(state["target"])
        self.opt.load_state_dict(state["opt"])
        self.buffer.batches = list(state["buffer"])

    def update(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict:
        """Store a rollout batch, then K minibatch updates from the buffer."""
        cfg = self.cfg
        self.buffer.add(batch)
        for _ in range(cfg.updates_per_batch):
            n = min(cfg.minibatch, len(self.buffer))
            loss = step = traj = 0.0
            for mb in self.buffer.sample(n, generator):  # one part per prompt length, weighted by its rows
                share = len(mb["R"]) / n
                logits = completion_logits(self.trained, mb["prompts"], mb["completions"])
                with torch.no_grad():
                    ref = completion_logits(self.ref, mb["prompts"], mb["completions"])
                    tgt = completion_logits(self.target, mb["prompts"], mb["completions"])
                part_step, part_traj, _ = reval_terms(logits, ref, tgt, mb["completions"], mb["mask"], mb["R"], cfg)
                loss = loss + share * (cfg.lambda_step * part_step + cfg.lambda_traj * part_traj)
                step, traj = step + share * part_step, traj + share * part_traj
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
            self.opt.step()
            with torch.no_grad():
                for p, t in zip(self.policy.parameters(), self.target.parameters(), strict=True):
                    t.lerp_(p, 1 - cfg.ema)
        return {"loss": loss.item(), "step": step.item(), "traj": traj.item()}
