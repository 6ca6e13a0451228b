"""The scatter's bucket files: a bucket's rows appended to its files, strings as UTF-8 bytes and lengths.

Each scatter part appends to its own files of each bucket (``<bucket>.data`` / ``.indices`` / ``.rowlen`` of a
matrix, ``.data.u16`` for compact counts, :mod:`._compact`; ``<key>.bytes`` / ``.len`` of a string column), which
the gather pass reads back in row order (:mod:`._gather`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._compact import SUFFIX
from ._gather import CSRParts

if TYPE_CHECKING:
    from ._layout import Layout

__all__ = ["append", "append_rows", "append_strings", "encode_strings"]


def encode_strings(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """UTF-8 bytes of an object array of str (``None`` for missing) and the per-item lengths (``-1``: missing)."""
    parts = [None if v is None else str(v).encode() for v in values]
    lengths = np.fromiter((-1 if p is None else len(p) for p in parts), dtype=np.int64, count=len(parts))
    return b"".join(p for p in parts if p is not None), lengths


def append(path: Any, arr: np.ndarray | bytes) -> None:
    """Append ``arr``'s bytes (C order) to the file at ``path``."""
    with open(path, "ab") as f:
        f.write(arr if isinstance(arr, bytes) else memoryview(np.ascontiguousarray(arr)).cast("B"))


def append_rows(
    layout: Layout, k: int, prefix: str, M: CSRParts | np.ndarray, r0: int, r1: int, *, compact: bool = False
) -> None:
    """Append rows ``r0:r1`` of ``M`` to bucket ``k``'s ``<prefix>data`` (``.u16``: compact), indices, rowlen."""
    if isinstance(M, CSRParts):
        p0, p1 = int(M.indptr[r0]), int(M.indptr[r1])
        append(layout.file(k, f"{prefix}data{SUFFIX if compact else ''}"), M.data[p0:p1])
        append(layout.file(k, f"{prefix}indices"), M.indices[p0:p1])
        append(layout.file(k, f"{prefix}rowlen"), np.diff(M.indptr[r0 : r1 + 1]))
    else:
        append(layout.file(k, f"{prefix}data"), M[r0:r1])


def append_strings(layout: Layout, k: int, key: str, values: np.ndarray) -> None:
    """Append ``values`` (str or ``None``) to bucket ``k``'s ``<key>.bytes`` and ``<key>.len`` (:func:`encode_strings`)."""
    blob, lengths = encode_strings(values)
    append(layout.file(k, f"{key}.bytes"), blob)
    append(layout.file(k, f"{key}.len"), lengths)
