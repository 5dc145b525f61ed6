"""A FIFO replay buffer of fixed capacity, stored as preallocated tensors (no Python per transition)."""

from __future__ import annotations

import torch


class ReplayBuffer:
    """Columns given by ``spec`` (name -> per-item shape); ``add`` takes a batch, ``sample`` draws uniformly."""

    def __init__(self, capacity: int, spec: dict[str, tuple[int, ...]], device: torch.device | str = "cpu"):
        self.capacity, self.device = capacity, torch.device(device)
        self.data = {k: torch.zeros((capacity, *shape), device=self.device) for k, shape in spec.items()}
        self.size = 0
        self.next = 0  # where the next item goes (the oldest is overwritten first)

    def __len__(self) -> int:
        return self.size

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        n = len(next(iter(batch.values())))
        if n == 0:
            return
        if set(batch) != set(self.data):
            raise KeyError(f"batch columns {sorted(batch)} != buffer columns {sorted(self.data)}")
        if n > self.capacity:  # keep only the newest
            batch = {k: v[-self.capacity:] for k, v in batch.items()}
            n = self.capacity
        idx = (self.next + torch.arange(n, device=self.device)) % self.capacity
        for k, v in batch.items():
            self.data[k][idx] = v.to(self.device, self.data[k].dtype).reshape(n, *self.data[k].shape[1:])
        self.next = (self.next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device="cpu").to(self.device)
        return {k: v[idx] for k, v in self.data.items()}

    def state_dict(self) -> dict:
        return {"data": {k: v[: self.size].clone() for k, v in self.data.items()}, "next": self.next,
                "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state["data"].items():
            self.data[k][: len(v)] = v
        self.size, self.next = state["size"], state["next"]
