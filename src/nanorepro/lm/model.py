"""A Nemotron-H-style hybrid language model: Mamba-2, attention and (Latent)MoE layers, plus MTP.

Nemotron 3 Super (NVIDIA, arXiv 2604.12374): each layer is one mixer with a pre-RMSNorm and
a residual; the layer pattern says which (``M`` Mamba-2, ``*`` attention without positional
encoding, ``E`` MoE, ``-`` dense relu2 MLP); embeddings and head are untied; no biases.

Parameter names follow Hugging Face ``NemotronHForCausalLM`` (``model.embeddings``,
``model.layers.{i}.norm``, ``model.layers.{i}.mixer.*``, ``model.norm_f``, ``lm_head``), so
weights load into the reference implementation (``HybridConfig.to_hf``).

Multi-token prediction (DeepSeek-V3 style, one physical block unrolled for ``mtp_depths``
depths with shared weights; our reconstruction of the block's layout):

    g^k_i = MTP(eh_proj([enorm(embed(t_{i+k})); hnorm(g^{k-1}_i)])),  g^0 = the main model's last hidden
    p(t_{i+k+1}) = softmax(lm_head(MTP.norm(g^k_i)))

where MTP is an attention layer and an MoE layer (``mtp_pattern``). The MTP loss is
``mtp_loss_weight`` times the mean over depths.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nanorepro.nn.attention import Attention, KVCache
from nanorepro.nn.mamba2 import Mamba2Mixer, MambaCache
from nanorepro.nn.moe import MLP, MoE
from nanorepro.nn.norms import RMSNorm

PAD, BOS, EOS = 256, 257, 258


@dataclass(frozen=True)
class HybridConfig:
    vocab_size: int = 260  # 256 bytes + pad, bos, eos, one spare
    hidden_size: int = 256
    pattern: str = "MEMEM*EMEM*E"
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    head_dim: int = 32
    rope_theta: float | None = None  # None: no positional encoding (NoPE), as Nemotron-H
    mamba_num_heads: int = 16
    mamba_head_dim: int = 32
    ssm_state_size: int = 32
    n_groups: int = 2
    conv_kernel: int = 4
    chunk_size: int = 64
    moe: Literal["latent", "standard"] = "latent"
    n_routed_experts: int = 32
    num_experts_per_tok: int = 8
    moe_latent_size: int = 64
    moe_intermediate_size: int = 128
    moe_shared_expert_intermediate_size: int = 256
    routed_scaling_factor: float = 2.5
    intermediate_size: int = 576  # dense MLP ("-") width
    aux_loss_coef: float = 1e-4
    mtp_depths: int = 2  # 0: no MTP block
    mtp_pattern: str = "*E"
    mtp_loss_weight: float = 0.3
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02

    def validate(self) -> None:
        if set(self.pattern + self.mtp_pattern) - set("ME*-"):
            raise ValueError(f"layer patterns may only contain M, E, *, -: {self.pattern!r}, {self.mtp_pattern!r}")
        if self.num_attention_heads % self.num_key_value_heads or self.mamba_num_heads % self.n_groups:
            raise ValueError("heads must divide evenly into KV heads and Mamba groups")

    @classmethod
    def named(cls, size: str, **changes) -> HybridConfig:
        """Named sizes (like torchtitan's): "debug" for tests, "cpu" the experiment's (d = 128),
        "nano" the notes' tiny design (d = 256)."""
        if size not in NAMED_SIZES:
            raise ValueError(f"unknown size {size!r} (known: {', '.join(NAMED_SIZES)})")
        return cls(**{**NAMED_SIZES[size], **changes})

    def to_hf(self) -> dict:
        """Keyword arguments of HF ``NemotronHConfig`` for the same main model (MTP excluded)."""
        hf = {"vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
              "hybrid_override_pattern": self.pattern, "num_attention_heads": self.num_attention_heads,
              "num_key_value_heads": self.num_key_value_heads, "head_dim": self.head_dim,
              "mamba_num_heads": self.mamba_num_heads, "mamba_head_dim": self.mamba_head_dim,
              "ssm_state_size": self.ssm_state_size, "n_groups": self.n_groups, "conv_kernel": self.conv_kernel,
              "chunk_size": self.chunk_size, "n_routed_experts": self.n_routed_experts,
              "num_experts_per_tok": self.num_experts_per_tok, "moe_intermediate_size": self.moe_intermediate_size,
              "moe_shared_expert_intermediate_size": self.moe_shared_expert_intermediate_size,
              "n_shared_experts": 1, "routed_scaling_factor": self.routed_scaling_factor,
              "intermediate_size": self.intermediate_size, "mlp_hidden_act": "relu2", "norm_topk_prob": True,
              "n_group": 1, "topk_group": 1, "layer_norm_epsilon": self.layer_norm_epsilon,
              "tie_word_embeddings": False, "pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS,
              "num_nextn_predict_layers": 0}
        hf["moe_latent_size"] = self.moe_latent_size if self.moe == "latent" else None
        return hf


NAMED_SIZES: dict[str, dict] = {
    "debug": dict(hidden_size=32, pattern="MEM*E-", num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                  mamba_num_heads=4, mamba_head_dim=8, ssm_state_size=8, n_groups=2, chunk_size=8,
                  n_routed_experts=8, num_experts_per_tok=2, moe_latent_size=16, moe_intermediate_size=16,
                  moe_shared_expert_intermediate_size=32, intermediate_size=48),
    "nano": {},  # the defaults: d 256, MEMEM*EMEM*E, LatentMoE 32 experts top-8 in a 64-wide latent
    # d = 128: LatentMoE 32 experts top-8, m = 64, l = 32: routed 8*2*32*64 + 2*128*32 = 40,960 MACs;
    # standard MoE 8 experts top-2, m = 80, full width: 2*2*128*80 = 40,960; both plus a shared
    # 128 -> 128 expert (32,768). Dense: width 288 = (40,960 + 32,768) / 256. Equal active MACs.
    "cpu": dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                mamba_num_heads=8, mamba_head_dim=32, ssm_state_size=32, n_groups=2, chunk_size=64,
                n_routed_experts=32, num_experts_per_tok=8, moe_latent_size=32, moe_intermediate_size=64,
                moe_shared_expert_intermediate_size=128, intermediate_size=288),
}


def make_mixer(kind: str, cfg: HybridConfig) -> nn.Module:
    if kind == "M":
        return Mamba2Mixer(cfg.hidden_size, cfg.mamba_num_heads, cfg.mamba_head_dim, cfg.ssm_state_size,
                           cfg.n_groups, cfg.conv_kernel, cfg.chunk_size, eps=cfg.layer_norm_epsilon)
    if kind == "*":
        return Attention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
                         cfg.rope_theta)
    if kind == "E":
        return MoE(cfg.hidden_size, cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.moe_intermediate_size,
                   cfg.moe_shared_expert_intermediate_size, cfg.moe_latent_size if cfg.moe == "latent" else None,
                   cfg.routed_scaling_factor, cfg.aux_loss_coef)
    return MLP(cfg.hidden_size, cfg.intermediate_size)


class Block(nn.Module):
    """x + mixer(RMSNorm(x))."""

    def __init__(self, kind: str, cfg: HybridConfig):
        super().__init__()
        self.kind = kind
        self.norm = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.mixer = make_mixer(kind, cfg)

    def forward(self, x: torch.Tensor, cache=None, keep_states: bool = False) -> torch.Tensor:
        h = self.norm(x)
        if self.kind == "M":
            return x + self.mixer(h, cache, keep_states=keep_states)
        if self.kind == "*":
            return x + self.mixer(h, cache)
        return x + self.mixer(h)

    def empty_cache(self, batch: int, device=None, dtype=torch.float32):
        return self.mixer.empty_cache(batch, device, dtype) if self.kind in "M*" else None


class HybridCache:
    """Per-layer decode state (MambaCache, KVCache or None) and the number of tokens it holds."""

    def __init__(self, blocks, batch: int, device=None, dtype=torch.float32):
        self.layers = [block.empty_cache(batch, device, dtype) for block in blocks]
        self.length = 0

    def accept(self, start: int, n: int) -> None:
        """After a multi-token step from length ``start`` with keep_states: keep its first ``n`` tokens."""
        for layer in self.layers:
            if isinstance(layer, MambaCache):
                layer.accept(n)
            elif isinstance(layer, KVCache):
                layer.truncate(start + n)
        self.length = start + n

    def nbytes(self) -> int:
        total = 0
        for layer in self.layers:
            if isinstance(layer, MambaCache):
                total += layer.conv.nbytes + layer.ssm.nbytes
            elif isinstance(layer, KVCache):
                total += layer.k.nbytes + layer.v.nbytes
        return total


class Backbone(nn.Module):
    def __init__(self, cfg: HybridConfig):
        super().__init__()
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(kind, cfg) for kind in cfg.pattern)
        self.norm_f = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)


class MTPBlock(nn.Module):
    """One shared-weight MTP block: eh_proj([enorm(e); hnorm(h)]) -> its layers -> norm."""

    def __init__(self, cfg: HybridConfig):
        super().__init__()
        self.enorm = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.hnorm = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.eh_proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.layers = nn.ModuleList(Block(kind, cfg) for kind in cfg.mtp_pattern)
        self.norm = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)

    def forward(self, h_prev: torch.Tensor, emb_next: torch.Tensor, caches=None) -> torch.Tensor:
        x = self.eh_proj(torch.cat([self.enorm(emb_next), self.hnorm(h_prev)], dim=-1))
        for i, layer in enumerate(self.layers):
            x = layer(x, None if caches is None else caches[i])
        return x


class HybridLM(nn.Module):
    def __init__(self, cfg: HybridConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.mtp = MTPBlock(cfg) if cfg.mtp_depths > 0 else None
        self.apply(self._init)
        # Residual-branch outputs scaled by 1/sqrt(layers) (HF's rescale_prenorm_residual).
        scale = 1.0 / math.sqrt(len(cfg.pattern))
        for name, p in self.named_parameters():
            if name.endswith(("out_proj.weight", "o_proj.weight", "down_proj.weight", "fc2_latent_proj.weight")):
                with torch.no_grad():
                    p.mul_(scale)

    def _init(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        if hasattr(module, "up_proj") and isinstance(module.up_proj, nn.Parameter):  # routed experts
            nn.init.normal_(module.up_proj, std=std)
            nn.init.normal_(module.down_proj, std=std)

    def new_cache(self, batch: int, device=None, dtype=torch.float32) -> HybridCache:
        return HybridCache(self.model.layers, batch, device, dtype)

    def forward(self, ids: torch.Tensor, cache: HybridCache | None = None, keep_states: bool = False):
        """-> (logits (b, T, V), last hidden before the final norm (b, T, d)). With a cache: the next tokens."""
        x = self.model.embeddings(ids)
        for i, block in enumerate(self.model.layers):
            x = block(x, None if cache is None else cache.layers[i], keep_states)
        if cache is not None:
            cache.length += ids.shape[1]
        return self.lm_head(self.model.norm_f(x)), x

    def mtp_logits(self, h_prev: torch.Tensor, next_ids: torch.Tensor, caches=None):
        """One MTP depth: -> (logits, new hidden g)."""
        g = self.mtp(h_prev, self.model.embeddings(next_ids), caches)
        return self.lm_head(self.mtp.norm(g)), g

    def pop_aux_loss(self) -> torch.Tensor:
        """Sum of the MoE balance losses of every forward since the last call (and forget them)."""
        losses = []
        for m in self.modules():
            if isinstance(m, MoE):
                losses += m.aux_losses
                m.aux_losses = []
        return torch.stack(losses).sum() if losses else torch.zeros(())

    def loss(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Next-token CE + MoE balance loss + MTP: depth k predicts t_{i+k+1} from g^k_i."""
        logits, h = self(ids[:, :-1])
        ce = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        parts = {"ce": ce.detach()}
        total = ce
        if self.mtp is not None:
            mtp_losses = []
            g, T = h, ids.shape[1] - 1
            for k in range(1, self.config.mtp_depths + 1):
                valid = T - k  # positions i with a target t_{i+k+1} inside the window
                if valid <= 0:
                    break
                k_logits, g = self.mtp_logits(g[:, :valid], ids[:, k : k + valid])
                mtp_losses.append(F.cross_entropy(k_logits.flatten(0, 1), ids[:, k + 1 : k + 1 + valid].flatten()))
            mtp = torch.stack(mtp_losses).mean()
            parts["mtp"] = mtp.detach()
            total = total + self.config.mtp_loss_weight * mtp
        return total + self.pop_aux_loss(), parts

    def num_parameters(self, active: bool = False) -> int:
        """All parameters, or those a token touches (routed experts counted K of E)."""
        total = sum(p.numel() for p in self.parameters())
        if not active:
            return total
        for m in self.modules():
            if isinstance(m, MoE):
                E, K = m.gate.weight.shape[0], m.gate.top_k
                routed = m.experts.up_proj.numel() + m.experts.down_proj.numel()
                total -= routed * (E - K) // E
        return total


HIGH_PRECISION = ("q_proj", "k_proj", "v_proj", "o_proj", "fc1_latent_proj", "fc2_latent_proj", "out_proj")


def use_nvfp4(model: HybridLM, recipe, high_precision_last: int = 1) -> dict:
    """Nemotron 3 Super's precision map, emulated: NVFP4 for Mamba in_proj, routed and shared
    experts and dense MLPs; high precision for attention and latent projections, Mamba out_proj
    (MXFP8 in Super; not emulated), MTP, embeddings and head, and the last ``high_precision_last``
    layers. Returns how many linear layers and expert groups were converted."""
    from nanorepro.nn.moe import Experts
    from nanorepro.nn.nvfp4 import convert_linears

    n_layers = len(model.model.layers)

    def keep(name: str) -> bool:
        if name.startswith(("mtp", "lm_head")) or any(part in name for part in HIGH_PRECISION):
            return True
        parts = name.split(".")
        return name.startswith("model.layers.") and int(parts[2]) >= n_layers - high_precision_last

    linears = convert_linears(model, recipe, keep)
    experts = 0
    for name, module in model.named_modules():
        if isinstance(module, Experts) and not keep(name):
            module.recipe = recipe
            experts += 1
    return {"nvfp4_linear_layers": linears, "nvfp4_expert_groups": experts}


def hf_state_dict(model: HybridLM) -> dict[str, torch.Tensor]:
    """Our weights under HF NemotronH names (the main model; ``mtp.*`` dropped, as HF does)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("mtp.")}


def config_dict(cfg: HybridConfig) -> dict:
    return asdict(cfg)
