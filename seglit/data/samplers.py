"""Samplers: seeded training order and augmentations, unpadded evaluation under DDP."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

# Both samplers subclass torch's DistributedSampler so that Lightning leaves them alone
# whatever the Trainer's `use_distributed_sampler`: Lightning only replaces or wraps a
# sampler that is not a DistributedSampler (a wrapper would shard them a second time).


class UnpaddedDistributedSampler(DistributedSampler):
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
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        """Accepted for API compatibility with ``DistributedSampler``; the order never changes."""


class SeededSampler(DistributedSampler):
    """Training sampler whose order and augmentations are a pure function of (seed, epoch).

    Shuffles (and shards over DDP ranks, like ``DistributedSampler``) from ``seed + epoch``
    and yields ``(index, sample_seed)`` pairs; :class:`SeededDataset` reseeds the
    augmentation pipeline with ``sample_seed`` before it transforms the sample. A run is
    then reproducible from its seed whatever the number of DataLoader workers, and a run
    resumed at an epoch boundary sees exactly the batches the uninterrupted run would have.
    Lightning calls :meth:`set_epoch` at the start of every epoch.

    Args:
        dataset: anything with ``__len__``.
        seed: the run's seed.
        num_replicas: number of DDP processes.
        rank: this process's rank.
    """

    def __init__(self, dataset, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} for num_replicas {num_replicas}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, seed=seed, drop_last=True)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentations to yield."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset) // self.num_replicas

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator)
        sample_seeds = torch.randint(0, 2**31 - 1, (len(self.dataset),), generator=generator)
        # Every rank sees the same number of samples (the ragged tail is dropped).
        usable = len(self) * self.num_replicas
        for position in range(self.rank, usable, self.num_replicas):
            index = int(order[position])
            yield index, int(sample_seeds[index])


class SeededDataset(Dataset):
    """Wraps a training dataset: ``dataset[(index, seed)]`` reseeds its transform, then reads.

    Args:
        dataset: a dataset with an albumentations ``transform`` attribute.
    """

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        transform = getattr(self.dataset, "transform", None)
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(seed)
        return self.dataset[index]
