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


def test_aot_keys_are_the_kernels_table():
    from annshard import _kernel_aot

    assert frozenset(_kernel_aot.AOT_KEYS) == _kernel._AOT_KEYS


@pytest.mark.parametrize("key", sorted(_kernel._AOT_KEYS))
def test_aot_kernel_matches_scipy(aot, key):
    i, d, oi, od = key
    rng = np.random.default_rng(3)
    m = _matrix(rng, 70, 300, 0.3)
    kernel = _kernel.fused_kernel(np.dtype(i), np.dtype(d), np.dtype(oi), np.dtype(od))
    assert kernel is not None and type(kernel).__name__ == "builtin_function_or_method"  # the module's, not numba's
    indptr, indices, data = m.indptr.astype(np.int64), m.indices.astype(i), m.data.astype(d)
    for rows in (rng.integers(0, 70, 90), np.zeros(0, np.int64), np.arange(70)[::-1]):
        rows = rows.astype(np.int64)
        ref = m[rows]
        out_i, out_d = np.full(ref.nnz, -1, dtype=oi), np.full(ref.nnz, -1, dtype=od)
        assert kernel(rows, indptr, indices, data, out_i, out_d) == ref.nnz
        np.testing.assert_array_equal(out_i, ref.indices)
        np.testing.assert_array_equal(out_d, ref.data.astype(od))
    out_i, out_d = np.zeros(3, oi), np.zeros(3, od)
    assert kernel(np.array([70], np.int64), indptr, indices, data, out_i, out_d) == -1  # no such row: refused


def test_aot_module_loads_without_numba_and_releases_the_gil(aot_dir):
    """A fresh process in ``auto`` mode takes the built module at its first call, without importing numba."""
    import subprocess
    import sys

    code = """
import sys, threading, time
import numpy as np
from annshard import _kernel
key = (np.dtype("uint16"), np.dtype("uint16"), np.dtype("int32"), np.dtype("float32"))
kernel = _kernel.fused_kernel(*key)  # before anndata (which imports numba when dask and sparse are installed)
assert kernel is not None and "numba" not in sys.modules, kernel
n = 4000
ptr = np.arange(0, 1000 * (n + 1), 1000, dtype=np.int64)
ind, data = np.ones(ptr[-1], np.uint16), np.ones(ptr[-1], np.uint16)
rows = np.arange(n, dtype=np.int64)
oi, od = np.empty(ptr[-1], np.int32), np.empty(ptr[-1], np.float32)
ticks, stop = [0], []
def spin():
    while not stop:
        ticks[0] += 1
t = threading.Thread(target=spin)
t.start()
time.sleep(0.05)
before = ticks[0]
for _ in range(5):
    kernel(rows, ptr, ind, data, oi, od)
during = ticks[0] - before
stop.append(1)
t.join()
print("ticks", during)
"""
    env = {**__import__("os").environ, "ANNSHARD_CACHE_DIR": str(aot_dir), _kernel.GATHER_ENV: "auto"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) > 0  # the other thread ran while the kernel did: no GIL held


def test_aot_build_runs_once_and_not_after_a_failure(tmp_path):
    from annshard import _kernel_aot

    path = tmp_path / "kernels" / "_annshard_gather_x.so"
    path.parent.mkdir()
    (tmp_path / "kernels" / "_annshard_gather_x.so.lock").touch()  # another process is building it
    assert _kernel_aot.start_build(path) is None
    (tmp_path / "kernels" / "_annshard_gather_x.so.lock").unlink()
    (tmp_path / "kernels" / "_annshard_gather_x.so.failed").write_text("no compiler")
    assert _kernel_aot.start_build(path) is None
    assert _kernel_aot.load(path) is None  # nothing there
    path.write_bytes(b"not a module")
    path.chmod(0o666)
    assert _kernel_aot.load(path) is None  # writable by others: never loaded
    path.chmod(0o644)
    assert _kernel_aot.load(path) is None  # not a module: refused, no crash


def test_aot_mode_refuses_what_it_does_not_hold(aot):
    with pytest.raises(ValueError, match="no kernel compiled ahead of time"):
        _kernel.fused_kernel(np.dtype("int64"), np.dtype("float32"), np.dtype("int64"), np.dtype("float32"))


def _narrow_blocks(rng: np.random.Generator, stored: str) -> list[Block]:
    """Blocks holding raw counts as stored (``uint8``/``uint16``; batches get ``float32``), with a narrow layer and
    a dense obsm array as extras."""
    blocks = []
    for k, n_rows in enumerate((37, 64, 1)):
        m = _matrix(rng, n_rows, 500, 0.2)
        index = np.arange(n_rows, dtype=np.int64) + 1000 * k
        ptr = m.indptr.astype(np.int64)
        b = Block(index, ptr, m.data.astype(stored), m.indices.astype(np.uint16), dtype=np.dtype(np.float32))
        layer = Block(index, ptr, (m.data * 2).astype(stored), m.indices.astype(np.uint16), dtype=np.dtype(np.float32))
        emb = Block(index, None, rng.standard_normal((n_rows, 4)).astype(np.float32), None)
        b.extras = {"layers/counts": layer, "obsm/emb": emb}
        blocks.append(b)
    return blocks


@pytest.mark.parametrize("stored", ["uint8", "uint16"])
@pytest.mark.parametrize("threads", [1, 3])
def test_narrow_blocks_widened_alike_on_every_path(aot, monkeypatch, stored, threads):
    """Stored counts in the block: every gather path gives scipy's indexing of the widened matrix, as float32."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    blocks = _narrow_blocks(rng, stored)
    segments = [(b, rng.permutation(b.n_rows)[: max(1, b.n_rows - 5)]) for b in blocks]

    def ref(element: str | None) -> sp.csr_matrix:
        parts = []
        for b, r in segments:
            x = b if element is None else b.extras[element]
            parts.append(sp.csr_matrix((x.data.astype(np.float32), x.indices, x.indptr), shape=(x.n_rows, 500))[r])
        return sp.vstack(parts).tocsr()

    with ThreadPoolExecutor(2) as pool:
        for mode in ("aot", "numba", "scipy", "numpy"):
            monkeypatch.setenv(_kernel.GATHER_ENV, mode)
            got = gather_rows(segments, 500, workers=(pool, threads) if threads > 1 else None)
            for element, x in ((None, got), ("layers/counts", got.extras["layers/counts"])):
                want = ref(element)
                assert x.data.dtype == np.float32 and x.indices.dtype == np.int32, mode
                assert x.dtype is None, mode  # a batch holds its values in their own dtype
                np.testing.assert_array_equal(x.indptr, want.indptr)
                np.testing.assert_array_equal(x.indices, want.indices)
                np.testing.assert_array_equal(x.data, want.data)
            emb = got.extras["obsm/emb"].data
            np.testing.assert_array_equal(emb, np.concatenate([b.extras["obsm/emb"].data[r] for b, r in segments]))
            np.testing.assert_array_equal(got.index, np.concatenate([b.index[r] for b, r in segments]))


def test_a_batch_over_narrow_and_widened_blocks(aot, monkeypatch):
    """A batch spanning a block read before the kernel was ready (widened) and one after (narrow)."""
    rng = np.random.default_rng(9)
    narrow = _narrow_blocks(rng, "uint16")[0]
    narrow.extras = {}
    m = _matrix(rng, 20, 500, 0.1)
    wide = Block(
        np.arange(20, dtype=np.int64), m.indptr.astype(np.int64), m.data.astype(np.float32), m.indices.astype(np.uint16)
    )
    segments = [(wide, np.arange(20)[::-1]), (narrow, np.arange(narrow.n_rows))]
    want = sp.vstack(
        [
            sp.csr_matrix((wide.data, wide.indices, wide.indptr), shape=(20, 500))[np.arange(20)[::-1]],
            sp.csr_matrix((narrow.data.astype(np.float32), narrow.indices, narrow.indptr), shape=(narrow.n_rows, 500)),
        ]
    ).tocsr()
    for mode in ("aot", "scipy"):
        monkeypatch.setenv(_kernel.GATHER_ENV, mode)
        for order in (segments, segments[::-1]):
            got = gather_rows(order, 500)
            w = want if order is segments else sp.vstack([want[20:], want[:20]]).tocsr()
            assert got.data.dtype == np.float32
            np.testing.assert_array_equal(got.data, w.data)
            np.testing.assert_array_equal(got.indices, w.indices)
