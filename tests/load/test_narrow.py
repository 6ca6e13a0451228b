"""Raw counts kept as stored in the block and widened by the batch gather: the same batches as widening on read."""

from __future__ import annotations

import numpy as np
import pytest

import annshard
from annshard import _kernel
from annshard._load._fetch import BlockReader
from annshard._load._union import ShardRef
from annshard.testing import make_adata

pytest.importorskip("numba")

KW = {"batch_size": 70, "chunk_size": 8, "preload_nchunks": 6, "seed": 4, "read_threads": 1}


@pytest.fixture(scope="module", params=["none", None], ids=["raw", "compressed"])
def counts_layers(request, tmp_path_factory):
    """Counts in X and in a layer (both stored as integers), a dense obsm array; uncompressed or compressed."""
    a = make_adata(700, 120, nnz_per_cell=25, seed=8)
    a.layers["counts"] = a.X * 3
    a.obsm["emb"] = np.random.default_rng(1).standard_normal((a.n_obs, 5)).astype(np.float32)
    path = tmp_path_factory.mktemp("narrow") / "c.zarr"
    return annshard.write_collection(
        [a], path, layers=["counts"], obsm=["emb"], storage={"counts_codec": request.param}, n_obs_per_shard=256
    )


def _batches(coll, **kw):
    """The loader's batches, and the dtypes of the values of every block its reader read (X, the layer)."""
    loader = annshard.Loader(coll, layers=["counts"], obsm=["emb"], **KW, **kw)
    reader = loader._reader.get()
    read, seen = reader.read, []

    def recorded(chunks, pool=None, **kw):
        block = read(chunks, pool, **kw)
        seen.append((block.data.dtype.name, block.extras["layers/counts"].data.dtype.name))
        return block

    reader.read = recorded
    return [(b.X, b.layers["counts"], b.obsm["emb"], np.asarray(b.index)) for b in loader], set(seen)


def _dense(x):
    if hasattr(x, "to_dense"):  # torch
        return x.to_dense().numpy()
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


@pytest.mark.parametrize(
    "out", [{}, {"output": "numpy"}, {"output": "torch"}, {"output": "torch", "dense": False}], ids=str
)
def test_narrow_blocks_give_the_same_batches(counts_layers, aot, monkeypatch, out):
    if out.get("output") == "torch":
        pytest.importorskip("torch")
    stored = {(m.group, m.name): m.storage.counts_dtype for m in counts_layers.manifest.matrices}
    assert stored == {("layers", "counts"): "uint16", ("obsm", "emb"): None}  # the layer holds counts too
    assert counts_layers.manifest.storage.counts_dtype == "uint16"
    got, seen = _batches(counts_layers, **out)
    assert seen == {("uint16", "uint16")}  # every block kept them as stored
    monkeypatch.setenv(_kernel.GATHER_ENV, "scipy")  # no kernel: the blocks hold float32, as before
    want, seen = _batches(counts_layers, **out)
    assert seen == {("float32", "float32")}
    assert len(got) == len(want) > 5
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            assert type(a) is type(b) and a.dtype == b.dtype
            np.testing.assert_array_equal(_dense(a), _dense(b))
        if not out:  # scipy CSR: the same structure, not only the same values
            np.testing.assert_array_equal(g[0].indices, w[0].indices)
            np.testing.assert_array_equal(g[0].indptr, w[0].indptr)


def test_only_the_host_gather_asks_for_narrow_blocks(counts_layers, aot):
    """``BlockReader.read`` widens unless asked (the device preload uploads blocks as they are)."""
    coll = annshard.open_collection(counts_layers.path)
    refs, offset = [], 0
    for i, info in enumerate(coll.shards):
        refs.append(ShardRef(collection=coll, shard=i, offset=offset))
        offset += info.n_obs
    reader = BlockReader(refs, threads=1, extras=["layers/counts", "obsm/emb"])
    chunks = np.array([[0, 5, 40], [1, 0, 30], [2, 100, 101]], dtype=np.int64)
    wide, narrow = reader.read(chunks), reader.read(chunks, narrow=True)
    assert wide.data.dtype == np.float32 and wide.dtype is None
    assert narrow.data.dtype == np.uint16 and narrow.dtype == np.float32
    assert narrow.extras["layers/counts"].data.dtype == np.uint16
    assert narrow.extras["obsm/emb"].data.dtype == np.float32  # dense: as stored
    np.testing.assert_array_equal(narrow.data.astype(np.float32), wide.data)
    np.testing.assert_array_equal(narrow.indices, wide.indices)
    np.testing.assert_array_equal(narrow.extras["layers/counts"].data, wide.extras["layers/counts"].data)
