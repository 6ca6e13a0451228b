"""The Loader inside torch's DataLoader with worker processes."""

from __future__ import annotations

import os

import numpy as np
import pytest

import annshard
from annshard.samplers import RandomSampler

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _epoch(dl):
    return np.concatenate([np.asarray(b.index) for b in dl])


# torch warns when it rebuilds a sparse tensor sent from a worker without invariant checks; that is torch's default
@pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled")
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
@pytest.mark.parametrize(("method", "output"), [("spawn", "scipy"), ("forkserver", "torch")])
def test_workers_nonpersistent_new_order_every_epoch(coll2, method, output):
    loader = annshard.Loader(coll2.path, batch_size=64, chunk_size=8, preload_nchunks=6, output=output)
    dl = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2, multiprocessing_context=method)
    e0, e1 = _epoch(dl), _epoch(dl)
    n = coll2.adata.n_obs
    for e in (e0, e1):
        assert e.shape[0] == n and len(np.unique(e)) == n  # every row once, no row twice
    assert not np.array_equal(e0, e1)
    if method == "forkserver":
        return  # worker start-up is slow on 2 cores: check set_epoch under one start method only
    # set_epoch reaches the workers: epoch 0 again gives the same first batch
    loader.set_epoch(0)
    again = _epoch(dl)
    assert np.array_equal(np.sort(again), np.arange(n))
    assert set(again[:64].tolist()) == set(e0[:64].tolist())


class _Dies(RandomSampler):
    def plan(self, n_obs, *, chunk_size, seed, epoch):
        if torch.utils.data.get_worker_info() is not None and torch.utils.data.get_worker_info().id == 1:
            os._exit(3)
        return super().plan(n_obs, chunk_size=chunk_size, seed=seed, epoch=epoch)


def test_dead_worker_fails_loudly(coll2):
    loader = annshard.Loader(coll2.path, batch_size=64, sampler=_Dies())
    dl = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    with pytest.raises(RuntimeError, match="(?i)worker"):
        list(dl)
