"""Element helpers the source kinds share: obs column schemas, numeric obsm DataFrames, var with str names."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._base import ColumnSchema

__all__ = ["CSRRows", "column_schema_from_pandas", "frame_as_array", "numeric_frame_dtype", "var_with_str_index"]


class CSRRows:
    """Row blocks of a stored CSR matrix (an h5py or zarr group with ``data``, ``indices``, ``indptr``).

    A block is read as three slices and wrapped without a copy: anndata's ``sparse_dataset`` reads the same
    slices and then copies them once more (scipy's row slicing), a full copy of every block the writer reads.
    From HDF5 (h5py datasets), ``data`` and ``indices`` are read into two buffers reused from block to block
    (fresh pages cost more CPU than the read: :class:`annshard._write._memory.Buffers`), so a block is valid
    until the next one is read (the scatter pass consumes each block before reading the next).
    """

    def __init__(self, group: Any, shape: tuple[int, ...]) -> None:
        from annshard._write._memory import Buffers

        self.data, self.indices, self.indptr = group["data"], group["indices"], group["indptr"]
        self.shape = (int(shape[0]), int(shape[1]))
        self._buffers = Buffers()

    def _slice(self, key: str, ds: Any, p0: int, p1: int) -> np.ndarray:
        if not hasattr(ds, "read_direct") or p1 <= p0:  # zarr arrays: read as they come
            return np.asarray(ds[p0:p1])
        out = self._buffers.array(key, p1 - p0, ds.dtype)
        ds.read_direct(out, np.s_[p0:p1])
        return out

    def __getitem__(self, rows: slice) -> sp.csr_matrix:
        """Rows ``rows`` (a ``start:stop`` slice) as a scipy CSR matrix."""
        start, stop, _ = rows.indices(self.shape[0])
        stop = max(start, stop)
        indptr = np.asarray(self.indptr[start : stop + 1], dtype=np.int64)
        if indptr.shape[0] != stop - start + 1:
            msg = f"indptr has {self.indptr.shape[0]} entries for {self.shape[0]} rows"
            raise ValueError(msg)
        p0, p1 = int(indptr[0]), int(indptr[-1])
        if p1 < p0 or (indptr.shape[0] > 1 and (np.diff(indptr) < 0).any()) or p1 > self.data.shape[0]:
            msg = f"indptr of rows {start}:{stop} is not a non-decreasing run within data's {self.data.shape[0]} values"
            raise ValueError(msg)
        data, indices = self._slice("data", self.data, p0, p1), self._slice("indices", self.indices, p0, p1)
        if data.shape[0] != p1 - p0 or indices.shape[0] != p1 - p0:
            msg = f"data or indices hold fewer than the {p1} values indptr points to"
            raise ValueError(msg)
        return sp.csr_matrix((data, indices, indptr - p0), shape=(stop - start, self.shape[1]))


def column_schema_from_pandas(s: pd.Series) -> ColumnSchema:
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        cats = tuple(_py(c) for c in dt.categories)
        return ColumnSchema("categorical", np.dtype(object), cats, bool(dt.ordered))
    if pd.api.types.is_bool_dtype(dt):
        nullable = isinstance(dt, pd.BooleanDtype)
        return ColumnSchema("bool", np.dtype(bool), nullable=nullable and bool(s.isna().any()))
    if pd.api.types.is_numeric_dtype(dt):
        if isinstance(dt, pd.api.extensions.ExtensionDtype):
            return ColumnSchema("numeric", np.dtype(dt.numpy_dtype), nullable=True)  # type: ignore[attr-defined]
        return ColumnSchema("numeric", np.dtype(dt))
    return ColumnSchema("string", np.dtype(object))


def _py(x: Any) -> Any:
    """Convert to a JSON-friendly Python scalar."""
    return x.item() if isinstance(x, np.generic) else x


def numeric_frame_dtype(df: pd.DataFrame) -> np.dtype | None:
    """Return the float dtype numeric DataFrame columns are read as (``None`` if a column is not numeric)."""
    dts = []
    for c in df.columns:
        dt = df[c].dtype
        if isinstance(dt, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(dt):
            return None
        dts.append(np.dtype(getattr(dt, "numpy_dtype", dt)))
    if not dts:
        return None
    dt = np.result_type(*dts)
    return dt if dt.kind == "f" else np.dtype(np.float64)


def frame_as_array(df: pd.DataFrame) -> np.ndarray:
    dt = numeric_frame_dtype(df)
    return df.to_numpy(dtype=dt, na_value=np.nan)


def var_with_str_index(var: pd.DataFrame) -> pd.DataFrame:
    var = var.copy()
    var.index = pd.Index([str(v) for v in var.index], dtype=object, name=var.index.name)
    return var
