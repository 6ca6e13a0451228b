"""The scatter pass reads several sources at once (threads), and reads CSR blocks without anndata's extra copy."""

from __future__ import annotations

import os
import sys
import threading

import h5py
import numpy as np
import pytest

import annshard
from annshard._errors import SourceError
from annshard._write import _scatter
from annshard.testing import assert_identical_collections, make_adata, write_h5ads


def _scatter_threads_seen(paths, out, **kw) -> set[str]:
    """Write a collection; return the names of the threads that ran a scatter task."""
    seen: set[str] = set()

    def observe(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "scatter_task":
            seen.add(threading.current_thread().name)

    threading.setprofile(observe)
    sys.setprofile(observe)
    try:
        annshard.write_collection(paths, out, seed=5, n_obs_per_shard=120, **kw)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return seen


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one scatter thread")
def test_sources_scattered_in_threads_same_output(tmp_path, monkeypatch):
    paths = write_h5ads(tmp_path / "in", [300, 200, 250], 40, nnz_per_cell=8, seed=3)
    seen = _scatter_threads_seen(paths, tmp_path / "threads.zarr")
    assert seen and all(name.startswith("annshard-scatter") for name in seen), seen
    monkeypatch.setattr(_scatter, "SCATTER_THREADS", 1)  # one source at a time, whole blocks
    assert _scatter_threads_seen(paths, tmp_path / "serial.zarr") == {threading.current_thread().name}
    assert_identical_collections(tmp_path / "threads.zarr", tmp_path / "serial.zarr")


def test_csc_sources_scattered_one_at_a_time(tmp_path):
    paths = []
    for i in range(2):
        a = make_adata(150, 30, nnz_per_cell=5, seed=i)
        a.X = a.X.tocsc()  # read whole, in memory: never two at once
        a.write_h5ad(tmp_path / f"c{i}.h5ad")
        paths.append(tmp_path / f"c{i}.h5ad")
    assert _scatter_threads_seen(paths, tmp_path / "o.zarr") == {threading.current_thread().name}


def test_damaged_indptr_is_a_clear_error(tmp_path):
    (path,) = write_h5ads(tmp_path / "in", [200], 30, nnz_per_cell=6, seed=2)
    with h5py.File(path, "r+") as f:
        indptr = f["X/indptr"][...]
        indptr[50] = indptr[60]  # rows 49 and 50 now overlap their neighbours: indptr goes down at 51
        indptr[51] = indptr[40]
        f["X/indptr"][...] = indptr
    with pytest.raises(SourceError, match=r"dataset-0.*X.*indptr.*non-decreasing"):
        annshard.write_collection([path], tmp_path / "o.zarr", seed=0)
    assert (np.diff(indptr) < 0).any()  # the file really is damaged
