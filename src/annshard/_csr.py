"""Copying CSR rows in a new order: the one primitive both the writer and the loader spend their time in.

scipy's C++ ``csr_row_index`` copies rows one after the other and releases
the GIL; it is about 7x faster than gathering through an element index with
``np.take``. It wants the column indices in the row-pointer dtype, so when the
stored gene indices are narrower (``uint16``) the values travel in the index
slot, reinterpreted as a same-width integer, and the gene indices travel as
the "values": one pass copies both, bit for bit, without widening. It is a
private scipy function, so a numpy fallback does the same when it is missing
or the dtypes do not allow it (or ``ANNSHARD_GATHER=numpy`` asks for it, to
test it; :mod:`annshard._kernel` has the loader's fused numba gather).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._compat import scipy_csr_row_index
from ._kernel import gather_mode

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["row_gather"]

_csr_row_index = scipy_csr_row_index()

_FALLBACK_CHUNK = 1 << 20
_SPARSETOOLS_TYPES = "?bBhHiIlLqQfdg"  # value dtypes scipy's sparsetools is compiled for (no float16)


def row_gather(
    rows: NDArray[np.integer],
    indptr: NDArray[np.integer],
    indices: np.ndarray,
    data: np.ndarray,
    out_indices: np.ndarray,
    out_data: np.ndarray,
) -> None:
    """Copy CSR rows ``rows``, one after the other, into ``out_indices`` / ``out_data``.

    Parameters
    ----------
    rows
        Row numbers, in output order.
    indptr
        Row pointers of the source.
    indices, data
        Column indices and values of the source (any numeric dtypes).
    out_indices, out_data
        Outputs, sized to the selected rows' values, with the dtypes of ``indices`` and ``data``.
    """
    n = int(rows.shape[0])
    nnz = int(indptr[-1]) if indptr.shape[0] else 0
    if _csr_row_index is not None and n and gather_mode() != "numpy":
        itype = indptr.dtype
        if indices.dtype == itype and data.dtype.char in _SPARSETOOLS_TYPES and out_indices.dtype == itype:
            _csr_row_index(n, rows.astype(itype, copy=False), indptr, indices, data, out_indices, out_data)
            return
        if data.dtype.itemsize in (4, 8) and indices.dtype.kind in "iu":
            # values in the index slot (same-width integer view), gene indices as the values
            vtype = np.dtype(np.int32) if data.dtype.itemsize == 4 else np.dtype(np.int64)
            if nnz < np.iinfo(vtype).max and indptr.shape[0] < np.iinfo(vtype).max:
                _csr_row_index(
                    n,
                    rows.astype(vtype, copy=False),
                    indptr.astype(vtype, copy=False),
                    np.ascontiguousarray(data).view(vtype),
                    np.ascontiguousarray(indices),
                    out_data.view(vtype),
                    out_indices,
                )
                return
    _take_fallback(rows, indptr, indices, data, out_indices, out_data)


def _take_fallback(
    rows: NDArray[np.integer],
    indptr: NDArray[np.integer],
    indices: np.ndarray,
    data: np.ndarray,
    out_indices: np.ndarray,
    out_data: np.ndarray,
) -> None:
    """Gather through an element index, in pieces of about a million values (bounded temporaries)."""
    indptr = np.asarray(indptr, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    starts = indptr[:-1][rows]
    lengths = indptr[1:][rows] - starts
    out_ptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    i, n = 0, int(rows.shape[0])
    while i < n:
        j = int(np.searchsorted(out_ptr, out_ptr[i] + _FALLBACK_CHUNK, side="right")) - 1
        j = min(max(j, i + 1), n)
        a, b = int(out_ptr[i]), int(out_ptr[j])
        src = np.repeat(starts[i:j] - out_ptr[i:j], lengths[i:j]) + np.arange(a, b, dtype=np.int64)
        np.take(data, src, out=out_data[a:b])
        np.take(indices, src, out=out_indices[a:b])
        i = j
