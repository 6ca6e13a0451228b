"""Byte-identical shard files: put a zarr shard's inner chunks in chunk order.

zarrs encodes the inner chunks of one zarr shard in parallel and appends each to
the shard file as it completes, so two writes of the same values give files whose
inner chunks (and index) are in different orders: the decoded data is the same,
the bytes are not (measured: every ``X/data`` and ``X/indices`` shard file of a
20k-cell conversion differed between two runs). :func:`order_inner_chunks` rewrites
a freshly written shard file in place with its inner chunks in index (C) order,
contiguous from offset 0, followed by the rewritten index and its CRC32C, which is
what a sequential writer produces. The file keeps its size; only the written
collection's own, not yet published, files are touched.

Only the layout annshard writes is handled (``index_location="end"``, index codecs
``bytes`` little-endian + ``crc32c``); anything else is left as it is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import google_crc32c
import numpy as np

if TYPE_CHECKING:
    import zarr

__all__ = ["order_array_chunks", "order_inner_chunks"]

_EMPTY = np.uint64(2**64 - 1)


def order_inner_chunks(path: Path, n_inner: int) -> bool:
    """Rewrite the shard file ``path`` (``n_inner`` inner chunks) with its chunks in index order.

    Returns whether the file was changed (``False``: already in order, or not a layout this handles).
    """
    raw = path.read_bytes()
    tail = 16 * n_inner + 4
    if len(raw) < tail:
        return False
    index_bytes = raw[-tail:-4]
    if int.from_bytes(raw[-4:], "little") != google_crc32c.value(index_bytes):
        return False  # not an index at the end with a crc32c: leave it
    index = np.frombuffer(index_bytes, dtype="<u8").reshape(n_inner, 2)
    present = index[:, 0] != _EMPTY
    offsets, sizes = index[present, 0].astype(np.int64), index[present, 1].astype(np.int64)
    expected = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes.size else sizes
    if np.array_equal(offsets, expected):
        return False
    body = bytearray()
    new = index.copy()
    for j in np.flatnonzero(present):
        off, size = int(index[j, 0]), int(index[j, 1])
        new[j, 0] = len(body)
        body += raw[off : off + size]
    new_index = new.astype("<u8").tobytes()
    out = bytes(body) + new_index + google_crc32c.value(new_index).to_bytes(4, "little")
    with path.open("r+b") as f:  # same bytes, reordered: written in place, then cut to its length
        f.write(out)
        f.truncate(len(out))
    return True


def order_array_chunks(array: zarr.Array, directory: Path) -> int:
    """Order the inner chunks of every shard file of ``array``, stored in the local ``directory``.

    Returns the number of files rewritten (0 for an unsharded array).
    """
    shards, chunks = array.shards, array.chunks
    if shards is None:
        return 0
    n_inner = math.prod(s // c for s, c in zip(shards, chunks, strict=True))
    root = directory / "c"
    if not root.is_dir():
        return 0
    return sum(order_inner_chunks(p, n_inner) for p in sorted(root.rglob("*")) if p.is_file())
