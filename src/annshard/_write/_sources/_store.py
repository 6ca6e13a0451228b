"""Files with encoding metadata as sources: ``.h5ad`` (h5py) and AnnData zarr stores, read with anndata's readers (CSR row blocks as three slices, :class:`._elements.CSRRows`)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from annshard._compat import anndata_io_registry_error
from annshard._errors import SourceError

from ._base import MatrixInfo, Source
from ._elements import CSRRows, column_schema_from_pandas, frame_as_array, numeric_frame_dtype, var_with_str_index

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["StoreSource"]


def _attr(node: Any, key: str, default: Any = None) -> Any:
    v = node.attrs.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    return v


def _locate_unreadable(key: str, node: Any) -> tuple[str, Any]:
    """Find the innermost element under ``node`` whose encoding anndata has no reader for (error path only)."""
    import anndata as ad

    IORegistryError = anndata_io_registry_error()

    if not hasattr(node, "keys"):
        return key, node
    for k in node:
        try:
            ad.io.read_elem(node[k])
        except IORegistryError:
            return _locate_unreadable(f"{key}/{k}", node[k])
        except Exception:  # noqa: BLE001 - only encodings are located here
            continue
    return key, node


class StoreSource(Source):
    """An AnnData stored in an ``.h5ad`` file or a zarr store, read in row blocks with anndata's readers."""

    def __init__(self, opener: Callable[[], Any], path: Path, kind: str, name: str, *, layer: str | None) -> None:
        self.name, self.kind, self.path = name, kind, path
        self._opener = opener
        self._root: Any = None
        self._cache: dict[str, Any] = {}
        self._obs: pd.DataFrame | None = None
        self._infos: dict[str, MatrixInfo] = {}
        self._frames: set[str] = set()
        self.element = "X" if layer is None else f"layers/{layer}"
        try:
            self._read_header()
        except BaseException:
            self.close()
            raise
        self.close()  # reopened by the first read: only the source being scattered holds a file handle

    def _read_header(self) -> None:
        root = self._get_root()
        for key in ("obs", "var"):
            if key not in root:
                raise self._fail(key, "is missing: this is not an AnnData file", "pass .h5ad or AnnData zarr files")
        self.var = var_with_str_index(self._read_elem("var"))
        obs = self.obs_frame()
        self.n_obs = int(obs.shape[0])
        self.obs_schema = {str(c): column_schema_from_pandas(obs[c]) for c in obs.columns}
        self._keys = self._find_matrices()
        self._check_x()

    def _get_root(self) -> Any:
        if self._root is None:
            self._root = self._opener()
        return self._root

    def _read_elem(self, key: str) -> Any:
        import anndata as ad

        IORegistryError = anndata_io_registry_error()

        node = self._get_root()[key]
        try:
            return ad.io.read_elem(node)
        except IORegistryError as e:
            raise self._unknown_encoding(key, node, e) from e
        except OSError as e:
            raise self._fail(
                key,
                f"cannot be read ({e})",
                "HDF5/zarr cannot read its bytes: the file is truncated or corrupt, re-download or re-write it",
                e,
            ) from e
        except Exception as e:
            raise self._fail(
                key,
                f"anndata cannot read it ({type(e).__name__}: {e})",
                "check it with anndata.read_h5ad / read_zarr and re-write the file with a current anndata",
                e,
            ) from e

    def _unknown_encoding(self, key: str, node: Any, cause: BaseException | None = None) -> SourceError:
        from importlib.metadata import version

        key, node = _locate_unreadable(key, node)
        enc, ver = _attr(node, "encoding-type"), _attr(node, "encoding-version")
        if enc is None:
            return self._fail(
                key,
                "has no encoding metadata (written by anndata < 0.7?) and anndata cannot read it in place",
                "read the file with anndata.read_h5ad / read_zarr and write it again with a current anndata",
                cause,
            )
        fix = (
            f"annshard reads every encoding that anndata {version('anndata')} reads: update anndata if a newer one "
            "reads it, or re-write the file without this element (or with it in a standard encoding)"
        )
        return self._fail(
            key, f"has encoding-type {enc!r}, encoding-version {ver!r}, which anndata cannot read", fix, cause
        )

    # matrices
    def _find_matrices(self) -> list[str]:
        root = self._get_root()
        keys = []
        if "X" in root:
            keys.append("X")
        for group in ("layers", "obsm"):
            if group not in root:
                continue
            for k in root[group]:
                key = f"{group}/{k}"
                info = self._probe(key, strict=False)
                if info is not None:
                    self._infos[key] = info
                    keys.append(key)
        if "X" in keys:
            self._infos["X"] = self._probe("X", strict=True)  # type: ignore[assignment]
        if self.element != "X" and self.element in root and self.element not in keys:
            self._probe(self.element, strict=True)  # raises: the requested layer is not a matrix annshard reads
        return keys

    def _probe(self, key: str, *, strict: bool) -> MatrixInfo | None:
        """How ``key`` is stored, from its encoding attributes; ``None`` (or a SourceError if strict) otherwise."""
        node = self._get_root()[key]
        enc = _attr(node, "encoding-type")
        if enc in ("csr_matrix", "csc_matrix"):
            shape = tuple(int(s) for s in _attr(node, "shape"))
            data = node["data"]
            if np.dtype(data.dtype) == np.float16:  # anndata cannot read it either
                if not strict:
                    return None
                raise self._fail(
                    key,
                    "is a sparse matrix of float16 values, which scipy.sparse (and so anndata) cannot hold",
                    "re-write it with float32 values",
                )
            return MatrixInfo("csr" if enc == "csr_matrix" else "csc", np.dtype(data.dtype), shape, int(data.shape[0]))
        if enc == "array" and len(node.shape) == 2 and np.dtype(node.dtype).kind in "biuf":
            shape = tuple(int(s) for s in node.shape)
            return MatrixInfo("dense", np.dtype(node.dtype), shape, shape[0] * shape[1])
        if enc == "dataframe" and key.startswith("obsm/"):
            df = self._read_elem(key)
            dt = numeric_frame_dtype(df)
            if dt is None:
                return None
            self._frames.add(key)
            self._cache[key] = frame_as_array(df)
            return MatrixInfo("dense", dt, (self.n_obs, df.shape[1]), self.n_obs * df.shape[1])
        if not strict:
            return None
        if enc in ("array", "string-array", "dataframe", "dict", "awkward-array"):
            dtype = getattr(node, "dtype", None)
            raise self._fail(
                key,
                f"is a {enc} element (dtype {dtype}), not a numeric 2-D matrix",
                "pass layer=... naming a numeric matrix",
            )
        raise self._unknown_encoding(key, node)

    def matrix_keys(self) -> list[str]:
        """Every row-aligned matrix."""
        return list(self._keys)

    def matrix_info(self, element: str) -> MatrixInfo:
        """How ``element`` is stored."""
        if element not in self._infos:
            raise self._missing(element)
        return self._infos[element]

    def read_matrix(self, element: str, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``element``."""
        info = self.matrix_info(element)
        try:
            if element in self._cache:
                m = self._cache[element]
            elif element in self._frames:  # a numeric obsm DataFrame, read whole
                m = self._cache[element] = frame_as_array(self._read_elem(element))
            elif info.format == "csc":
                # CSC cannot be read in row blocks; it is read whole and converted once, in memory (documented)
                m = self._cache[element] = sp.csr_matrix(self._read_elem(element))
            elif info.format == "csr":
                m = self._cache[element] = CSRRows(self._get_root()[element], info.shape)
            else:
                m = self._cache[element] = self._get_root()[element]
            block = m[start:stop]
            out = sp.csr_matrix(block) if info.format != "dense" else np.asarray(block)
        except SourceError:
            raise
        except OSError as e:
            raise self._fail(
                element,
                f"rows {start}:{stop} cannot be read ({e})",
                "HDF5/zarr cannot read its bytes: the file is truncated or corrupt, re-download or re-write it",
                e,
            ) from e
        except Exception as e:
            raise self._fail(
                element,
                f"rows {start}:{stop} cannot be read ({type(e).__name__}: {e})",
                "its arrays are inconsistent (the file is damaged): re-write it",
                e,
            ) from e
        if out.shape != (stop - start, info.shape[1]):
            raise self._fail(
                element,
                f"rows {start}:{stop} read as shape {out.shape}, expected {(stop - start, info.shape[1])}",
                "its arrays are inconsistent (the file is damaged): re-write it",
            )
        return out

    def obs_frame(self) -> pd.DataFrame:
        """obs, read whole with ``anndata.io.read_elem`` (dropped on :meth:`close`)."""
        if self._obs is None:
            self._obs = self._read_elem("obs")
        return self._obs

    def close(self) -> None:
        """Close the file and drop obs and cached matrices; a later read reopens it."""
        root, self._root, self._cache, self._obs = self._root, None, {}, None
        if root is not None and hasattr(root, "close"):
            with contextlib.suppress(Exception):
                root.close()
