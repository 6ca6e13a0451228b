"""The next epoch's first block read ahead at an epoch's end: used only when it is that very block, batches unchanged."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import annshard

KW = {"batch_size": 128, "chunk_size": 16, "preload_nchunks": 4, "seed": 3, "obs_columns": ["cell_type"]}


def _batches(it):
    return [(b.index.copy(), b.X.copy(), b.obs["cell_type"].copy()) for b in it]


def _same(got, want):
    assert len(got) == len(want)
    for (i1, x1, o1), (i2, x2, o2) in zip(got, want, strict=True):
        assert np.array_equal(i1, i2) and np.array_equal(o1, o2)
        assert np.array_equal(x1.indptr, x2.indptr) and np.array_equal(x1.indices, x2.indices)
        assert np.array_equal(x1.data, x2.data)


def _fresh(path, epoch, **kw):
    """The batches of ``epoch`` from a loader that never iterated (so nothing was read ahead)."""
    loader = annshard.Loader(path, **(KW | kw))
    loader.set_epoch(epoch)
    return _batches(loader)


def _record_reads(loader):
    """Record which thread reads each block (the reader's own read runs; nothing replaced)."""
    reader = loader._reader.get()
    names: list[str] = []
    read = reader.read

    def recorded(chunks, pool=None, **kw):
        names.append(threading.current_thread().name)
        return read(chunks, pool, **kw)

    reader.read = recorded
    return names


def test_back_to_back_epochs_read_ahead_and_match_fresh_loaders(coll2):
    loader = annshard.Loader(coll2.path, **KW)
    names = _record_reads(loader)
    n_blocks = loader.stream(0).n_blocks
    for epoch in range(3):
        before = len(names)
        _same(_batches(loader), _fresh(coll2.path, epoch))
        reads = names[before:]
        # the epoch's last read is the next epoch's first block, in the read-ahead thread
        assert reads[-1] == "annshard-read-next", reads
        # and every epoch after the first took its first block from there: the stage reads the others
        assert reads.count("annshard-read") == (n_blocks if epoch == 0 else n_blocks - 1), reads


@pytest.mark.parametrize("ask", ["set_epoch", "resume_in_first_block", "resume_later", "resume_same_epoch"])
def test_the_next_iteration_asking_for_something_else_gets_exactly_that(coll2, ask):
    loader = annshard.Loader(coll2.path, **KW)
    _batches(loader)  # epoch 0; epoch 1's first block is read ahead
    if ask == "set_epoch":
        loader.set_epoch(5)
        want = _fresh(coll2.path, 5)
    else:
        epoch, rows = {"resume_in_first_block": (1, 20), "resume_later": (1, 200), "resume_same_epoch": (0, 20)}[ask]
        state = {"seed": KW["seed"], "epoch": epoch, "rows_consumed": rows}
        loader.load_state_dict(state)
        ref = annshard.Loader(coll2.path, **KW)
        ref.load_state_dict(state)
        want = _batches(ref)
    _same(_batches(loader), want)
    assert len(want) > 0


def test_ranks_read_ahead_their_own_part(coll2):
    loaders = [annshard.Loader(coll2.path, rank=r, world_size=2, **KW) for r in range(2)]
    for epoch in range(2):
        for r, loader in enumerate(loaders):
            _same(_batches(loader), _fresh(coll2.path, epoch, rank=r, world_size=2))


def test_an_iteration_left_early_drops_the_read_ahead(coll2):
    loader = annshard.Loader(coll2.path, **KW)
    n = len(loader)
    it = iter(loader)
    for _ in range(n):  # every batch, so the last block was read and the read-ahead started; no StopIteration yet
        next(it)
    it.close()
    assert loader._reader._head is None
    assert not [t for t in threading.enumerate() if t.name.startswith("annshard-")]
    _same(_batches(loader), _fresh(coll2.path, 1))


def test_a_pickled_loader_carries_no_read_ahead(coll2):
    import pickle

    loader = annshard.Loader(coll2.path, **KW)
    _batches(loader)
    assert loader._reader._head is not None
    copy = pickle.loads(pickle.dumps(loader))
    assert copy._reader._head is None
    _same(_batches(copy), _fresh(coll2.path, 1))
