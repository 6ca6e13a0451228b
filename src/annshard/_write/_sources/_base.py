"""The :class:`Source` interface every input kind implements, and what it reports of its matrices and obs columns."""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from annshard._errors import SourceError

if TYPE_CHECKING:
    from pathlib import Path

    import scipy.sparse as sp


__all__ = ["ColumnKind", "ColumnSchema", "MatrixFormat", "MatrixInfo", "Source"]

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
