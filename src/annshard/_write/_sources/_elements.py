"""Element helpers the source kinds share: obs column schemas, numeric obsm DataFrames, var with str names."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._base import ColumnSchema

__all__ = ["column_schema_from_pandas", "frame_as_array", "numeric_frame_dtype", "var_with_str_index"]


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
