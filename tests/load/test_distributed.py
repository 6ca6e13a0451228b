"""Ranks get disjoint, equal parts of every epoch, re-drawn every epoch."""

from __future__ import annotations

import numpy as np
import pytest

import annshard


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_disjoint_equal_and_redrawn(coll2, world_size):
    n = coll2.adata.n_obs
    parts = {}
    for epoch in (0, 1):
        idx = []
        for rank in range(world_size):
            loader = annshard.Loader(
                coll2.path, batch_size=64, chunk_size=10, preload_nchunks=4, rank=rank, world_size=world_size
            )
            loader.set_epoch(epoch)
            rows = np.concatenate([b.index for b in loader])
            assert rows.shape[0] == n // world_size
            assert len(loader) == -(-(n // world_size) // 64)
            idx.append(rows)
            parts[(epoch, rank)] = set(rows.tolist())
        joined = np.concatenate(idx)
        assert len(np.unique(joined)) == joined.shape[0] == (n // world_size) * world_size
    assert parts[(0, 0)] != parts[(1, 0)]


def test_bad_world(coll2):
    with pytest.raises(ValueError, match="rank"):
        annshard.Loader(coll2.path, rank=2, world_size=2)
    with pytest.raises(ValueError, match="both"):
        annshard.Loader(coll2.path, rank=0)


def test_torch_distributed_detected(coll2, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    loader = annshard.Loader(coll2.path, batch_size=100)
    w = loader.world()
    assert (w.rank, w.world_size) == (1, 2)
    assert sum(b.n_obs for b in loader) == coll2.adata.n_obs // 2
