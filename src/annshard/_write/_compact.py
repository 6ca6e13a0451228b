"""Compact bucket values: raw counts travel through the bucket files as ``uint16``, not in their source dtype.

Whether a matrix's values are stored as counts is settled only after the scatter
pass has seen them all (:mod:`._counts`), so the bucket files used to hold them in
the stored value dtype (``float32`` for the usual counts matrix), and the gather
narrowed them to ``uint16`` when it wrote the shard: twice the bytes through the
page cache in both passes, for values that end up as ``uint16`` anyway.

Each scatter part now writes a CSR matrix's values as ``uint16`` (file
``<prefix>data.u16``) for as long as every value it has seen is a whole number in
``[0, 65535]`` — which it checks by that very cast (:func:`compact_values`: cast,
compare; the comparison is also the value statistics' "whole number" test). From
the first block that is not, the part appends to ``<prefix>data`` in the stored
dtype, as before, and never goes back: a bucket's values in one part are its
compact file followed by its other file, in row order. The gather reads a
bucket's values in the stored dtype, widening compact pieces (:func:`load_values`):
its row permutation (scipy's ``csr_row_index``, :mod:`annshard._csr`) is fast for
4-byte values beside ``uint16`` gene indices and falls back to numpy for two
``uint16`` arrays (measured: ~3x the permute's CPU), and the shard writer narrows
them again. So the scatter pass writes, and the gather reads, half the bytes of
the values; the values are checked (cast, compare) after the scatter's row
permutation, which stays on the fast path too. The shards are the same bytes either way: the counts
filter stores exactly these integers.

Only CSR values planned as counts (``counts_dtype`` ``"auto"`` or set) wider than
two bytes are compacted; normalised values are checked once (the first block of a
part fails) and then written as before.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from annshard._store._manifest import StorageSpec

    from ._counts import ValueStats
    from ._gather import CSRParts
    from ._layout import Layout
    from ._memory import Buffers

__all__ = ["COMPACT", "SUFFIX", "compact_block", "compact_values", "eligible", "load_values"]

COMPACT = np.dtype(np.uint16)
"""The dtype of compact bucket values."""
SUFFIX = ".u16"
"""Appended to a values file's key when it holds compact values."""


def eligible(storage: StorageSpec) -> bool:
    """Whether a matrix stored as ``storage`` starts its scatter parts with compact values."""
    dtype = np.dtype(storage.data_dtype)
    return storage.x_format == "csr" and storage.counts_dtype is not None and dtype.itemsize > COMPACT.itemsize


def compact_values(values: np.ndarray, stats: ValueStats, *, out: np.ndarray | None = None) -> np.ndarray | None:
    """Return ``values`` as ``uint16`` when the cast keeps every one exactly (and update ``stats``), else ``None``.

    ``out``: a ``uint16`` array of the same length to cast into. ``None`` leaves ``stats`` untouched: the caller
    then takes the values into account as they are.
    """
    compact = np.empty(values.shape[0], dtype=COMPACT) if out is None else out
    with np.errstate(invalid="ignore", over="ignore"):  # NaN, inf and out-of-range values: found unequal below
        np.copyto(compact, values, casting="unsafe")
    if not np.array_equal(compact, values):
        return None
    stats.update(compact)  # the same whole-number range as of ``values``: they are equal
    return compact


def compact_block(
    M: CSRParts, stats: ValueStats, compact: list[bool], j: int, buffers: Buffers | None, key: str
) -> CSRParts:
    """Take a permuted block's values into ``stats``; return it with compact values while matrix ``j``'s are.

    ``compact[j]``: whether the scatter part's values files of matrix ``j`` are still compact (set to ``False``
    at its first block that is not counts). ``buffers``: the cast goes into ``<key>.compact``.
    """
    if compact[j]:
        out = None if buffers is None else buffers.array(f"{key}.compact", M.data.shape[0], COMPACT)
        small = compact_values(M.data, stats, out=out)
        if small is not None:
            return dataclasses.replace(M, data=small)
        compact[j] = False  # from this block on, the values as they are, into the part's other files
    stats.update(M.data)
    return M


def load_values(layout: Layout, k: int, prefix: str, dtype: np.dtype, nnz: int) -> np.ndarray:
    """Bucket ``k``'s values of ``<prefix>data`` from every part, in part order (in a part: compact, then other).

    In ``dtype``, compact pieces widened (exact): the gather's row copy is fast for 4-byte values beside
    ``uint16`` gene indices, not for two ``uint16`` arrays (``annshard._csr``).

    Raises
    ------
    OSError
        If the files hold other than ``nnz`` values, or are cut mid-value (damaged temporary files).
    """
    key = f"{prefix}data"
    parts = []
    for part in sorted(layout.workdir.iterdir()):
        for name, dt in ((f"{k:05d}.{key}{SUFFIX}", COMPACT), (f"{k:05d}.{key}", dtype)):
            if (part / name).exists():
                parts.append((part / name, dt))
    out_dtype = dtype
    sizes = [path.stat().st_size for path, _ in parts]
    for (path, dt), size in zip(parts, sizes, strict=True):
        if size % dt.itemsize:
            msg = f"bucket file {path} is cut mid-item; the temporary files were damaged"
            raise OSError(msg)
    total = sum(size // dt.itemsize for (_, dt), size in zip(parts, sizes, strict=True))
    if total != nnz:
        msg = f"bucket {k}'s files {key} hold {total} items, expected {nnz}; the temporary files were damaged"
        raise OSError(msg)
    out = np.empty(nnz, dtype=out_dtype)
    at = 0
    for (path, dt), size in zip(parts, sizes, strict=True):
        n = size // dt.itemsize
        with path.open("rb") as f:
            if dt == out_dtype:
                f.readinto(memoryview(out[at : at + n].view(np.uint8)))
            else:
                out[at : at + n] = np.fromfile(f, dtype=dt, count=n)
        at += n
    return out
