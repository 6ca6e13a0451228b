"""Sources: ``.h5ad`` files, AnnData zarr stores and in-memory AnnData, opened lazily.

A :class:`Source` reads shapes, ``var`` and the obs schema when it is opened,
and row blocks of ``X`` and of each obs column on demand, so a source is never
held in memory as a whole. ``.h5ad`` files are read with h5py and zarr stores
with zarr, slicing ``data`` / ``indices`` / ``indptr`` directly: one
contiguous read per block, no per-row work. In-memory AnnData is sliced.

Every problem is raised as a :class:`~annshard.SourceError` that names the
source, the element and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from annshard._errors import SourceError

if TYPE_CHECKING:
    from collections.abc import Callable

    import anndata as ad

__all__ = ["ColumnSchema", "MatrixInfo", "Source", "open_source", "open_sources"]

ColumnKind = Literal["categorical", "numeric", "bool", "string"]


@dataclass(frozen=True)
class ColumnSchema:
    """How one obs column is stored in one source.

    Attributes
    ----------
    kind
        ``"categorical"``, ``"numeric"``, ``"bool"`` or ``"string"``.
    dtype
        dtype of the values (numeric/bool) or of the categories (categorical).
    categories
        The source's own categories (categorical only).
    ordered
        Whether the categorical is ordered.
    nullable
        Whether values can be missing (pandas nullable integers/booleans): they are read as float with NaN.
    """

    kind: ColumnKind
    dtype: np.dtype
    categories: tuple[Any, ...] | None = None
    ordered: bool = False
    nullable: bool = False


@dataclass(frozen=True)
class MatrixInfo:
    """How one matrix element (``X``, ``layers/<k>``, ``obsm/<k>``) of a source is stored.

    Attributes
    ----------
    format
        ``"csr"``, ``"csc"`` or ``"dense"``.
    dtype
        dtype of the values.
    shape
        ``(n_obs, n_cols)``.
    nnz
        Stored values (``n_obs * n_cols`` for dense).
    """

    format: Literal["csr", "csc", "dense"]
    dtype: np.dtype
    shape: tuple[int, ...]
    nnz: int


def _column_schema_from_pandas(s: pd.Series) -> ColumnSchema:
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


class Source(ABC):
    """One input, opened lazily.

    Attributes
    ----------
    name
        Label in the collection's ``obs["source"]``.
    kind
        ``"h5ad"``, ``"zarr"`` or ``"anndata"``.
    path
        File path (``None`` for in-memory AnnData).
    n_obs
        Rows.
    var
        Gene annotations; the index holds the gene names (as strings).
    x_format
        ``"csr"``, ``"csc"`` or ``"dense"``.
    x_dtype
        dtype of the values.
    nnz
        Stored values in ``X`` (``n_obs * n_vars`` for dense).
    obs_schema
        obs columns in their order.
    """

    name: str
    kind: str
    path: Path | None
    n_obs: int
    var: pd.DataFrame
    x_format: Literal["csr", "csc", "dense"]
    x_dtype: np.dtype
    nnz: int
    obs_schema: dict[str, ColumnSchema]
    element: str

    @property
    def label(self) -> str:
        """How errors refer to this source."""
        return str(self.path) if self.path is not None else f"in-memory AnnData {self.name!r}"

    @property
    def n_vars(self) -> int:
        """Number of genes."""
        return int(self.var.shape[0])

    @abstractmethod
    def read_x(self, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``X`` (or the chosen layer), as CSR or dense, in the source's gene order."""

    @abstractmethod
    def matrix_keys(self) -> list[str]:
        """Return the matrix elements of the source: ``"X"`` (when present), ``"layers/<k>"``, ``"obsm/<k>"``."""

    @abstractmethod
    def matrix_info(self, element: str) -> MatrixInfo:
        """How ``element`` is stored."""

    @abstractmethod
    def read_matrix(self, element: str, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``element``, as CSR or dense."""

    @abstractmethod
    def read_obs(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows of obs column ``name``: codes (categorical, -1 for missing), values, or objects (string)."""

    @abstractmethod
    def read_obs_names(self, start: int, stop: int) -> np.ndarray:
        """Rows of the obs index, as an object array of str."""

    def string_uniques(self, name: str, limit: int) -> list[Any] | None:
        """Distinct values of a string column in order of appearance, or ``None`` when there are more than ``limit``."""
        seen: dict[Any, None] = {}
        step = 1 << 16
        for start in range(0, self.n_obs, step):
            vals = self.read_obs(name, start, min(self.n_obs, start + step))
            for v in pd.unique(pd.Series(vals, dtype=object).dropna()):
                seen.setdefault(v, None)
            if len(seen) > limit:
                return None
        return list(seen)

    def fingerprint(self) -> str | None:
        """Compute a quick content fingerprint of a file source (size, mtime and its first and last MiB)."""
        if self.path is None or not self.path.is_file():
            return None
        st = self.path.stat()
        h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
        with self.path.open("rb") as f:
            h.update(f.read(1 << 20))
            if st.st_size > 2 << 20:
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read(1 << 20))
        return h.hexdigest()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

    def _fail(self, element: str, problem: str, fix: str, cause: BaseException | None = None) -> SourceError:
        msg = f"{self.label}: {element}: {problem}; {fix}"
        err = SourceError(msg)
        if cause is not None:
            err.__cause__ = cause
        return err


# -- in-memory AnnData ------------------------------------------------------------------------------------------
class MemorySource(Source):
    """An in-memory AnnData, sliced in row blocks."""

    def __init__(self, adata: ad.AnnData, name: str, *, layer: str | None) -> None:
        self.name, self.kind, self.path = name, "anndata", None
        self.element = "X" if layer is None else f"layers/{layer}"
        if layer is None:
            X = adata.X
        elif layer in adata.layers:
            X = adata.layers[layer]
        else:
            raise self._fail(
                self.element, f"layer {layer!r} not found (layers: {list(adata.layers)})", "pick one of them"
            )
        if X is None:
            raise self._fail("X", "is None", "pass layer=... or give the AnnData an X")
        if sp.issparse(X):
            self.x_format = "csr" if X.format == "csr" else "csc"
            X = X.tocsr() if X.format != "csr" else X
            self.nnz = int(X.nnz)
        elif isinstance(X, np.ndarray):
            self.x_format = "dense"
            self.nnz = int(X.size)
        else:
            try:
                X = np.asarray(X)
            except Exception as e:
                raise self._fail(
                    self.element, f"has unsupported type {type(X).__name__}", "load it into memory", e
                ) from e
            self.x_format, self.nnz = "dense", int(X.size)
        self._X = X
        self.x_dtype = np.dtype(X.dtype)
        self.n_obs = int(adata.n_obs)
        var = adata.var.copy()
        var.index = pd.Index([str(v) for v in adata.var_names], dtype=object, name=adata.var_names.name)
        self.var = var
        self._obs = adata.obs
        self.obs_schema = {str(c): _column_schema_from_pandas(adata.obs[c]) for c in adata.obs.columns}
        self._matrices: dict[str, Any] = {}
        if adata.X is not None:
            self._matrices["X"] = adata.X
        self._matrices.update({f"layers/{k}": v for k, v in adata.layers.items() if k is not None})
        self._matrices.update({f"obsm/{k}": v for k, v in adata.obsm.items()})

    def matrix_keys(self) -> list[str]:
        """Return the matrix elements."""
        return list(self._matrices)

    def _matrix(self, element: str) -> Any:
        if element not in self._matrices:
            raise self._fail(element, "not found", f"available: {self.matrix_keys()}")
        return self._matrices[element]

    def matrix_info(self, element: str) -> MatrixInfo:
        """How ``element`` is stored."""
        m = self._matrix(element)
        if isinstance(m, pd.DataFrame):
            raise self._fail(element, "is a DataFrame", "store it as a numeric array")
        if sp.issparse(m):
            fmt: Literal["csr", "csc", "dense"] = "csr" if m.format == "csr" else "csc"
            return MatrixInfo(fmt, np.dtype(m.dtype), tuple(m.shape), int(m.nnz))
        m = np.asarray(m)
        return MatrixInfo("dense", np.dtype(m.dtype), tuple(m.shape), int(m.size))

    def read_matrix(self, element: str, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``element``."""
        m = self._matrix(element)
        if sp.issparse(m):
            return m[start:stop].tocsr()
        return np.asarray(m[start:stop])

    def read_x(self, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``X``."""
        return self._X[start:stop]

    def read_obs(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows of obs column ``name``."""
        s = self._obs[name].iloc[start:stop]
        schema = self.obs_schema[name]
        if schema.kind == "categorical":
            return np.asarray(s.cat.codes, dtype=np.int32)
        if schema.kind == "string":
            return s.to_numpy(dtype=object, na_value=None)
        if schema.nullable:
            return s.to_numpy(dtype=np.float64, na_value=np.nan)
        return s.to_numpy()

    def read_obs_names(self, start: int, stop: int) -> np.ndarray:
        """Rows of the obs index."""
        return np.asarray(self._obs.index[start:stop].astype(str), dtype=object)


# -- files: .h5ad (h5py) and AnnData zarr stores -----------------------------------------------------------------
def _is_h5py_string(arr: Any) -> bool:
    import h5py

    return isinstance(arr, h5py.Dataset) and h5py.check_string_dtype(arr.dtype) is not None


def _slice(arr: Any, start: int, stop: int) -> np.ndarray:
    if _is_h5py_string(arr):
        return np.asarray(arr.asstr()[start:stop], dtype=object)
    out = np.asarray(arr[start:stop])
    if out.dtype.kind in "TUSO":
        out = out.astype(object)
    return out


def _attr(node: Any, key: str, default: Any = None) -> Any:
    v = node.attrs.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    return v


class StoreSource(Source):
    """An AnnData stored in an ``.h5ad`` file (h5py) or a zarr store, read in row blocks."""

    def __init__(self, opener: Callable[[], Any], path: Path, kind: str, name: str, *, layer: str | None) -> None:
        self.name, self.kind, self.path = name, kind, path
        self._opener = opener
        self._root: Any = None
        self._nodes: dict[str, Any] = {}
        try:
            self._read_header(layer)
        except BaseException:
            self.close()
            raise
        self.close()  # reopened by the first read: only the source being scattered holds a file handle

    def _read_header(self, layer: str | None) -> None:
        import anndata as ad

        root = self._get_root()
        self.element = "X" if layer is None else f"layers/{layer}"
        for key in ("obs", "var"):
            if key not in root:
                raise self._fail(key, "is missing: this is not an AnnData file", "pass .h5ad or AnnData zarr files")
        if self.element not in root:
            what = "X is missing" if layer is None else f"layer {layer!r} not found"
            raise self._fail(self.element, what, "pass layer=... naming an existing layer" if layer else "add an X")
        try:
            var = ad.io.read_elem(root["var"])
        except Exception as e:
            raise self._fail("var", f"cannot be read ({e})", "re-write the file with a current anndata", e) from e
        var.index = pd.Index([str(v) for v in var.index], dtype=object, name=var.index.name)
        self.var = var
        enc = _attr(self._x, "encoding-type")
        shape = _attr(self._x, "shape")
        if enc in ("csr_matrix", "csc_matrix"):
            self.x_format = "csr" if enc == "csr_matrix" else "csc"
            n_obs, n_vars = (int(s) for s in shape)
            self.nnz = int(self._data.shape[0])
            self.x_dtype = np.dtype(self._data.dtype)
            self._csc_cache: sp.csr_matrix | None = None
        elif hasattr(self._x, "shape") and len(self._x.shape) == 2:
            self.x_format = "dense"
            n_obs, n_vars = (int(s) for s in self._x.shape)
            self.nnz = n_obs * n_vars
            self.x_dtype = np.dtype(self._x.dtype)
        else:
            raise self._fail(
                self.element,
                f"has encoding {enc!r}; annshard reads CSR, CSC or dense matrices",
                "re-write it with anndata >= 0.8",
            )
        if n_vars != self.var.shape[0]:
            raise self._fail(
                self.element, f"has {n_vars} columns but var has {self.var.shape[0]} rows", "the file is corrupt"
            )
        self.n_obs = n_obs
        index_key = _attr(self._obs, "_index")
        if index_key is None:
            raise self._fail("obs", "has no '_index' attribute (a legacy format)", "re-write it with anndata >= 0.8")
        self._index_key = str(index_key)
        order = _attr(self._obs, "column-order", [])
        self.obs_schema = {str(c): self._column_schema(str(c)) for c in list(order)}

    def _get_root(self) -> Any:
        if self._root is None:
            self._root = self._opener()
            self._nodes = {}
        return self._root

    def _node(self, key: str) -> Any:
        root = self._get_root()
        if key not in self._nodes:
            self._nodes[key] = root[key]
        return self._nodes[key]

    @property
    def _x(self) -> Any:
        return self._node(self.element)

    @property
    def _data(self) -> Any:
        return self._node(f"{self.element}/data")

    @property
    def _indices(self) -> Any:
        return self._node(f"{self.element}/indices")

    @property
    def _indptr(self) -> Any:
        return self._node(f"{self.element}/indptr")

    @property
    def _obs(self) -> Any:
        return self._node("obs")

    def _column_schema(self, name: str) -> ColumnSchema:
        import anndata as ad

        node = self._obs[name]
        enc = _attr(node, "encoding-type")
        if enc == "categorical":
            cats = ad.io.read_elem(node["categories"])
            cats = tuple(_py(c) for c in np.asarray(cats).tolist())
            return ColumnSchema("categorical", np.dtype(object), cats, bool(_attr(node, "ordered", False)))
        if enc in ("string-array", "nullable-string-array"):
            return ColumnSchema("string", np.dtype(object))
        if enc in ("nullable-integer", "nullable-boolean"):
            dt = np.dtype(node["values"].dtype)
            return ColumnSchema("bool" if dt.kind == "b" else "numeric", dt, nullable=True)
        if enc == "array" or enc is None:
            dt = np.dtype(node.dtype) if not _is_h5py_string(node) else np.dtype(object)
            if dt.kind in "TUSO":
                return ColumnSchema("string", np.dtype(object))
            return ColumnSchema("bool" if dt.kind == "b" else "numeric", dt)
        raise self._fail(f"obs/{name}", f"has unsupported encoding {enc!r}", "drop it with obs_columns=[...]")

    def read_x(self, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``X``: one contiguous read of each CSR array."""
        try:
            if self.x_format == "dense":
                return np.asarray(self._x[start:stop])
            if self.x_format == "csc":
                return self._csc_as_csr()[start:stop]
            indptr = np.asarray(self._indptr[start : stop + 1], dtype=np.int64)
            p0, p1 = int(indptr[0]), int(indptr[-1])
            data = np.asarray(self._data[p0:p1])
            indices = np.asarray(self._indices[p0:p1])
            return sp.csr_matrix((data, indices, indptr - p0), shape=(stop - start, self.n_vars))
        except SourceError:
            raise
        except Exception as e:
            raise self._fail(
                self.element, f"rows {start}:{stop} cannot be read ({e})", "the file is truncated or corrupt", e
            ) from e

    def matrix_keys(self) -> list[str]:
        """Return the matrix elements."""
        root = self._get_root()
        keys = ["X"] if "X" in root else []
        for group in ("layers", "obsm"):
            if group in root and hasattr(root[group], "keys"):
                keys += [f"{group}/{k}" for k in root[group]]
        return keys

    def matrix_info(self, element: str) -> MatrixInfo:
        """How ``element`` is stored."""
        root = self._get_root()
        if element not in root:
            raise self._fail(element, "not found", f"available: {self.matrix_keys()}")
        node = root[element]
        enc = _attr(node, "encoding-type")
        if enc in ("csr_matrix", "csc_matrix"):
            shape = tuple(int(v) for v in _attr(node, "shape"))
            fmt: Literal["csr", "csc", "dense"] = "csr" if enc == "csr_matrix" else "csc"
            return MatrixInfo(fmt, np.dtype(node["data"].dtype), shape, int(node["data"].shape[0]))
        if hasattr(node, "shape") and hasattr(node, "dtype") and len(node.shape) in (1, 2):
            shape = tuple(int(v) for v in node.shape)
            if len(shape) == 1:
                shape = (shape[0], 1)
            return MatrixInfo("dense", np.dtype(node.dtype), shape, int(np.prod(shape)))
        raise self._fail(element, f"has encoding {enc!r}", "store it as a CSR, CSC or dense numeric array")

    def read_matrix(self, element: str, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``element``."""
        import anndata as ad

        node = self._node(element)
        try:
            if _attr(node, "encoding-type") in ("csr_matrix", "csc_matrix"):
                return sp.csr_matrix(ad.io.sparse_dataset(node)[start:stop])
            out = np.asarray(node[start:stop])
            return out.reshape(-1, 1) if out.ndim == 1 else out
        except Exception as e:
            raise self._fail(
                element, f"rows {start}:{stop} cannot be read ({e})", "the file is truncated or corrupt", e
            ) from e

    def _csc_as_csr(self) -> sp.csr_matrix:
        # CSC cannot be read in row blocks; it is converted once, in memory (documented limitation)
        if self._csc_cache is None:
            m = sp.csc_matrix(
                (np.asarray(self._data[:]), np.asarray(self._indices[:]), np.asarray(self._indptr[:])),
                shape=(self.n_obs, self.n_vars),
            )
            self._csc_cache = m.tocsr()
        return self._csc_cache

    def read_obs(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows of obs column ``name``."""
        node = self._obs[name]
        schema = self.obs_schema[name]
        try:
            if schema.kind == "categorical":
                return np.asarray(node["codes"][start:stop], dtype=np.int32)
            enc = _attr(node, "encoding-type")
            if enc in ("nullable-integer", "nullable-boolean", "nullable-string-array"):
                vals = _slice(node["values"], start, stop)
                mask = np.asarray(node["mask"][start:stop], dtype=bool)
                if schema.kind == "string":
                    vals = vals.astype(object)
                    vals[mask] = None
                    return vals
                out = vals.astype(np.float64)
                out[mask] = np.nan
                return out
            return _slice(node, start, stop)
        except Exception as e:
            raise self._fail(
                f"obs/{name}", f"rows {start}:{stop} cannot be read ({e})", "the file is corrupt", e
            ) from e

    def read_obs_names(self, start: int, stop: int) -> np.ndarray:
        """Rows of the obs index."""
        try:
            node = self._obs[self._index_key]
            if _attr(node, "encoding-type") == "nullable-string-array":
                node = node["values"]
            return _slice(node, start, stop).astype(str).astype(object)
        except Exception as e:
            raise self._fail("obs index", f"rows {start}:{stop} cannot be read ({e})", "the file is corrupt", e) from e

    def close(self) -> None:
        """Close the file; a later read reopens it (so only the source being read holds a handle and its caches)."""
        root, self._root, self._nodes = self._root, None, {}
        if root is not None and hasattr(root, "close"):
            with contextlib.suppress(Exception):
                root.close()


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _open_h5ad(path: Path, name: str, layer: str | None) -> StoreSource:
    import h5py

    with path.open("rb") as f:
        head = f.read(8)
    if head != _HDF5_SIGNATURE:
        msg = f"{path}: is not an AnnData .h5ad file (not HDF5); pass .h5ad files or AnnData zarr directories"
        raise SourceError(msg)
    try:
        h5py.File(path, "r").close()
    except Exception as e:
        msg = f"{path}: the HDF5 file cannot be opened ({e}); it is truncated or corrupt, re-download or re-write it"
        raise SourceError(msg) from e
    try:
        return StoreSource(lambda: h5py.File(path, "r"), path, "h5ad", name, layer=layer)
    except SourceError:
        raise
    except Exception as e:
        msg = f"{path}: cannot be read as AnnData ({e}); it is truncated or corrupt, re-download or re-write it"
        raise SourceError(msg) from e


def _open_zarr(path: Path, name: str, layer: str | None) -> StoreSource:
    import zarr

    try:
        zarr.open_group(path, mode="r")
    except Exception as e:
        msg = f"{path}: is not a zarr store ({e}); pass .h5ad files or AnnData zarr directories"
        raise SourceError(msg) from e
    try:
        return StoreSource(lambda: zarr.open_group(path, mode="r"), path, "zarr", name, layer=layer)
    except SourceError:
        raise
    except Exception as e:
        msg = f"{path}: cannot be read as AnnData ({e}); it is corrupt, re-write it"
        raise SourceError(msg) from e


def open_source(obj: Any, name: str, *, layer: str | None = None) -> Source:
    """Open one source lazily.

    Parameters
    ----------
    obj
        A path to an ``.h5ad`` file or an AnnData zarr directory, or an AnnData.
    name
        Its label in ``obs["source"]``.
    layer
        Read this layer instead of ``X``.

    Raises
    ------
    SourceError
        If it is missing, not AnnData, corrupt or empty.
    """
    import anndata as ad

    if isinstance(obj, ad.AnnData):
        if obj.isbacked and obj.filename is not None:
            src: Source = _open_h5ad(Path(obj.filename), name, layer)
        else:
            src = MemorySource(obj, name, layer=layer)
    elif isinstance(obj, str | os.PathLike):
        path = Path(obj)
        if not path.exists():
            msg = f"{path}: no such file or directory; check the path"
            raise SourceError(msg)
        src = _open_zarr(path, name, layer) if path.is_dir() else _open_h5ad(path, name, layer)
    else:
        msg = f"source {name!r} is a {type(obj).__name__}; pass .h5ad paths, AnnData zarr paths or AnnData objects"
        raise SourceError(msg)
    if src.n_obs == 0:
        src.close()
        msg = f"{src.label}: has 0 rows (cells); remove it from the sources"
        raise SourceError(msg)
    if src.n_vars == 0:
        src.close()
        msg = f"{src.label}: has 0 genes (var is empty); remove it from the sources"
        raise SourceError(msg)
    return src


def source_names(sources: Any) -> list[tuple[str, Any]]:
    """Pair each source with a unique label: the file name, the path when names collide, ``adata-<i>`` otherwise."""
    if isinstance(sources, dict):
        return [(str(k), v) for k, v in sources.items()]
    if isinstance(sources, str | os.PathLike) or not hasattr(sources, "__iter__"):
        sources = [sources]
    items = list(sources)
    names = []
    for i, obj in enumerate(items):
        if isinstance(obj, str | os.PathLike):
            names.append(Path(obj).name)
        else:
            fn = getattr(obj, "filename", None)
            names.append(Path(fn).name if fn else f"adata-{i}")
    counts = pd.Series(names).value_counts()
    out = []
    for i, (obj, n) in enumerate(zip(items, names, strict=True)):
        if counts[n] > 1:
            n = str(Path(obj)) if isinstance(obj, str | os.PathLike) else f"{n}-{i}"
        out.append((n, obj))
    if len({n for n, _ in out}) != len(out):
        msg = "sources have colliding names; pass a dict {name: source} to name them"
        raise SourceError(msg)
    return out


def open_sources(sources: Any, *, layer: str | None = None) -> list[Source]:
    """Open all sources, closing those already opened if one fails."""
    opened: list[Source] = []
    try:
        for name, obj in source_names(sources):
            opened.append(open_source(obj, name, layer=layer))
    except BaseException:
        for s in opened:
            s.close()
        raise
    if not opened:
        msg = "no sources given; pass at least one .h5ad path, AnnData zarr path or AnnData"
        raise SourceError(msg)
    return opened
