"""AnnData objects as sources: in memory, or backed (``.h5ad`` files without encoding metadata, anndata < 0.7)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from annshard._errors import SourceError

from ._base import MatrixInfo, Source
from ._elements import column_schema_from_pandas, frame_as_array, numeric_frame_dtype, var_with_str_index

if TYPE_CHECKING:
    from pathlib import Path

    import anndata as ad

__all__ = ["AnnDataSource", "BackedSource"]


def _is_matrix(m: Any) -> bool:
    return sp.issparse(m) or isinstance(m, np.ndarray) or _backed_format(m) is not None or _is_h5_array(m)


def _backed_format(m: Any) -> str | None:
    fmt = getattr(m, "format", None)
    return fmt if fmt in ("csr", "csc") and hasattr(m, "group") else None


def _is_h5_array(m: Any) -> bool:
    return hasattr(m, "shape") and hasattr(m, "dtype") and len(getattr(m, "shape", ())) == 2 and hasattr(m, "attrs")


class AnnDataSource(Source):
    """An AnnData object, sliced in row blocks (for a backed one, ``X`` is read from its file)."""

    def __init__(
        self, adata: ad.AnnData, name: str, *, layer: str | None, kind: str = "anndata", path: Path | None = None
    ) -> None:
        self.name, self.kind, self.path = name, kind, path
        self._adata = adata
        self.element = "X" if layer is None else f"layers/{layer}"
        self._csr: dict[str, sp.csr_matrix] = {}
        self.n_obs = int(adata.n_obs)
        self.var = var_with_str_index(adata.var)
        self.obs_schema = {str(c): column_schema_from_pandas(adata.obs[c]) for c in adata.obs.columns}
        self._check_x()

    def _get(self, element: str) -> Any:
        a = self._adata
        if element == "X":
            return a.X
        group, _, key = element.partition("/")
        if group == "layers" and key in a.layers:
            return a.layers[key]
        if group == "obsm" and key in a.obsm:
            m = a.obsm[key]
            if isinstance(m, pd.DataFrame):
                return m if numeric_frame_dtype(m) is not None else None
            return m if _is_matrix(m) and len(m.shape) == 2 else None
        return None

    def matrix_keys(self) -> list[str]:
        """Every row-aligned matrix."""
        a = self._adata
        keys = ["X"] if a.X is not None else []
        keys += [f"layers/{k}" for k in a.layers if k is not None]  # anndata 0.13 lists X as layers[None]
        keys += [f"obsm/{k}" for k in a.obsm if self._get(f"obsm/{k}") is not None]
        return keys

    def matrix_info(self, element: str) -> MatrixInfo:
        """How ``element`` is stored."""
        m = self._get(element)
        if m is None:
            raise self._missing(element)
        if isinstance(m, pd.DataFrame):
            dt = numeric_frame_dtype(m)
            return MatrixInfo("dense", np.dtype(dt), (self.n_obs, m.shape[1]), self.n_obs * m.shape[1])
        shape = tuple(int(s) for s in m.shape)
        if sp.issparse(m):
            fmt = "csr" if m.format == "csr" else "csc"  # other sparse formats are converted like CSC
            return MatrixInfo(fmt, np.dtype(m.dtype), shape, int(m.nnz))  # type: ignore[arg-type]
        backed = _backed_format(m)
        if backed is not None:
            return MatrixInfo(backed, np.dtype(m.dtype), shape, int(m.group["data"].shape[0]))  # type: ignore[arg-type]
        return MatrixInfo("dense", np.dtype(m.dtype), shape, int(np.prod(shape)))

    def read_matrix(self, element: str, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``element``."""
        m = self._get(element)
        if m is None:
            raise self._missing(element)
        if isinstance(m, pd.DataFrame):
            return frame_as_array(m.iloc[start:stop])
        if element in self._csr:
            return self._csr[element][start:stop]
        try:
            if sp.issparse(m):
                if m.format == "csr":
                    return sp.csr_matrix(m[start:stop])
                # CSC cannot be sliced by rows cheaply; it is converted once, in memory (documented)
                self._csr[element] = sp.csr_matrix(m.tocsr())
                return self._csr[element][start:stop]
            backed = _backed_format(m)
            if backed == "csr":
                return sp.csr_matrix(m[start:stop])
            if backed == "csc":
                self._csr[element] = sp.csr_matrix(m.to_memory().tocsr())
                return self._csr[element][start:stop]
            return np.asarray(m[start:stop])
        except OSError as e:
            raise self._fail(
                element,
                f"rows {start}:{stop} cannot be read ({e})",
                "HDF5 cannot read its bytes: the file is truncated or corrupt, re-download or re-write it",
                e,
            ) from e

    def obs_frame(self) -> pd.DataFrame:
        """Return the AnnData's obs."""
        return self._adata.obs

    def close(self) -> None:
        """Drop the cached CSR copies of CSC matrices."""
        self._csr = {}


class BackedSource(AnnDataSource):
    """An ``.h5ad`` without encoding metadata (anndata < 0.7), read with ``anndata.read_h5ad(path, backed="r")``."""

    def __init__(self, path: Path, name: str, *, layer: str | None) -> None:
        adata = self._read(path)
        try:
            super().__init__(adata, name, layer=layer, kind="h5ad", path=path)
        finally:
            adata.file.close()

    def _read(self, path: Path) -> ad.AnnData:
        import warnings

        import anndata as ad

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anndata's OldFormatWarning: the file is read as anndata reads it
            try:
                return ad.read_h5ad(path, backed="r")
            except Exception as e:
                msg = (
                    f"{path}: a legacy .h5ad (no encoding metadata, anndata < 0.7) that anndata "
                    f"cannot read either ({type(e).__name__}: {e}); re-write it with a current anndata"
                )
                raise SourceError(msg) from e

    def _get(self, element: str) -> Any:
        if element == "X" and not self._adata.file.is_open:
            self._adata.file.open()
        return super()._get(element)

    def close(self) -> None:
        """Close the file; a later read reopens it."""
        super().close()
        with contextlib.suppress(Exception):
            self._adata.file.close()
