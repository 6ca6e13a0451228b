"""GPU preload on a real CUDA device: batches equal the host pipeline's, pinned staging reused, copies on their own stream.

Skipped without CUDA (and the cupy tests without cupy); ``benchmarks/gpu_check.sh`` runs this file on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import annshard

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)"
    ),
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state"),
]


def _np(x):
    if isinstance(x, torch.Tensor):
        if x.layout == torch.sparse_csr:
            return [x.crow_indices().cpu().numpy(), x.col_indices().cpu().numpy(), x.values().cpu().numpy()]
        return [x.cpu().numpy()]
    if sp.issparse(x):
        return [x.indptr, x.indices, x.data]
    if hasattr(x, "indptr"):  # cupyx CSR
        return [x.indptr.get(), x.indices.get(), x.data.get()]
    if hasattr(x, "get"):  # cupy
        return [x.get()]
    return [np.asarray(x)]


def _same(host, device, *, check_dtype=True):
    assert len(host) == len(device)
    for a, b in zip(host, device, strict=True):
        pairs = [(a.X, b.X), (a.index, b.index)] + [(a.obs[k], b.obs[k]) for k in a.obs]
        pairs += [(a.layers[k], b.layers[k]) for k in a.layers]
        for p, q in pairs:
            for u, v in zip(_np(p), _np(q), strict=True):
                assert not check_dtype or u.dtype == v.dtype
                np.testing.assert_array_equal(u, v)


KW = {"batch_size": 200, "chunk_size": 8, "preload_nchunks": 5, "obs_columns": ["cell_type"], "seed": 3}


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_cuda_batches(coll, dense):
    loader = annshard.Loader(
        coll.path, batch_size=256, output="torch", device="cuda", dense=dense, obs_columns=["cell_type"]
    )
    seen = []
    for batch in loader:
        assert batch.X.device.type == "cuda" and batch.obs["cell_type"].device.type == "cuda"
        assert batch.index.device.type == "cuda"
        idx = batch.index.cpu().numpy()
        x = batch.X if dense else batch.X.to_dense()
        np.testing.assert_array_equal(x.cpu().numpy(), coll.X[idx].toarray())
        seen.append(idx)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(coll.adata.n_obs))


@pytest.mark.parametrize("gather", ["device", "host"])
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_cuda_preload_equals_host(coll, gather, dense):
    host = list(annshard.Loader(coll.path, output="torch", dense=dense, layers=["counts"], **KW))
    loader = annshard.Loader(
        coll.path, output="torch", device="cuda", gather=gather, dense=dense, layers=["counts"], **KW
    )
    device = list(loader)
    assert (loader._ops is not None) == (gather == "device")
    assert all(b.X.device.type == "cuda" and b.layers["counts"].device.type == "cuda" for b in device)
    _same(host, device)


def test_pinned_staging_reused_across_blocks_and_epochs(coll):
    loader = annshard.Loader(coll.path, output="torch", device="cuda", **KW)
    list(loader)
    ops = loader._ops.get()
    first = [id(b) for s in ops._staging._sets for _, b in s.values()]
    assert first and all(b.is_pinned() for s in ops._staging._sets for _, b in s.values())
    list(loader)
    assert [id(b) for s in ops._staging._sets for _, b in s.values()] == first  # no new pinned buffer


def test_copy_runs_on_its_own_stream(coll):
    from annshard._load._xp import TorchOps

    ops = TorchOps("cuda")
    assert ops._stream != torch.cuda.current_stream()
    arrays = [np.arange(1 << 20, dtype=np.int64), np.arange(1000, dtype=np.uint16).reshape(10, 100)]
    handle = ops.put(arrays)
    assert handle[1] is not None  # the copy's event, recorded on the copy stream
    out = ops.ready(handle)
    for a, t in zip(arrays, out, strict=True):
        assert t.device.type == "cuda" and tuple(t.shape) == a.shape
        np.testing.assert_array_equal(
            t.view(torch.int16).cpu().numpy().view(a.dtype) if a.dtype == np.uint16 else t.cpu().numpy(), a
        )


def test_cupy_preload_equals_host(coll):
    cp = pytest.importorskip("cupy")
    host = list(annshard.Loader(coll.path, output="scipy", **KW))
    device = list(annshard.Loader(coll.path, output="cupy", device="cuda", **KW))
    assert isinstance(device[0].index, cp.ndarray)
    _same(host, device, check_dtype=False)
