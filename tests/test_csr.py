"""The shared CSR row gather: every dtype combination gives scipy's answer, bit for bit, keeping dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import annshard._csr as csr


@pytest.mark.parametrize("native", [True, False], ids=["scipy-kernel", "numpy-fallback"])
@pytest.mark.parametrize("indptr_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("indices_dtype", [np.uint16, np.int32, np.int64])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64, np.int32, np.int64, np.float16, np.uint8])
def test_row_gather_matches_scipy(monkeypatch, native, indptr_dtype, indices_dtype, data_dtype):
    if not native:
        monkeypatch.setattr(csr, "_csr_row_index", None)
    rng = np.random.default_rng(0)
    m = sp.random(300, 200, density=0.1, format="csr", random_state=1, dtype=np.float64)
    m.data = np.floor(m.data * 100) + 1
    rows = rng.permutation(300)[:250]
    ref = m[rows]
    out_idx = np.empty(ref.nnz, dtype=indices_dtype)
    out_data = np.empty(ref.nnz, dtype=data_dtype)
    csr.row_gather(
        rows,
        m.indptr.astype(indptr_dtype),
        m.indices.astype(indices_dtype),
        m.data.astype(data_dtype),
        out_idx,
        out_data,
    )
    np.testing.assert_array_equal(out_idx, ref.indices)
    np.testing.assert_array_equal(out_data, ref.data.astype(data_dtype))


def test_row_gather_empty_selection():
    m = sp.random(10, 5, density=0.5, format="csr", random_state=0, dtype=np.float32)
    out_idx, out_data = np.empty(0, np.int32), np.empty(0, np.float32)
    csr.row_gather(np.empty(0, np.int64), m.indptr, m.indices, m.data, out_idx, out_data)
    assert out_idx.shape == out_data.shape == (0,)
