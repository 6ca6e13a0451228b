"""The device gather (``gather="device"``) yields exactly the host pipeline's batches, with numpy and torch on the CPU.

These run the very code a GPU runs (annshard._load._device over annshard._load._xp); only the device differs.
tests/load/test_gpu.py runs the same comparisons on a CUDA device.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import annshard
from annshard._load._device import uses_device_gather

torch = pytest.importorskip("torch")

OBS = ["cell_type", "n_genes", "total_counts"]
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")


def parts(x) -> dict[str, np.ndarray]:
    """The arrays a matrix is made of, as numpy (dtypes kept): CSR parts, or the dense values."""
    if isinstance(x, torch.Tensor):
        if x.layout == torch.sparse_csr:
            return {
                "indptr": x.crow_indices().cpu().numpy(),
                "indices": x.col_indices().cpu().numpy(),
                "data": x.values().cpu().numpy(),
            }
        return {"dense": x.cpu().numpy()}
    if sp.issparse(x):
        return {"indptr": x.indptr, "indices": x.indices, "data": x.data}
    return {"dense": np.asarray(x)}


def flat(batch) -> dict[str, np.ndarray]:
    out = {f"X/{k}": v for k, v in parts(batch.X).items()}
    for kind in ("layers", "obsm"):
        for name, x in getattr(batch, kind).items():
            out |= {f"{kind}/{name}/{k}": v for k, v in parts(x).items()}
    for name, v in batch.obs.items():
        out[f"obs/{name}"] = v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    out["index"] = batch.index.cpu().numpy() if isinstance(batch.index, torch.Tensor) else batch.index
    return out


def assert_same(host: list, device: list) -> None:
    assert len(host) == len(device)
    for i, (a, b) in enumerate(zip(host, device, strict=True)):
        fa, fb = flat(a), flat(b)
        assert fa.keys() == fb.keys(), i
        for k in fa:
            assert fa[k].dtype == fb[k].dtype, (i, k, fa[k].dtype, fb[k].dtype)
            np.testing.assert_array_equal(fa[k], fb[k], err_msg=f"batch {i}, {k}")


def both(path, **kw) -> tuple[list, list]:
    host = list(annshard.Loader(path, gather="host", **kw))
    device = list(annshard.Loader(path, gather="device", **kw))
    return host, device


# batch 128 from blocks of 8 * 5 = 40 rows: every batch spans blocks
SMALL = {"batch_size": 128, "chunk_size": 8, "preload_nchunks": 5}


@pytest.mark.parametrize(
    ("output", "sampler", "drop_last"),
    [(o, s, d) for o in ("scipy", "torch") for s in ("random", "sequential") for d in (False, True)]
    + [("numpy", "random", False)],
)
def test_device_gather_equals_host(coll, output, sampler, drop_last):
    kw = {**SMALL, "output": output, "sampler": sampler, "drop_last": drop_last, "obs_columns": OBS, "seed": 4}
    host, device = both(coll.path, layers=["counts"], **kw)
    assert_same(host, device)
    assert len(host) == (23 if drop_last else 24)  # 3000 rows


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_torch_layers_and_obsm(layer_sources, tmp_path, dense):
    path = tmp_path / "c.zarr"
    annshard.write_collection(
        {k: layer_sources[k][0] for k in ("a.h5ad", "b.zarr")},
        path,
        join="outer",
        layers=["counts", "dense_l"],
        obsm=["X_pca", "X_umap"],
        n_obs_per_shard=140,
    )
    kw = {"batch_size": 48, "chunk_size": 10, "preload_nchunks": 3, "layers": ["counts", "dense_l"]}
    host, device = both(path, obsm=["X_pca", "X_umap"], output="torch", dense=dense, **kw)
    assert_same(host, device)
    assert set(device[0].layers) == {"counts", "dense_l"} and device[0].obsm["X_pca"].shape[1] == 6


@pytest.mark.parametrize("output", ["numpy", "torch"])
def test_dense_collection(dense_coll, output):
    assert_same(*both(dense_coll.path, batch_size=64, chunk_size=8, preload_nchunks=3, output=output))


def test_uint16_counts(counts_coll):
    """Counts stored as uint16, gene indices as uint16: torch gathers unsigned arrays through a signed view."""
    host, device = both(counts_coll.path, batch_size=70, chunk_size=16, preload_nchunks=2, output="torch")
    assert_same(host, device)


@pytest.mark.parametrize("output", ["scipy", "torch"])
def test_several_collections_and_world_splits(coll, coll2, output):
    for rank in range(3):
        kw = {**SMALL, "output": output, "rank": rank, "world_size": 3, "obs_columns": ["cell_type"], "seed": 9}
        host, device = both([coll.path, coll2.path], **kw)
        assert_same(host, device)
        assert sum(b.n_obs for b in device) == (3000 + 1100) // 3


@pytest.mark.parametrize("output", ["scipy", "torch"])
def test_resume_mid_epoch(coll, output):
    kw = {**SMALL, "output": output, "obs_columns": ["cell_type"], "seed": 2}
    full = list(annshard.Loader(coll.path, gather="host", **kw))
    loader = annshard.Loader(coll.path, gather="device", **kw)
    it = iter(loader)
    head = [next(it) for _ in range(7)]
    state = loader.state_dict()
    it.close()
    resumed = annshard.Loader(coll.path, gather="device", **kw)
    resumed.load_state_dict(state)
    assert_same(full, head + list(resumed))


def test_second_epoch_and_pickled_loader(coll):
    kw = {**SMALL, "output": "torch", "obs_columns": ["cell_type"], "seed": 1}
    host = annshard.Loader(coll.path, gather="host", **kw)
    device = annshard.Loader(coll.path, gather="device", **kw)
    list(host), list(device)  # epoch 0
    copy = pickle.loads(pickle.dumps(device))
    assert_same(list(host), list(copy))  # epoch 1, in a copy that builds its own ops


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch_size=st.integers(1, 300),
    chunk_size=st.integers(1, 40),
    preload_nchunks=st.integers(1, 9),
    seed=st.integers(0, 2**16),
    drop_last=st.booleans(),
    output=st.sampled_from(["scipy", "torch"]),
)
def test_any_sizes(coll2, batch_size, chunk_size, preload_nchunks, seed, drop_last, output):
    kw = {"chunk_size": chunk_size, "preload_nchunks": preload_nchunks, "seed": seed, "drop_last": drop_last}
    assert_same(*both(coll2.path, batch_size=batch_size, output=output, obs_columns=["donor"], **kw))


def test_gather_defaults_and_errors(coll):
    assert uses_device_gather(None, "torch", "cuda") and uses_device_gather(None, "cupy", "cuda:1")
    assert not uses_device_gather(None, "torch", None) and not uses_device_gather(None, "torch", "cpu")
    assert not uses_device_gather("host", "torch", "cuda") and uses_device_gather("device", "scipy", None)
    with pytest.raises(ValueError, match="gather must be 'host', 'device' or None"):
        annshard.Loader(coll.path, gather="gpu")
    assert annshard.Loader(coll.path, gather="device").settings()["gather"] == "device"


@settings(max_examples=25, deadline=None)
@given(
    n_blocks=st.integers(1, 3),
    rows=st.integers(1, 40),
    wide=st.booleans(),
    seed=st.integers(0, 2**16),
    ops_name=st.sampled_from(["numpy", "torch"]),
)
def test_gather_device_equals_gather_rows(n_blocks, rows, wide, seed, ops_name):
    """The gather itself, on blocks with gene indices up to 65,535 (uint16 past int16's range) or uint32."""
    from annshard._load._assemble import gather_rows
    from annshard._load._device import _arrays, _layout, _rebuild, gather_device
    from annshard._load._fetch import Block
    from annshard._load._xp import make_ops

    rng = np.random.default_rng(seed)
    n_vars = 2**17 if wide else 2**16
    ops = make_ops("torch" if ops_name == "torch" else "scipy", None)
    host, device = [], []
    for b in range(n_blocks):
        x = sp.random(rows, n_vars, density=20 / n_vars, format="csr", random_state=rng, dtype=np.float32)
        block = Block(
            index=np.arange(rows, dtype=np.int64) + 1000 * b,
            indptr=x.indptr.astype(np.int64),
            data=x.data,
            indices=x.indices.astype(np.uint32 if wide else np.uint16),
        )
        order = rng.permutation(rows)[: rng.integers(1, rows + 1)].astype(np.int64)
        arrays = ops.ready(ops.put([*_arrays(block), order]))
        host.append((block, order))
        device.append((_rebuild(_layout(block), arrays[:-1]), arrays[-1]))
    want, got = gather_rows(host, n_vars), gather_device(ops, device, n_vars)
    for field in ("index", "indptr", "indices", "data"):
        a, b = getattr(want, field), ops.to_host(getattr(got, field))
        assert a.dtype == b.dtype, field
        np.testing.assert_array_equal(a, b, err_msg=field)


def test_staging_buffers_alternate_grow_and_wait_for_their_copy():
    """The pinned staging of a CUDA put, with plain host buffers: two sets in turn, each reused after its copy's event."""
    from annshard._load._xp import _Staging

    class Copy:  # stands in for the CUDA event of one block's copies
        def __init__(self):
            self.waited = False

        def synchronize(self):
            self.waited = True

    made = []

    def alloc(n):
        buf = np.empty(n, dtype=np.uint8)
        made.append(n)
        return buf, buf

    staging = _Staging(alloc)
    backing, events = [], []
    for i, n in enumerate([1000, 1000, 900, 1000, 5000]):  # the last outgrows its set's buffer
        with staging.lock:
            turn = staging.begin()
            a = np.arange(n, dtype=np.int32) + i
            b = staging.stage(turn, 0, a)
            np.testing.assert_array_equal(b[: a.nbytes].view(np.int32), a)
            events.append(Copy())
            staging.end(turn, events[-1])
        backing.append(b)
    assert [e.waited for e in events] == [True, True, True, False, False]  # each set waited for its previous copy
    assert backing[0] is backing[2] and backing[1] is backing[3] and backing[0] is not backing[1]
    assert backing[4] is not backing[2] and made == [4500, 4500, 22500]  # 1/8 slack; grown once
