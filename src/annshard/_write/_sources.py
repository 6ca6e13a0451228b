"""Sources: ``.h5ad`` files, AnnData zarr stores and in-memory AnnData, opened lazily.

Every element is read with anndata's own IO, so any file that
``anndata.read_h5ad`` / ``anndata.read_zarr`` reads is read with the same
values and dtypes:

- ``obs`` and ``var`` with :func:`anndata.io.read_elem` (whole, per source, as
  anndata does; ``obs`` is dropped again when the source is closed);
- CSR matrices in row blocks with :func:`anndata.io.sparse_dataset`
  (``[start:stop]``), CSC matrices whole with ``read_elem`` (converted to CSR in
  memory once: CSC cannot be read by rows), dense arrays by slicing the stored
  array; numeric ``obsm`` DataFrames whole with ``read_elem``;
- ``.h5ad`` files without encoding metadata (anndata < 0.7) through
  ``anndata.read_h5ad(path, backed="r")``: ``X`` stays on disk.

A :class:`Source` exposes every row-aligned matrix (``X``, ``layers/<k>``,
``obsm/<k>``) through :meth:`Source.matrix_keys`, :meth:`Source.matrix_info`
and :meth:`Source.read_matrix`. Every problem is raised as a
:class:`~annshard.SourceError` that names the source, the element and the fix.
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

from annshard._compat import anndata_io_registry_error
from annshard._errors import SourceError

if TYPE_CHECKING:
    from collections.abc import Callable

    import anndata as ad

__all__ = ["ColumnSchema", "MatrixInfo", "Source", "open_source", "open_sources"]

ColumnKind = Literal["categorical", "numeric", "bool", "string"]
MatrixFormat = Literal["csr", "csc", "dense"]


@dataclass(frozen=True)
class MatrixInfo:
    """How one row-aligned matrix is stored in a source.

    Attributes
    ----------
    format
        ``"csr"``, ``"csc"`` or ``"dense"``.
    dtype
        dtype of the values.
    shape
        ``(n_obs, n_cols)``; ``n_obs`` is the source's.
    nnz
        Stored values (``n_obs * n_cols`` for dense).
    """

    format: MatrixFormat
    dtype: np.dtype
    shape: tuple[int, ...]
    nnz: int


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


def _numeric_frame_dtype(df: pd.DataFrame) -> np.dtype | None:
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


def _frame_as_array(df: pd.DataFrame) -> np.ndarray:
    dt = _numeric_frame_dtype(df)
    return df.to_numpy(dtype=dt, na_value=np.nan)


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
    element
        The matrix written as the collection's ``X``: ``"X"`` or ``"layers/<layer>"``.
    obs_schema
        obs columns in their order.
    """

    name: str
    kind: str
    path: Path | None
    n_obs: int
    var: pd.DataFrame
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

    # -- matrices -----------------------------------------------------------------------------------------------
    @abstractmethod
    def matrix_keys(self) -> list[str]:
        """Every row-aligned matrix: ``"X"`` (when not None), ``"layers/<k>"``, ``"obsm/<k>"`` (array-like obsm)."""

    @abstractmethod
    def matrix_info(self, element: str) -> MatrixInfo:
        """How ``element`` is stored.

        Raises
        ------
        SourceError
            Naming the file and the element, if it is absent or not a matrix annshard reads.
        """

    @abstractmethod
    def read_matrix(self, element: str, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``element``: CSR (stored CSR or CSC) or a dense 2-D ndarray."""

    def read_x(self, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of ``X`` (or the chosen layer), as CSR or dense, in the source's gene order."""
        return self.read_matrix(self.element, start, stop)

    @property
    def x_info(self) -> MatrixInfo:
        """:meth:`matrix_info` of :attr:`element`."""
        return self.matrix_info(self.element)

    @property
    def x_format(self) -> MatrixFormat:
        """``"csr"``, ``"csc"`` or ``"dense"``."""
        return self.x_info.format

    @property
    def x_dtype(self) -> np.dtype:
        """Return the dtype of the values."""
        return self.x_info.dtype

    @property
    def nnz(self) -> int:
        """Stored values in ``X`` (``n_obs * n_vars`` for dense)."""
        return self.x_info.nnz

    def _missing(self, element: str) -> SourceError:
        keys = self.matrix_keys()
        if element.startswith("layers/"):
            what = f"layer {element[7:]!r} not found"
        elif element == "X":
            what = "X is missing (None)"
        else:
            what = "not found, or not a matrix annshard reads"
        return self._fail(element, f"{what} (matrices: {keys})", "pick one of them")

    def _check_x(self) -> None:
        """Check the written matrix and its width against var."""
        if self.element not in self.matrix_keys():
            fix = "pass layer=... naming an existing layer" if self.element != "X" else "pass layer=... or add an X"
            what = f"layer {self.element[7:]!r} not found" if self.element != "X" else "X is missing (None)"
            raise self._fail(self.element, f"{what} (matrices: {self.matrix_keys()})", fix)
        info = self.x_info
        if info.shape[0] != self.n_obs:
            raise self._fail(
                self.element, f"has {info.shape[0]} rows but obs has {self.n_obs} rows", "the file is damaged"
            )
        if info.shape[1] != self.n_vars:
            raise self._fail(
                self.element, f"has {info.shape[1]} columns but var has {self.n_vars} rows", "the file is damaged"
            )

    # -- obs ----------------------------------------------------------------------------------------------------
    @abstractmethod
    def obs_frame(self) -> pd.DataFrame:
        """Return the whole obs DataFrame, as anndata reads it (cached until :meth:`close`)."""

    def read_obs(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows of obs column ``name``: codes (categorical, -1 for missing), values, or objects (string)."""
        s = self.obs_frame()[name].iloc[start:stop]
        schema = self.obs_schema[name]
        if schema.kind == "categorical":
            return np.asarray(s.cat.codes, dtype=np.int32)
        if schema.kind == "string":
            return s.to_numpy(dtype=object, na_value=None)
        if schema.nullable:
            return s.to_numpy(dtype=np.float64, na_value=np.nan)
        return s.to_numpy(dtype=schema.dtype)

    def read_obs_names(self, start: int, stop: int) -> np.ndarray:
        """Rows of the obs index, as an object array of str."""
        return np.asarray(self.obs_frame().index[start:stop].astype(str), dtype=object)

    def string_uniques(self, name: str, limit: int) -> list[Any] | None:
        """Distinct values of a string column in order of appearance, or ``None`` when there are more than ``limit``."""
        s = self.obs_frame()[name]
        uniq = list(pd.unique(s.dropna().to_numpy(dtype=object)))
        return None if len(uniq) > limit else uniq

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


def _var_with_str_index(var: pd.DataFrame) -> pd.DataFrame:
    var = var.copy()
    var.index = pd.Index([str(v) for v in var.index], dtype=object, name=var.index.name)
    return var


# -- AnnData objects: in memory, or backed (.h5ad files without encoding metadata) ------------------------------
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
        self.var = _var_with_str_index(adata.var)
        self.obs_schema = {str(c): _column_schema_from_pandas(adata.obs[c]) for c in adata.obs.columns}
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
                return m if _numeric_frame_dtype(m) is not None else None
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
            dt = _numeric_frame_dtype(m)
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
            return _frame_as_array(m.iloc[start:stop])
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


# -- files with encoding metadata: .h5ad (h5py) and AnnData zarr stores ------------------------------------------
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
        self.var = _var_with_str_index(self._read_elem("var"))
        obs = self.obs_frame()
        self.n_obs = int(obs.shape[0])
        self.obs_schema = {str(c): _column_schema_from_pandas(obs[c]) for c in obs.columns}
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
            dt = _numeric_frame_dtype(df)
            if dt is None:
                return None
            self._frames.add(key)
            self._cache[key] = _frame_as_array(df)
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
        import anndata as ad

        info = self.matrix_info(element)
        try:
            if element in self._cache:
                m = self._cache[element]
            elif element in self._frames:  # a numeric obsm DataFrame, read whole
                m = self._cache[element] = _frame_as_array(self._read_elem(element))
            elif info.format == "csc":
                # CSC cannot be read in row blocks; it is read whole and converted once, in memory (documented)
                m = self._cache[element] = sp.csr_matrix(self._read_elem(element))
            elif info.format == "csr":
                m = self._cache[element] = ad.io.sparse_dataset(self._get_root()[element])
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


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _open_h5ad(path: Path, name: str, layer: str | None) -> Source:
    import h5py

    with path.open("rb") as f:
        head = f.read(8)
    if head != _HDF5_SIGNATURE:
        msg = f"{path}: is not an AnnData .h5ad file (not HDF5); pass .h5ad files or AnnData zarr directories"
        raise SourceError(msg)
    try:
        with h5py.File(path, "r") as f:
            legacy = "encoding-type" not in f.attrs and "obs" in f and "var" in f
    except Exception as e:
        msg = f"{path}: the HDF5 file cannot be opened ({e}); it is truncated or corrupt, re-download or re-write it"
        raise SourceError(msg) from e
    if legacy:
        return BackedSource(path, name, layer=layer)
    return StoreSource(lambda: h5py.File(path, "r"), path, "h5ad", name, layer=layer)


def _open_zarr(path: Path, name: str, layer: str | None) -> Source:
    import zarr

    try:
        zarr.open_group(path, mode="r")
    except Exception as e:
        msg = f"{path}: is not a zarr store ({e}); pass .h5ad files or AnnData zarr directories"
        raise SourceError(msg) from e
    return StoreSource(lambda: zarr.open_group(path, mode="r"), path, "zarr", name, layer=layer)


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
            src = AnnDataSource(obj, name, layer=layer)
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
