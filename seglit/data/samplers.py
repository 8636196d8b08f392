"""Samplers for evaluation under DDP."""

from __future__ import annotations

from collections.abc import Iterator

import torch.distributed as dist
from torch.utils.data import Sampler


class UnpaddedDistributedSampler(Sampler[int]):
    """Shard a dataset over processes without padding: every index exactly once overall.

    torch's ``DistributedSampler`` repeats samples so that every rank gets the same count, which
    scores some validation images twice. This sampler gives rank ``r`` the indices
    ``r, r + world_size, r + 2 * world_size, ...`` in order, so ranks may differ by one sample and
    a dataset-level metric summed over ranks equals the single-process one.

    Args:
        dataset: anything with ``__len__``.
        num_replicas: world size (default: from ``torch.distributed``).
        rank: this process's rank (default: from ``torch.distributed``).
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None):
        if num_replicas is None or rank is None:
            if not (dist.is_available() and dist.is_initialized()):
                raise RuntimeError(
                    "UnpaddedDistributedSampler needs num_replicas and rank, or an initialised "
                    "torch.distributed process group"
                )
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} for num_replicas {num_replicas}")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        """Accepted for API compatibility with ``DistributedSampler``; the order never changes."""
