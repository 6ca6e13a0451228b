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

Uncompressed 1-D arrays (the default layout: counts as ``uint16``, normalised
``float32`` values, ``uint16`` gene indices, ``int64`` row pointers) need no codec
at all, so :func:`write_plain_1d` writes their files directly, in that same
sequential layout: each shard file is its inner chunks' bytes in order (the last
one padded with the fill value 0), then the index and its CRC32C; an array with
one chunk is that chunk's bytes. It reproduces what zarrs writes byte for byte
(``tests/write/test_determinism.py`` compares them), at one ``write`` per file
instead of zarrs' encode and this module's rewrite. Whatever it does not
reproduce exactly it declines (returns ``False``) and the caller writes through
zarr: a codec chain other than ``[numcodecs.fixedscaleoffset (scale 1, offset 0)?,
bytes]`` with ``[bytes, crc32c]`` at the end of each shard, a big-endian dtype,
``array.write_empty_chunks`` set, or an inner chunk whose values are all zero
(zarr skips those; rare in CSR values and gene indices).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import google_crc32c
import numpy as np

if TYPE_CHECKING:
    import zarr

__all__ = ["order_array_chunks", "order_inner_chunks", "plain_stored_dtype", "write_plain_1d"]

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


def _is_bytes_le(codec: dict[str, Any]) -> bool:
    return codec.get("name") == "bytes" and (codec.get("configuration") or {}).get("endian", "little") == "little"


def plain_stored_dtype(metadata: dict[str, Any], dtype: np.dtype) -> tuple[np.dtype, bool] | None:
    """Return the stored dtype of an uncompressed 1-D array (zarr v3 ``metadata`` dict) and whether it is sharded.

    ``None`` when :func:`write_plain_1d` cannot reproduce its files: any codec beyond an optional
    ``numcodecs.fixedscaleoffset`` (scale 1, offset 0, into an unsigned integer) and little-endian ``bytes``,
    a shard index other than ``[bytes, crc32c]`` at the end, a fill value other than 0, chunk keys other than
    zarr's default ``c/<i>``, or ``dtype``
    not little-endian numeric.
    """
    if sys.byteorder != "little" or dtype.kind not in "biuf" or dtype.byteorder == ">":
        return None
    if metadata.get("fill_value") not in (0, 0.0) or len(metadata.get("shape", ())) != 1:
        return None
    keys = metadata.get("chunk_key_encoding") or {}
    if keys.get("name", "default") != "default" or (keys.get("configuration") or {}).get("separator", "/") != "/":
        return None  # chunk files named other than c/<i>
    codecs = list(metadata.get("codecs", ()))
    sharded = len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed"
    if sharded:
        cfg = codecs[0].get("configuration") or {}
        index = list(cfg.get("index_codecs", ()))
        if cfg.get("index_location", "end") != "end" or len(index) != 2 or not _is_bytes_le(index[0]):
            return None
        if index[1].get("name") != "crc32c":
            return None
        codecs = list(cfg.get("codecs", ()))
    stored = dtype
    if len(codecs) == 2 and codecs[0].get("name") == "numcodecs.fixedscaleoffset":
        c = codecs[0].get("configuration") or {}
        if c.get("scale") != 1 or c.get("offset") != 0 or np.dtype(c.get("dtype", "f8")) != dtype:
            return None
        stored = np.dtype(c.get("astype", "f8"))
        if stored.kind != "u" or stored.byteorder == ">":
            return None
        codecs = codecs[1:]
    if len(codecs) != 1 or not _is_bytes_le(codecs[0]):
        return None
    return stored, sharded


def write_plain_1d(array: zarr.Array, directory: Path, values: np.ndarray) -> bool:
    """Write ``values`` (all of the 1-D ``array``, just created, in the local ``directory``) without zarr.

    The files are exactly those zarr writes through zarrs followed by :func:`order_array_chunks` (see the
    module docstring). ``values`` are in the array's dtype, or, through the counts filter, already the
    stored integers; values stored through the counts filter must be whole numbers in the stored
    type's range (the writer checked them). Returns ``False``, having written nothing, where it cannot
    reproduce zarr's files; the caller then writes through zarr.
    """
    import zarr

    if zarr.config.get("array.write_empty_chunks", False):
        return False
    plain = plain_stored_dtype(array.metadata.to_dict(), np.dtype(array.dtype))
    n = values.shape[0]
    if plain is None or values.ndim != 1 or tuple(array.shape) != (n,) or n == 0:
        return False
    stored_dtype, sharded = plain
    if values.dtype not in (np.dtype(array.dtype), stored_dtype):
        return False
    chunk = int(array.chunks[0])
    shard = int(array.shards[0]) if sharded and array.shards is not None else chunk
    n_chunks = -(-n // chunk)
    stored = values if stored_dtype == values.dtype else values.astype(stored_dtype)
    # zarr skips an inner chunk whose values are all the fill value: not reproduced here
    whole = (n // chunk) * chunk
    if whole and not np.all(np.any(values[:whole].reshape(-1, chunk), axis=1)):
        return False
    if whole < n and not np.any(values[whole:]):
        return False
    root = directory / "c"
    root.mkdir(parents=True, exist_ok=True)
    size = chunk * stored.itemsize
    per_shard = shard // chunk
    raw = memoryview(np.ascontiguousarray(stored)).cast("B")
    for j in range(-(-n_chunks // per_shard)):
        first, last = j * per_shard, min(n_chunks, (j + 1) * per_shard)
        body = raw[first * size : min(n, last * chunk) * stored.itemsize]
        pad = (last - first) * size - len(body)
        with (root / str(j)).open("wb") as f:
            f.write(body)
            if pad:
                f.write(bytes(pad))
            if sharded:
                index = np.full((per_shard, 2), _EMPTY, dtype="<u8")
                index[: last - first, 0] = np.arange(last - first, dtype=np.uint64) * np.uint64(size)
                index[: last - first, 1] = size
                index_bytes = index.tobytes()
                f.write(index_bytes + google_crc32c.value(index_bytes).to_bytes(4, "little"))
    return True
