"""Multilayer perceptrons, single and ensembled (E independent members in one batched matmul)."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2,
        activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden``, then a linear output."""
    dims = [in_dim] + [hidden] * layers
    modules: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        modules += [nn.Linear(a, b), activation()]
    modules.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*modules)


class EnsembleLinear(nn.Module):
    """E independent linear maps applied with one ``baddbmm``: x (E, B, in) -> (E, B, out)."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, member by member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x_EBI: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x_EBI, self.weight)


class EnsembleMLP(nn.Module):
    """E MLPs of the same shape, evaluated together; input (E, B, in) or (B, in) (shared by all)."""

    def __init__(self, members: int, in_dim: int, hidden: int, out_dim: int, layers: int = 4):
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        self.hidden = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.out = EnsembleLinear(members, dims[-1], out_dim)
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        for layer in self.hidden:
            x = nn.functional.silu(layer(x))  # SiLU (swish), as in PETS / MBPO's ensembles
        return self.out(x)
