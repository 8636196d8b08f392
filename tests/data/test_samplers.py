"""The non-padding evaluation sampler: every index exactly once over all ranks."""

from __future__ import annotations

import pytest
from torch.utils.data import DistributedSampler

from seglit.data.samplers import UnpaddedDistributedSampler


@pytest.mark.parametrize("size", [0, 1, 2, 5, 7, 11])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_every_index_exactly_once(size, world_size):
    data = range(size)
    shards = [list(UnpaddedDistributedSampler(data, world_size, r)) for r in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(size))
    assert [len(UnpaddedDistributedSampler(data, world_size, r)) for r in range(world_size)] == [
        len(s) for s in shards
    ]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_torch_default_pads_where_ours_does_not():
    # The reason this sampler exists: 5 samples over 2 ranks -> torch scores one twice.
    torch_indices = [i for r in range(2) for i in DistributedSampler(range(5), 2, r, shuffle=False)]
    assert len(torch_indices) == 6
    ours = [i for r in range(2) for i in UnpaddedDistributedSampler(range(5), 2, r)]
    assert sorted(ours) == [0, 1, 2, 3, 4]


def test_needs_a_world_or_explicit_rank():
    with pytest.raises(RuntimeError, match="process group"):
        UnpaddedDistributedSampler(range(3))
    with pytest.raises(ValueError, match="invalid rank"):
        UnpaddedDistributedSampler(range(3), num_replicas=2, rank=2)
