"""The fused numba gather: scipy's answer, bit for bit, for every dtype combination, and the ANNSHARD_GATHER switch."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from annshard import _kernel
from annshard._csr import row_gather
from annshard._load._assemble import gather_rows
from annshard._load._fetch import Block

pytest.importorskip("numba")

# (stored gene indices, stored values, batch gene indices, batch values): every combination the kernel takes
COMBOS = [
    (i, d, oi, "float64" if d == "float64" else "float32")
    for d in ("float32", "uint16", "uint8", "float64")
    for i, oi in (("uint16", "int32"), ("uint16", "int64"), ("int32", "int32"), ("int64", "int64"))
]


def _matrix(rng: np.random.Generator, n_rows: int, n_cols: int, empty_share: float) -> sp.csr_matrix:
    m = sp.random(n_rows, n_cols, density=0.3, format="csr", random_state=rng, dtype=np.float64)
    m.data = np.floor(m.data * 200) + 1  # whole numbers: exact in every value dtype tested
    keep = rng.random(n_rows) >= empty_share
    return sp.csr_matrix(sp.diags(keep.astype(np.float64)) @ m)  # empty rows where not kept


@settings(max_examples=50, deadline=None)
@given(
    combo=st.sampled_from(COMBOS),
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 60),
    n_pick=st.integers(0, 80),
    empty_share=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_kernel_and_fallbacks_match_scipy(combo, seed, n_rows, n_pick, empty_share):
    i, d, oi, od = combo
    rng = np.random.default_rng(seed)
    m = _matrix(rng, n_rows, 300, empty_share)
    rows = rng.integers(0, n_rows, n_pick).astype(np.int64)  # repeats allowed; n_pick == 0: an empty batch
    ref = m[rows]
    indptr, indices, data = m.indptr.astype(np.int64), m.indices.astype(i), m.data.astype(d)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_kernel.GATHER_ENV, "numba")
        kernel = _kernel.fused_kernel(indices.dtype, data.dtype, np.dtype(oi), np.dtype(od))
        assert kernel is not None
        out_i, out_d = np.full(ref.nnz, -1, dtype=oi), np.full(ref.nnz, -1, dtype=od)
        assert kernel(rows, indptr, indices, data, out_i, out_d) == ref.nnz
        np.testing.assert_array_equal(out_i, ref.indices)
        np.testing.assert_array_equal(out_d, ref.data.astype(od))
        for mode in ("scipy", "numpy"):  # the stored-dtype gather (scipy's kernel, the numpy fallback), then widened
            mp.setenv(_kernel.GATHER_ENV, mode)
            st_i, st_d = np.empty(ref.nnz, dtype=i), np.empty(ref.nnz, dtype=d)
            row_gather(rows, indptr, indices, data, st_i, st_d)
            assert np.array_equal(st_i.astype(oi), out_i) and np.array_equal(st_d.astype(od), out_d), mode


def test_kernel_refuses_out_of_range_rows_and_short_outputs(monkeypatch):
    monkeypatch.setenv(_kernel.GATHER_ENV, "numba")
    kernel = _kernel.fused_kernel(np.dtype("uint16"), np.dtype("float32"), np.dtype("int32"), np.dtype("float32"))
    indptr = np.array([0, 2, 5], dtype=np.int64)
    indices, data = np.arange(5, dtype=np.uint16), np.arange(5, dtype=np.float32)
    out_i, out_d = np.zeros(5, np.int32), np.zeros(5, np.float32)
    assert kernel(np.array([1, 0], dtype=np.int64), indptr, indices, data, out_i, out_d) == 5
    assert out_i.tolist() == [2, 3, 4, 0, 1]
    assert kernel(np.array([2], dtype=np.int64), indptr, indices, data, out_i, out_d) == -1  # no such row
    assert kernel(np.array([-1], dtype=np.int64), indptr, indices, data, out_i, out_d) == -1
    assert kernel(np.array([1, 1], dtype=np.int64), indptr, indices, data, out_i, out_d) == -1  # 6 values, room for 5
    bad_ptr = np.array([0, 2, 9], dtype=np.int64)  # past the values
    assert kernel(np.array([1], dtype=np.int64), bad_ptr, indices, data, out_i, out_d) == -1


def _blocks(rng: np.random.Generator, data_dtype: str) -> list[Block]:
    blocks = []
    for k in range(3):
        m = _matrix(rng, 200 + 50 * k, 500, 0.1)
        index = np.arange(m.shape[0], dtype=np.int64) + 1000 * k
        data = m.data.astype(data_dtype)
        blocks.append(Block(index, m.indptr.astype(np.int64), data, m.indices.astype(np.uint16)))
    return blocks


@pytest.mark.parametrize("data_dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 3])
def test_gather_rows_same_batch_on_every_path(monkeypatch, data_dtype, threads):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(7)
    blocks = _blocks(rng, data_dtype)
    monkeypatch.setattr(_kernel, "_gathered", 0)
    segments = [(b, rng.permutation(b.n_rows)[: b.n_rows - 20]) for b in blocks]
    out = {}
    with ThreadPoolExecutor(2) as pool:
        for mode in ("numba", "scipy", "numpy"):
            monkeypatch.setenv(_kernel.GATHER_ENV, mode)
            out[mode] = gather_rows(segments, 500, workers=(pool, threads) if threads > 1 else None)
    ref = sp.vstack([sp.csr_matrix((b.data, b.indices, b.indptr), shape=(b.n_rows, 500))[r] for b, r in segments])
    assert _kernel._gathered == 2 * ref.nnz  # counted on the scipy and numpy paths, not on numba's
    for mode, got in out.items():
        assert got.indices.dtype == np.int32 and got.data.dtype == np.dtype(data_dtype), mode
        assert np.array_equal(got.indptr, ref.indptr) and np.array_equal(got.indices, ref.indices), mode
        assert np.array_equal(got.data, ref.data), mode
        assert np.array_equal(got.index, np.concatenate([b.index[r] for b, r in segments])), mode


def test_gather_env_switch(monkeypatch):
    key = (np.dtype("int32"), np.dtype("uint8"), np.dtype("int64"), np.dtype("float32"))
    monkeypatch.setattr(_kernel, "_ready", {})
    monkeypatch.setattr(_kernel, "_pending", set())
    monkeypatch.setenv(_kernel.GATHER_ENV, "scipy")
    assert _kernel.gather_mode() == "scipy" and _kernel.fused_kernel(*key) is None
    assert not _kernel._pending  # the fallback forced: nothing compiled
    monkeypatch.setenv(_kernel.GATHER_ENV, "numpy")
    assert _kernel.fused_kernel(*key) is None
    monkeypatch.setenv(_kernel.GATHER_ENV, "fast please")
    with pytest.raises(ValueError, match=r"ANNSHARD_GATHER='fast please' is not one of auto, aot, numba, scipy, numpy"):
        _kernel.fused_kernel(*key)
    monkeypatch.delenv(_kernel.GATHER_ENV)
    assert _kernel.gather_mode() == "auto"
    import numba  # noqa: F401 - the lower threshold applies once numba is imported

    monkeypatch.setattr(_kernel, "_gathered", 0)
    assert _kernel.fused_kernel(*key) is None and not _kernel._pending  # auto, a short run: not worth compiling
    _kernel.note_gathered(_kernel.AUTO_AFTER_VALUES // 4 - 1)  # numba is imported here: a quarter of the threshold
    assert _kernel.fused_kernel(*key) is None and not _kernel._pending
    _kernel.note_gathered(1)
    assert _kernel.fused_kernel(*key) is None  # auto past the threshold: compiling in the background, scipy meanwhile
    deadline = time.monotonic() + 120
    while (kernel := _kernel.fused_kernel(*key)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kernel is not None and not _kernel._pending
    # not a combination the kernel takes (narrowing indices): never compiled, scipy's path
    assert _kernel.fused_kernel(np.dtype("int64"), np.dtype("float32"), np.dtype("int32"), np.dtype("float32")) is None


_NO_NUMBA = """
import os, sys
sys.modules["numba"] = None  # as if numba were not installed
import numpy as np
from annshard import _kernel
from annshard._load._assemble import gather_rows
from annshard._load._fetch import Block
blk = Block(np.arange(3), np.array([0, 2, 2, 5]), np.arange(5, dtype=np.float32), np.arange(5, dtype=np.uint16))
_kernel.note_gathered(_kernel.AUTO_AFTER_VALUES)  # auto past its threshold: would compile, but there is no numba
out = gather_rows([(blk, np.array([2, 1, 0]))], 10)
assert out.indices.tolist() == [2, 3, 4, 0, 1] and out.indices.dtype == np.int32, out.indices
assert out.data.tolist() == [2, 3, 4, 0, 1] and not _kernel._pending
os.environ["ANNSHARD_GATHER"] = "numba"
try:
    gather_rows([(blk, np.array([0]))], 10)
except ImportError as e:
    print(e)
"""


def test_gather_without_numba():
    """No numba: ``auto`` gathers on scipy's path silently, ``ANNSHARD_GATHER=numba`` says what to install."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _NO_NUMBA], capture_output=True, text=True, timeout=120, check=True)
    assert "ANNSHARD_GATHER=numba but numba is not installed; `pip install annshard[fast]`" in out.stdout


def test_numba_imported_lazily():
    """``import annshard`` and the gather's modules leave numba out (its import alone is ~0.5 s of CPU).

    (anndata imports it when dask and pydata-sparse are installed: this checks annshard's own imports.)
    """
    import subprocess
    import sys

    code = "import sys, annshard, annshard._kernel, annshard._csr; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
