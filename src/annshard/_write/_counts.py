"""Storing raw counts compactly: deciding, from the values themselves, whether they are whole numbers.

The scatter pass sees every value once; :class:`ValueStats` keeps, per source,
whether all its values are whole numbers and their range. Before the shards
are written, :func:`resolve_counts` turns the spec's ``counts_dtype`` into a
fact: ``"auto"`` becomes ``"uint16"`` when every value fits, else ``None``
(values stored as they are); an explicit dtype (a caller's choice, or an
existing collection's when appending) is checked, and a source whose values
would not survive is refused by name. Nothing is ever rounded or clipped.

:func:`check_exact` runs on every block of a source whose dtype does not cast
safely into the stored value dtype (an append of floats to an integer
collection, of int64 to int32, ...), *before* the block is cast: a value that
the cast would change (a fraction, a value out of range, NaN into integers) is
refused, naming the source, before anything reaches the collection. Rounding a
float to a narrower float (float64 into a float32 collection) is the one change
allowed (it is the stored precision), unless the value overflows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from annshard._errors import SourceError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from annshard._store._manifest import StorageSpec

    from ._sources import Source

__all__ = ["AUTO", "ValueStats", "check_counts_dtype", "check_exact", "resolve_counts"]

AUTO = "auto"
_PIECE = 1 << 20  # values checked at a time (bounded temporaries)


@dataclass
class ValueStats:
    """Whether a source's values are whole numbers, and their range."""

    whole: bool = True
    lo: float = np.inf
    hi: float = -np.inf

    def update(self, values: np.ndarray) -> None:
        """Take ``values`` (1-D) into account."""
        if not self.whole or values.shape[0] == 0:
            return
        if values.dtype.kind in "iu":
            self.lo = min(self.lo, float(values.min()))
            self.hi = max(self.hi, float(values.max()))
            return
        for start in range(0, values.shape[0], _PIECE):
            piece = values[start : start + _PIECE]
            lo, hi = float(piece.min()), float(piece.max())
            if not (np.isfinite(lo) and np.isfinite(hi) and np.array_equal(np.rint(piece), piece)):
                self.whole = False  # NaN and inf are not whole numbers either
                return
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def merge(self, other: ValueStats) -> None:
        """Take another part's statistics into account (of the same source)."""
        self.whole = self.whole and other.whole
        self.lo, self.hi = min(self.lo, other.lo), max(self.hi, other.hi)

    def fits(self, dtype: np.dtype) -> bool:
        """Whether every value is stored exactly as ``dtype``."""
        info = np.iinfo(dtype)
        return self.whole and (self.lo == np.inf or (self.lo >= info.min and self.hi <= info.max))

    def describe(self) -> str:
        """Describe the values, for error messages."""
        if not self.whole:
            return "has values that are not whole numbers (normalised or log-transformed data?)"
        return f"has values from {self.lo:g} to {self.hi:g}"


def check_counts_dtype(value: str | None, data_dtype: str, x_format: str) -> str | None:
    """Validate a requested ``counts_dtype``; dense or already-narrow values are never stored as counts."""
    if value is None:
        return None
    if value == AUTO:
        narrow = np.dtype(data_dtype).itemsize <= 2 or np.dtype(data_dtype).kind not in "fiu"
        return None if x_format != "csr" or narrow else AUTO
    dt = np.dtype(value)
    if dt.kind != "u" or dt.itemsize > 2:
        msg = f"storage counts_dtype must be 'auto', 'uint16', 'uint8' or None, not {value!r}"
        raise ValueError(msg)
    if x_format != "csr":
        msg = "storage counts_dtype applies to CSR X only; use counts_dtype=None with a dense X"
        raise ValueError(msg)
    if np.dtype(data_dtype).kind not in "fiu":
        msg = f"storage counts_dtype needs numeric values, not {data_dtype}"
        raise ValueError(msg)
    return dt.name


def resolve_counts(
    spec: StorageSpec, sources: Sequence[Source], stats: Sequence[ValueStats], *, element: str = "X"
) -> StorageSpec:
    """Return ``spec`` with ``counts_dtype`` decided (``"auto"``) or checked against every source's values.

    Raises
    ------
    SourceError
        If an explicit ``counts_dtype`` cannot hold a source's values exactly.
    """
    if spec.counts_dtype is None:
        return spec
    if spec.counts_dtype == AUTO:
        ok = all(s.fits(np.dtype(np.uint16)) for s in stats)
        return replace(spec, counts_dtype="uint16" if ok else None)
    dt = np.dtype(spec.counts_dtype)
    for src, st in zip(sources, stats, strict=True):
        if not st.fits(dt):
            msg = (
                f"{src.label}: {element} {st.describe()}, but this collection stores values as whole numbers "
                f"in {dt.name} (storage counts_dtype={dt.name!r}), which would change them. Write these "
                "sources to a new collection (storage={'counts_dtype': None} keeps any values as they are)"
            )
            raise SourceError(msg)
    return spec


def _example(values: np.ndarray, bad: np.ndarray) -> str:
    return ", ".join(f"{v!r}" for v in values[bad][:3].tolist())


def check_exact(values: np.ndarray, dtype: np.dtype, label: str, element: str) -> None:
    """Refuse ``values`` that a cast to ``dtype`` would change (float-to-narrower-float rounding excepted).

    Parameters
    ----------
    values
        1-D stored values of a block, in the source's dtype.
    dtype
        The collection's stored value dtype.
    label, element
        The source and matrix, for the message.

    Raises
    ------
    SourceError
        Naming the source, the values and what to do.
    """
    src, dt = values.dtype, np.dtype(dtype)
    if np.can_cast(src, dt, "safe"):
        return
    for start in range(0, values.shape[0], _PIECE):
        piece = values[start : start + _PIECE]
        problem = _change(piece, dt)
        if problem is not None:
            what, bad = problem
            msg = (
                f"{label}: {element} has {what} (e.g. {_example(piece, bad)}), which the collection's stored "
                f"dtype {dt} would change; nothing was written. Convert the source first (for example "
                f"adata.X = adata.X.astype(...)) if that is intended, or write it to a new collection"
            )
            raise SourceError(msg)


def _change(v: np.ndarray, dt: np.dtype) -> tuple[str, np.ndarray] | None:
    """Describe what a cast of ``v`` to ``dt`` would change, with a mask of the changed values (``None``: nothing)."""
    if dt.kind == "f":
        if v.dtype.kind == "f":  # rounding to the stored precision is allowed; overflow is not
            bad = np.isfinite(v) & (np.abs(v) > np.finfo(dt).max)
            return ("values beyond the range of " + dt.name, bad) if bad.any() else None
        if v.dtype.kind in "iu":  # integers above 2**(mantissa bits + 1) may not be representable
            limit = 2 ** (np.finfo(dt).nmant + 1)
            big = np.flatnonzero(np.abs(v.astype(np.float64)) >= limit)
            bad = np.zeros(v.shape, dtype=bool)
            for i in big:
                bad[i] = int(v[i]) != int(np.asarray(v[i]).astype(dt))
            return (f"integers that {dt.name} cannot hold exactly", bad) if bad.any() else None
        return None
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if v.dtype.kind == "f":
            bad = ~np.isfinite(v)
            if bad.any():
                return "NaN or infinite values (not integers)", bad
            bad = np.rint(v) != v
            if bad.any():
                return "values that are not whole numbers", bad
        if v.dtype.kind in "iuf":
            bad = (v < info.min) | (v > info.max)
            if bad.any():
                return f"values outside the range of {dt.name} [{info.min}, {info.max}]", bad
        return None
    if dt.kind == "b":
        bad = (v != 0) & (v != 1)
        return ("values other than 0 and 1", bad) if bad.any() else None
    return None
