"""A small ACT-style chunked policy: both views + instruction + gripper -> the next H waypoints.

Our laptop-scale stand-in for a VLA (our reconstruction, not ACT's transformer): per view,
a CNN on the image plus two coordinate channels (CoordConv), FiLM-conditioned on the
instruction (RT-1 / BC-Z), ends in a **spatial softmax** (each feature map -> the expected
(x, y) of its activation: keypoints, Levine et al. 2016) next to pooled features; the
instruction's word embeddings with learned positions (word order matters: "red left of
blue" is not "blue left of red"); the gripper's x, y and grip — not its velocity, which BC
would copy (the copycat problem: from rest it never starts). An MLP outputs H waypoints
relative to the gripper, their log-std, and grip logits. Behaviour cloning on the
demonstrated chunk starting at every step: ACT's L1 loss on positions (``loss="l1"``,
default; the log-std is fitted to the detached residual) or the Gaussian NLL
(``loss="nll"``), plus the grip's binary cross-entropy. Executed chunk by chunk: the first
``execute`` waypoints of each predicted chunk run open loop (default all H).

``encoder="objects"`` swaps the views for an object-centric transformer over the simulator
state (privileged; our design): one token for the gripper, one per object (position relative
to the gripper, colour one-hot, shape, held), one per instruction word; the gripper token's
output feeds the same head. Attention binds the instruction's colour words to the object
that carries that colour — the pointer operation an MLP over the flat state fails to learn
(``docs/tabletop.md``).

``encoder="view_tokens"`` brings that binding to the cameras (our design): a CoordConv CNN
(stride 4) turns each view into an 8 × 8 grid of patch tokens (plus a learned embedding
per view and patch), and the same transformer runs over [gripper | head patches | wrist
patches | instruction words]; the gripper token's output feeds the head. Attention can
match a colour word to the patches that show that colour, which FiLM's global per-channel
scaling of the CNN cannot point at.

``encoder="query_views"`` keeps the two CNNs and the head but replaces FiLM and the spatial
softmax with K instruction queries per view (``InstructionQueries``, our design): each query
attends over the feature map and returns the expected (x, y) of its attention — an absolute
keypoint the words pick — and the attended features. ``encoder="query_tokens"`` feeds those
keypoints (relative to the gripper) and features as slot tokens to the object encoder's
transformer. Pilots of all of these: ``docs/tabletop.md``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.common.errors import UserError
from nanorepro.envs.tabletop import COLOURS, MAX_OBJECTS, MAX_WORDS, PAD, VOCAB, Tabletop, TabletopConfig, Task
from nanorepro.nn.mlp import mlp
from nanorepro.nn.transformer import Block

ENCODERS = ("views", "query_views", "view_tokens", "query_tokens", "objects")
TOKEN_ENCODERS = ("view_tokens", "query_tokens", "objects")  # transformers whose gripper token feeds the head
PROPRIO = 3  # gripper x, y, grip (not its velocity: BC copies it, the copycat problem): first state entries
STATE_DIM = 30


@dataclass(frozen=True)
class PolicyConfig:
    horizon: int = 8
    view_size: int = 32
    channels: int = 32
    word_dim: int = 16
    hidden: int = 256
    min_log_std: float = -5.0
    max_log_std: float = 1.0
    loss: str = "l1"             # "l1" (ACT) or "nll"
    execute: int = 0             # waypoints run per predicted chunk; 0 = the whole chunk
    offset_scale: float = 0.1    # waypoints = gripper + offset_scale x network output
    privileged_state: bool = False  # also read the full simulator state (object poses): a diagnostic upper bound
    encoder: str = "views"       # "views" (FiLM CNNs on both cameras), "query_views" (CNNs read by
                                 # instruction queries), "view_tokens" (transformer over both cameras'
                                 # patch tokens), "query_tokens" (transformer over the queries' slots)
                                 # or "objects" (transformer over the state)
    object_dim: int = 64         # the token encoders' width (2 blocks, 4 heads)
    film_scale: float = 1.0      # multiplies the FiLM condition (the 256 flattened word features); see ViewEncoder
    queries: int = 4             # "query_views" / "query_tokens": instruction queries per view
    linear_readout: bool = False  # add a linear map of the features to the head's MLP (a direct readout)
    relative_keypoints: bool = False  # "query_views": also the head keypoints minus the gripper position


def to_float(images_BHWC: torch.Tensor) -> torch.Tensor:
    """uint8 (B, P, P, 3) -> float (B, 3, P, P) in [0, 1]."""
    return images_BHWC.permute(0, 3, 1, 2).float() / 255.0


def with_coordinates(images_BHWC: torch.Tensor) -> torch.Tensor:
    """(B, 5, P, P): the image in [0, 1] plus x and y coordinate channels in [-1, 1] (CoordConv)."""
    x = to_float(images_BHWC)
    B, _, H, W = x.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    return torch.cat([x, torch.stack([xs, ys]).expand(B, -1, -1, -1)], 1)


def expected_coordinates(attention_BCHW: torch.Tensor) -> torch.Tensor:
    """(B, C, 2): per map of weights summing to one, the mean (x, y) in [-1, 1] (image coordinates)."""
    _, _, H, W = attention_BCHW.shape
    xs = torch.linspace(-1, 1, W, device=attention_BCHW.device)
    ys = torch.linspace(-1, 1, H, device=attention_BCHW.device)
    return torch.stack([(attention_BCHW.sum(2) * xs).sum(-1), (attention_BCHW.sum(3) * ys).sum(-1)], -1)


def spatial_softmax(features_BCHW: torch.Tensor) -> torch.Tensor:
    """(B, 2C): per channel, the softmax-weighted mean (x, y) in [-1, 1] of its feature map."""
    B, C, H, W = features_BCHW.shape
    points = expected_coordinates(features_BCHW.flatten(2).softmax(-1).view(B, C, H, W))
    return points.transpose(1, 2).flatten(1)  # all x, then all y


class ViewEncoder(nn.Module):
    """CoordConv CNN (stride 2 once), FiLM-conditioned on the instruction (per-channel scale and shift of
    each hidden layer, as in RT-1 / BC-Z), ending in spatial-softmax keypoints + mean-pooled features.

    The FiLM layer starts at the identity (zero weights) and reads ``condition_scale`` x the condition.
    At 1.0 with the 256 flattened word features, Adam moves every one of its weights by ~lr a step, so
    the per-channel scales drift by ~256 lr a step and the CNN learns nothing from the image (a
    probe in docs/tabletop.md: not even the objects' centroid); at 1/sqrt(256) its features
    locate the objects.
    """

    def __init__(self, size: int, channels: int, out: int, condition: int, condition_scale: float = 1.0):
        super().__init__()
        self.condition_scale = condition_scale
        c = channels
        self.convs = nn.ModuleList([nn.Conv2d(5, c, 3, 1, 1), nn.Conv2d(c, c, 3, 2, 1), nn.Conv2d(c, c, 3, 1, 1)])
        self.keypoints = nn.Conv2d(c, c, 3, 1, 1)
        self.film = nn.Linear(condition, 2 * c * len(self.convs))
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.proj = nn.Linear(3 * c, out)

    def forward(self, images_BHWC: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = with_coordinates(images_BHWC)
        film = self.film(self.condition_scale * condition).view(len(x), len(self.convs), 2, -1, 1, 1)
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x) * (1 + film[:, i, 0]) + film[:, i, 1])
        maps = self.keypoints(x)
        return F.relu(self.proj(torch.cat([spatial_softmax(maps), F.relu(maps).mean((2, 3))], 1)))


def head_keypoints_from_gripper(points_BK2: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """(B, K, 2): head-view keypoints on the table minus the gripper's position (the object encoder's frame).

    The head view spans the table, so image coordinates u in [-1, 1] are the table's (u + 1) / 2
    (to within half a feature cell).
    """
    return (points_BK2 + 1) / 2 - state[:, None, :2]


class InstructionQueries(nn.Module):
    """A CoordConv CNN (stride 2 once) read by K instruction-conditioned queries (our design).

    Query k = a linear map of the instruction's word features; its attention over the feature
    map's positions p is softmax_p(q_k . key(p) / sqrt(c)). Out per query: the expected (x, y)
    under that attention (B, K, 2) — an absolute keypoint, as in the spatial softmax, but one
    the words choose ("the red block") — and the attended value features (B, K, c). FiLM only
    rescales channels everywhere at once; a query can point at the patches that match a word.
    """

    def __init__(self, channels: int, condition: int, queries: int):
        super().__init__()
        c = channels
        self.cnn = nn.Sequential(nn.Conv2d(5, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 2, 1), nn.ReLU(),
                                 nn.Conv2d(c, c, 3, 1, 1), nn.ReLU())
        self.key = nn.Conv2d(c, c, 1)
        self.value = nn.Conv2d(c, c, 1)
        self.query = nn.Linear(condition, queries * c)

    def forward(self, images_BHWC: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.cnn(with_coordinates(images_BHWC))
        B, c, H, W = x.shape
        queries = self.query(condition).view(B, -1, c)                                  # (B, K, c)
        attention = (queries @ self.key(x).flatten(2) / c**0.5).softmax(-1)               # (B, K, HW)
        points = expected_coordinates(attention.view(B, -1, H, W))                        # (B, K, 2)
        return points, attention @ self.value(x).flatten(2).transpose(1, 2)               # values (B, K, c)


class QueryViewEncoder(nn.Module):
    """``InstructionQueries`` flattened for the MLP head: the K keypoints as they are, then a ReLU layer of the
    attended features; (B, out)."""

    def __init__(self, channels: int, out: int, condition: int, queries: int = 4):
        super().__init__()
        if out <= 2 * queries:
            raise UserError(f"query_views: encoder width {out} must exceed 2 x {queries} queries")
        self.read = InstructionQueries(channels, condition, queries)
        self.proj = nn.Linear(queries * channels, out - 2 * queries)

    def forward(self, images_BHWC: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        points, values = self.read(images_BHWC, condition)
        return torch.cat([points.flatten(1), F.relu(self.proj(values.flatten(1)))], 1)


class TokenEncoder(nn.Module, ABC):
    """Transformer over [gripper | scene tokens | instruction words]; the gripper token's output, (B, d).

    Subclasses build their scene modules (``build_scene``, called between the gripper and the
    word embeddings, which fixes the order parameters are initialised in) and turn an observation
    into scene tokens (B, N, d) with a mask of the present ones (``scene``).
    """

    def __init__(self, d: int, layers: int = 2, heads: int = 4, **scene_args):
        super().__init__()
        self.gripper = nn.Linear(PROPRIO, d)
        self.build_scene(d, **scene_args)
        self.words = nn.Embedding(len(VOCAB) + 2, d)
        self.word_pos = nn.Parameter(torch.randn(MAX_WORDS, d) * 0.02)
        self.kind = nn.Parameter(torch.randn(3, d) * 0.02)   # gripper, scene, word
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)

    @abstractmethod
    def build_scene(self, d: int, **scene_args) -> None: ...

    @abstractmethod
    def scene(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        state, instruction = obs["state"], obs["instruction"]
        scene, present = self.scene(obs)
        tokens = torch.cat([self.gripper(state[:, None, :PROPRIO]) + self.kind[0], scene + self.kind[1],
                            self.words(instruction) + self.word_pos + self.kind[2]], 1)
        keys = torch.cat([torch.ones(len(state), 1, dtype=torch.bool), present, instruction != PAD], 1)
        allowed = keys[:, None, :] | torch.eye(tokens.shape[1], dtype=torch.bool)
        for block in self.blocks:
            tokens = block(tokens, allowed=allowed)
        return self.ln(tokens[:, 0])


class ObjectEncoder(TokenEncoder):
    """Scene tokens from the simulator state: one per object (position relative to the gripper, colour, shape,
    held)."""

    def build_scene(self, d: int) -> None:
        self.object = nn.Linear(2 + len(COLOURS) + 2, d)     # relative x, y; colour one-hot; shape; held

    def scene(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        state = obs["state"]
        objects = state[:, 5:].view(len(state), MAX_OBJECTS, 5)
        present = (objects[..., :2] != 0).any(-1)
        colour = F.one_hot((objects[..., 2] * 4).round().long().clamp(0, len(COLOURS) - 1), len(COLOURS)).float()
        return self.object(torch.cat([objects[..., :2] - state[:, None, :2], colour, objects[..., 3:5]], -1)), present


class ViewTokenEncoder(TokenEncoder):
    """Scene tokens from the cameras: per view, a stride-4 CoordConv CNN's (size/4)^2 patch features, plus a
    learned position embedding per view and patch."""

    def build_scene(self, d: int, size: int, channels: int) -> None:
        if size % 4:
            raise UserError(f"encoder 'view_tokens' needs a view size divisible by 4, got {size}")
        self.cnns = nn.ModuleList(nn.Sequential(nn.Conv2d(5, channels, 3, 1, 1), nn.ReLU(),
                                                nn.Conv2d(channels, channels, 3, 2, 1), nn.ReLU(),
                                                nn.Conv2d(channels, d, 3, 2, 1)) for _ in range(2))
        self.patch_pos = nn.Parameter(torch.randn(2, (size // 4) ** 2, d) * 0.02)

    def scene(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        patches = torch.cat([cnn(with_coordinates(obs[view])).flatten(2).transpose(1, 2) + pos
                             for cnn, view, pos in zip(self.cnns, ("head", "wrist"), self.patch_pos, strict=True)], 1)
        return patches, torch.ones(patches.shape[:2], dtype=torch.bool)


class QueryTokenEncoder(TokenEncoder):
    """Scene tokens from the cameras as soft object slots (our design): per view, ``InstructionQueries`` (its
    queries read this encoder's word embeddings) gives K keypoints and features; a slot token embeds
    [keypoint relative to the gripper, features] — the head view's via ``head_keypoints_from_gripper``,
    the wrist view's as it is (that camera is centred on the gripper) — plus a learned embedding
    per view. The object encoder's input, from pixels."""

    def build_scene(self, d: int, channels: int, queries: int) -> None:
        self.readers = nn.ModuleList(InstructionQueries(channels, MAX_WORDS * d, queries) for _ in range(2))
        self.slot = nn.Linear(2 + channels, d)
        self.view_embedding = nn.Parameter(torch.randn(2, 1, d) * 0.02)

    def scene(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        words = (self.words(obs["instruction"]) + self.word_pos).flatten(1)
        head_points, head_values = self.readers[0](obs["head"], words)
        wrist_points, wrist_values = self.readers[1](obs["wrist"], words)
        head_points = head_keypoints_from_gripper(head_points, obs["state"])
        slots = torch.cat([self.slot(torch.cat([head_points, head_values], -1)) + self.view_embedding[0],
                           self.slot(torch.cat([wrist_points, wrist_values], -1)) + self.view_embedding[1]], 1)
        return slots, torch.ones(slots.shape[:2], dtype=torch.bool)


class ChunkPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig = PolicyConfig()):
        super().__init__()
        if cfg.loss not in ("l1", "nll"):
            raise UserError(f"policy loss must be 'l1' or 'nll', got {cfg.loss!r}")
        if not 0 <= cfg.execute <= cfg.horizon:
            raise UserError(f"policy execute must be in [0, horizon={cfg.horizon}], got {cfg.execute}")
        if cfg.encoder not in ENCODERS:
            raise UserError(f"policy encoder must be one of {', '.join(ENCODERS)}, got {cfg.encoder!r}")
        if cfg.relative_keypoints and cfg.encoder != "query_views":
            raise UserError("relative_keypoints needs encoder='query_views' (the keypoints come from its queries)")
        self.cfg = cfg
        if cfg.encoder == "objects":
            self.objects = ObjectEncoder(cfg.object_dim)
        elif cfg.encoder == "view_tokens":
            self.view_tokens = ViewTokenEncoder(cfg.object_dim, size=cfg.view_size, channels=cfg.channels)
        elif cfg.encoder == "query_tokens":
            self.query_tokens = QueryTokenEncoder(cfg.object_dim, channels=cfg.channels, queries=cfg.queries)
        if cfg.encoder in TOKEN_ENCODERS:
            self.state_dim = PROPRIO
            self.out = mlp(cfg.object_dim, cfg.hidden, 5 * cfg.horizon, layers=2)
        else:
            self._build_view_encoders(cfg)
        if cfg.linear_readout:
            self.readout = nn.Linear(self.feature_dim, 5 * cfg.horizon)

    def _build_view_encoders(self, cfg: PolicyConfig) -> None:
        d, condition = cfg.hidden // 2, MAX_WORDS * cfg.word_dim
        if cfg.encoder == "views":
            self.head = ViewEncoder(cfg.view_size, cfg.channels, d, condition, cfg.film_scale)
            self.wrist = ViewEncoder(cfg.view_size, cfg.channels, d, condition, cfg.film_scale)
        else:
            self.head = QueryViewEncoder(cfg.channels, d, condition, cfg.queries)
            self.wrist = QueryViewEncoder(cfg.channels, d, condition, cfg.queries)
        self.words = nn.Embedding(len(VOCAB) + 2, cfg.word_dim)
        self.word_pos = nn.Parameter(torch.zeros(MAX_WORDS, cfg.word_dim))
        self.state_dim = STATE_DIM if cfg.privileged_state else PROPRIO
        relative = 2 * cfg.queries if cfg.relative_keypoints else 0
        self.out = mlp(2 * d + MAX_WORDS * cfg.word_dim + self.state_dim + relative, cfg.hidden, 5 * cfg.horizon,
                       layers=2)

    def features(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, feature_dim): both views' FiLM-conditioned encodings, the instruction's words, the proprioception
        (or a token encoder's gripper token)."""
        if self.cfg.encoder in TOKEN_ENCODERS:
            return getattr(self, self.cfg.encoder)(obs)  # self.objects, self.view_tokens or self.query_tokens
        words = (self.words(obs["instruction"]) + self.word_pos).flatten(1)
        head = self.head(obs["head"], words)
        parts = [head, self.wrist(obs["wrist"], words), words, obs["state"][:, :self.state_dim]]
        if self.cfg.relative_keypoints:
            parts.append(self.keypoints_from_gripper(head, obs["state"]))
        return torch.cat(parts, 1)

    def keypoints_from_gripper(self, head_features: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """(B, 2K): the head view's K query keypoints (its first 2K features) relative to the gripper."""
        K = self.cfg.queries
        return head_keypoints_from_gripper(head_features[:, : 2 * K].view(-1, K, 2), state).flatten(1)

    @property
    def feature_dim(self) -> int:
        return self.out[0].in_features

    def head_output(self, features: torch.Tensor) -> torch.Tensor:
        """The head: MLP(features), plus a linear map of them with ``linear_readout``.

        To point at an object the head must output ~(object - gripper) / offset_scale. In the
        pointing probe (docs/tabletop.md) the MLP alone does not learn that in 1,500 steps even
        when the features locate the object; the linear path does, where its weights stay O(1)
        (offset_scale 1, not 0.1: Adam moves a weight by ~lr a step).
        """
        out = self.out(features)
        return out + self.readout(features) if self.cfg.linear_readout else out

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(waypoints (B, H, 2), their log-std (B, H, 2), grip logits (B, H)).

        Waypoints are parameterised relative to the gripper (gripper + ``offset_scale`` x
        output): a chunk spans only ~0.2 of the table, and absolute regression errors of a
        few hundredths swamp the motion it encodes (the policy then stalls).
        """
        H = self.cfg.horizon
        out = self.head_output(self.features(obs))
        offset, log_std = out[:, : 4 * H].view(-1, 2, H, 2).unbind(1)
        waypoints = obs["state"][:, None, :2] + self.cfg.offset_scale * offset
        return waypoints, log_std.clamp(self.cfg.min_log_std, self.cfg.max_log_std), out[:, 4 * H:]

    def loss(self, obs: dict[str, torch.Tensor], chunk: torch.Tensor, weights: torch.Tensor | None = None
             ) -> torch.Tensor:
        """BC loss of the demonstrated chunk (B, H, 3), summed over the chunk, mean over the batch.

        Positions, in units of ``offset_scale``: ``l1`` is |chunk - mean| (ACT) plus the
        Gaussian NLL of the detached residual for the log-std (so the std estimates the error
        without steering the mean); ``nll`` is the Gaussian negative log-likelihood. The grip
        is a Bernoulli: binary cross-entropy. ``weights`` (B,) weight each sample (advantage-weighted
        regression); the mean over the batch is unweighted without them.
        """
        waypoints, log_std, grip_logits = self(obs)
        z = (chunk[..., :2] - waypoints) / self.cfg.offset_scale
        if self.cfg.loss == "nll":
            position = 0.5 * (z / log_std.exp()) ** 2 + log_std
        else:
            position = z.abs() + 1e-2 * (0.5 * (z.detach() / log_std.exp()) ** 2 + log_std)
        grip = F.binary_cross_entropy_with_logits(grip_logits, chunk[..., 2], reduction="none")
        per_sample = position.sum((1, 2)) + grip.sum(1)
        return per_sample.mean() if weights is None else (weights * per_sample).mean()

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(B, H, 3) waypoints: position clamped to the table, grip probability."""
        waypoints, _, grip_logits = self(as_tensors(obs))
        return torch.cat([waypoints.clamp(0.0, 1.0), grip_logits.sigmoid()[..., None]], -1).numpy()


    @torch.no_grad()
    def sample(self, obs: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, H, 3) a chunk drawn from the policy: Gaussian positions, Bernoulli grips (0/1)."""
        waypoints, log_std, grip_logits = self(obs)
        noise = torch.randn(waypoints.shape, generator=generator)
        positions = waypoints + self.cfg.offset_scale * log_std.exp() * noise
        grips = (torch.rand(grip_logits.shape, generator=generator) < grip_logits.sigmoid()).float()
        return torch.cat([positions, grips[..., None]], -1)


def as_tensors(obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The observation's arrays as tensors (the views only where rendered)."""
    return {k: torch.as_tensor(obs[k]) for k in ("state", "head", "wrist", "instruction") if k in obs}


def chunk_targets(action: np.ndarray, episode: np.ndarray, horizon: int) -> np.ndarray:
    """(N, H, 3): for every step, the next H demonstrated waypoints of its episode (padded with its last)."""
    n = len(action)
    last = np.searchsorted(episode, episode, side="right") - 1   # index of each row's episode end
    index = np.minimum(np.arange(n)[:, None] + np.arange(horizon)[None], last[:, None])
    return action[index]


def demo_tensors(data: dict[str, np.ndarray], horizon: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-step observations (the episode's instruction on every row) and the chunk targets."""
    obs = {k: torch.as_tensor(data[k]) for k in ("state", "head", "wrist")}
    obs["instruction"] = torch.as_tensor(data["instruction"][data["episode"]])
    return obs, torch.as_tensor(chunk_targets(data["action"], data["episode"], horizon))


@dataclass
class Pool:
    """Rows a policy imitates: observations (dict of tensors), target chunks (N, H, 3), optional weights (N,)."""

    obs: dict[str, torch.Tensor]
    chunk: torch.Tensor
    weights: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.chunk)


def fit_policy(policy: ChunkPolicy, pools: list[Pool], steps: int, batch_size: int, lr: float,
               generator: torch.Generator, fractions: list[float] | None = None, cosine: bool = True,
               weight_decay: float = 1e-4, grad_clip: float | None = None, on_step=None,
               state: dict | None = None, save=None, save_every: int = 500) -> list[float]:
    """(Weighted) regression of the policy onto its pools' chunks: each batch draws ``fractions`` of its rows
    from each pool (all from the first by default); AdamW, cosine-decayed when ``cosine``. Returns the losses.

    Resumable: every ``save_every`` steps the weights, optimiser, schedule, sampler and curve go into ``state``
    and ``save()`` is called; given such a ``state``, training continues where it stopped, to the same weights.
    """
    fractions = fractions or [1.0] + [0.0] * (len(pools) - 1)
    sizes = [round(f * batch_size) for f in fractions]
    sizes[0] += batch_size - sum(sizes)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if cosine else None
    weighted = any(p.weights is not None for p in pools)
    curve, start, state = [], 0, {} if state is None else state
    if "step" in state:
        policy.load_state_dict(state["policy"])
        opt.load_state_dict(state["optimizer"])
        if schedule is not None:
            schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        curve, start = list(state["curve"]), state["step"]
    policy.train()
    for step in range(start, steps):
        parts = [(pool, torch.randint(len(pool), (n,), generator=generator)) for pool, n in zip(pools, sizes,
                                                                                              strict=True) if n]
        obs = {k: torch.cat([pool.obs[k][idx] for pool, idx in parts]) for k in parts[0][0].obs}
        chunk = torch.cat([pool.chunk[idx] for pool, idx in parts])
        weights = torch.cat([torch.ones(len(idx)) if pool.weights is None else pool.weights[idx]
                             for pool, idx in parts]) if weighted else None
        loss = policy.loss(obs, chunk, weights)
        opt.zero_grad()
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
        opt.step()
        if schedule is not None:
            schedule.step()
        curve.append(loss.item())
        if on_step:
            on_step(step)
        if save is not None and (step + 1) % save_every == 0 and step + 1 < steps:
            state.update(step=step + 1, policy=policy.state_dict(), optimizer=opt.state_dict(), curve=curve,
                         schedule=schedule.state_dict() if schedule is not None else None,
                         generator=generator.get_state())
            save()
    policy.eval()
    return curve


def train_bc(policy: ChunkPolicy, data: dict[str, np.ndarray], steps: int, batch_size: int = 64, lr: float = 1e-3,
             seed: int = 0, on_step=None, grad_clip: float | None = None, **resume) -> list[float]:
    """Behaviour cloning on demonstration arrays (``demos.load_demos`` format), AdamW with a cosine-decayed
    learning rate (and gradient-norm clipping when ``grad_clip`` is set); returns the loss curve. ``resume``:
    ``state``, ``save``, ``save_every`` of ``fit_policy``."""
    obs, targets = demo_tensors(data, policy.cfg.horizon)
    return fit_policy(policy, [Pool(obs, targets)], steps, batch_size, lr, torch.Generator().manual_seed(seed),
                      grad_clip=grad_clip, on_step=on_step, **resume)


def rollout(policy: ChunkPolicy, tasks: list[Task], seed: int, max_steps: int = 300,
            config: TabletopConfig | None = None, record: bool = False) -> dict[str, np.ndarray]:
    """Run the policy chunk by chunk (open loop for ``cfg.execute`` waypoints) in the real suite.

    Returns ``success`` (per task) and, with ``record``, the real chunk transitions of the
    scenes still unsolved at each chunk's start: state/head/wrist before and after, the
    executed waypoints (padded with the last to H), the instruction and ``solved`` after the
    chunk (the data a world model's success head is scored on).
    """
    config = config or TabletopConfig(view_size=policy.cfg.view_size)
    sim = Tabletop(len(tasks), config, views=record or policy.cfg.encoder != "objects")  # objects: state only
    obs = sim.reset(tasks, np.random.default_rng(seed))
    solved = np.zeros(len(tasks), bool)
    H = policy.cfg.horizon
    execute = policy.cfg.execute or H
    rows: dict[str, list] = {k: [] for k in ("state", "head", "wrist", "instruction", "chunk", "next_state",
                                             "next_head", "next_wrist", "solved")}
    policy.eval()
    for _ in range(-(-max_steps // execute)):
        chunk = policy.act(obs)
        live = np.flatnonzero(~solved)
        start = {k: obs[k][live] for k in ("state", "head", "wrist", "instruction")} if record else {}
        for h in range(execute):
            waypoint = np.where(solved[:, None], np.concatenate([sim.gripper, sim.grip[:, None]], 1), chunk[:, h])
            obs, success = sim.step(np.concatenate([waypoint[:, :2], (waypoint[:, 2:] > 0.5)], 1))
            solved |= success
        if record:
            for k, v in start.items():
                rows[k].append(v)
            executed = np.concatenate([chunk[:, :execute], np.repeat(chunk[:, execute - 1:execute], H - execute, 1)], 1)
            executed[..., 2] = executed[..., 2] > 0.5
            rows["chunk"].append(executed[live])
            rows["next_state"].append(obs["state"][live])
            rows["next_head"].append(obs["head"][live])
            rows["next_wrist"].append(obs["wrist"][live])
            rows["solved"].append(success[live])
        if solved.all():
            break
    out = {"success": solved}
    if record:
        out.update({k: np.concatenate(v) for k, v in rows.items()})
    return out


def evaluate(policy: ChunkPolicy, tasks: list[Task], seed: int, max_steps: int = 300,
             config: TabletopConfig | None = None) -> np.ndarray:
    """Success of each task when the policy runs chunk by chunk in the real suite."""
    return rollout(policy, tasks, seed, max_steps, config)["success"]


def bc_quality(policy: ChunkPolicy, data: dict[str, np.ndarray]) -> float:
    """Mean squared error of the predicted waypoint positions on the given demonstrations."""
    obs, targets = demo_tensors(data, policy.cfg.horizon)
    with torch.no_grad():
        waypoints, _, _ = policy(obs)
    return float(F.mse_loss(waypoints, targets[..., :2]))
