"""Remote row-run reads of our own: shard indexes fetched once, every range of a block in flight at once.

Through zarr's ``ObjectStore``, zarrs rebuilds its partial decoders for every block read and so re-fetches each
shard file's index (a HEAD and a range GET per shard and array) before it range-reads the inner chunks, with
little concurrency; those requests are issued in Rust, out of reach of a Python store wrapper. For arrays in an
object store this module reads instead (measured in ``docs/remote.md``):

- each shard file's index is fetched once per process and array (one suffix range GET), its CRC32C checked, and
  kept in memory by the :class:`RemoteRuns` of that array (the loader keeps one per shard and element);
- for a block, the inner chunks every run needs are computed from the index and fetched with obstore's
  ``get_ranges_async`` (which coalesces near ranges), every shard file and array of the block concurrently (one
  asyncio loop per block read, in the loader's read thread), at most :func:`max_requests` calls in flight (``ANNSHARD_REMOTE_REQUESTS``);
- the fetched chunks are decoded with the array's own inner codec chain, read from its metadata. Only the chains
  annshard writes are decoded here (``numcodecs.fixedscaleoffset``, ``bytes``, ``blosc``, ``zstd``, ``gzip``,
  ``crc32c``); for any other array :meth:`RemoteRuns.create` returns ``None`` and the loader reads it through
  zarrs as before. ``ANNSHARD_REMOTE_READER=zarrs`` turns this reader off.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import google_crc32c
import numpy as np

from annshard._compat import zarr_chunk_key_encoder
from annshard._errors import CorruptShardError

from ._raw import parse_shard_index, split_runs

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    import zarr
    from numpy.typing import NDArray

__all__ = ["COALESCE_BYTES", "DEFAULT_REQUESTS", "RemoteRuns", "max_requests", "read_remote_runs"]

DEFAULT_REQUESTS = 64
"""Range-request calls in flight per process by default (chosen by measurement, ``docs/remote.md``)."""

COALESCE_BYTES = 1 << 20
"""Inner chunks of one shard file less than this many bytes apart are fetched in one request (obstore's default).

Measured (``docs/remote.md``): against moto, whose per-request cost dominates, 1 MiB read fastest (3.7k cells/s at
20 ms, 13 requests and 7.5 MB per 1k cells) and no coalescing slowest (1.8k cells/s, 46 requests, 2.7 MB);
``ANNSHARD_REMOTE_COALESCE`` (bytes) trades requests for bytes on a server where bytes cost more."""

_EMPTY = 2**64 - 1


def max_requests() -> int:
    """Range-request calls in flight at once: ``ANNSHARD_REMOTE_REQUESTS`` or :data:`DEFAULT_REQUESTS`.

    Raises
    ------
    ValueError
        If the variable is not a positive integer.
    """
    text = os.environ.get("ANNSHARD_REMOTE_REQUESTS", "").strip()
    if not text:
        return DEFAULT_REQUESTS
    if not text.isdigit() or int(text) < 1:
        msg = f"ANNSHARD_REMOTE_REQUESTS={text!r}: expected a positive integer (requests in flight, e.g. 64)"
        raise ValueError(msg)
    return int(text)


def _coalesce() -> int:
    text = os.environ.get("ANNSHARD_REMOTE_COALESCE", "").strip()
    if not text:
        return COALESCE_BYTES
    if not text.isdigit():
        msg = f"ANNSHARD_REMOTE_COALESCE={text!r}: expected a byte count (e.g. 65536; 0 fetches every chunk alone)"
        raise ValueError(msg)
    return int(text)


def _enabled() -> bool:
    return os.environ.get("ANNSHARD_REMOTE_READER", "").strip().lower() not in ("zarrs", "off", "0")


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on a fresh event loop in this thread (the loader's read thread), or in a helper thread.

    A loop per call leaves no thread behind (a loader stopped early leaves none running); it costs well under a
    millisecond per block. Where this thread already runs a loop (a notebook calling a reader directly), the
    call runs in a short-lived helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(("ok", asyncio.run(coro)))
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            out.append(("error", e))

    t = threading.Thread(target=target, name="annshard-remote-call")
    t.start()
    t.join()
    kind, value = out[0]
    if kind == "error":
        raise value
    return value


def _crc32c_strip(buf: bytes | memoryview, where: str) -> bytes | memoryview:
    mv = memoryview(buf)
    if mv.nbytes < 4 or int.from_bytes(mv[-4:], "little") != google_crc32c.value(bytes(mv[:-4])):
        msg = f"{where}: CRC32C mismatch; the object is damaged, rewrite the collection"
        raise CorruptShardError(msg)
    return mv[:-4]


def _bytes_codec(name: str, config: dict[str, Any]) -> Callable[[Any, str], Any] | None:
    """Return a decoder for a bytes-to-bytes codec of the zarr metadata, or ``None`` when not one of ours."""
    import numcodecs

    if name == "blosc":
        codec = numcodecs.Blosc()  # the frame header carries cname, shuffle and type size
    elif name == "zstd":
        codec = numcodecs.Zstd()
    elif name == "gzip":
        codec = numcodecs.GZip()
    elif name == "crc32c":
        return _crc32c_strip
    else:
        return None
    return lambda buf, where: codec.decode(buf)


@dataclass(frozen=True)
class _Chain:
    """An inner chunk's codecs, decoded in reverse: bytes-to-bytes, then ``bytes``, then array-to-array filters."""

    b2b: tuple[Callable[[Any, str], Any], ...]
    stored: np.dtype[Any]
    filters: tuple[Any, ...]

    @classmethod
    def parse(cls, codecs: Sequence[dict[str, Any]], dtype: np.dtype[Any]) -> _Chain | None:
        import numcodecs

        filters, b2b, stored, seen_bytes = [], [], dtype, False
        for c in codecs:
            name, config = c.get("name"), c.get("configuration") or {}
            if name == "numcodecs.fixedscaleoffset" and not seen_bytes:
                f = numcodecs.FixedScaleOffset(
                    offset=config.get("offset", 0),
                    scale=config.get("scale", 1),
                    dtype=config.get("dtype", stored.str),
                    astype=config.get("astype"),
                )
                filters.append(f)
                stored = np.dtype(f.astype)
            elif name == "bytes" and not seen_bytes:
                seen_bytes = True
                endian = config.get("endian")
                if stored.itemsize > 1 and endian in ("little", "big"):
                    stored = stored.newbyteorder("<" if endian == "little" else ">")
            elif seen_bytes and (dec := _bytes_codec(str(name), config)) is not None:
                b2b.append(dec)
            else:
                return None
        return cls(tuple(b2b), stored, tuple(filters)) if seen_bytes else None

    def decode(self, raw: Any, n: int, dtype: np.dtype[Any], where: str) -> np.ndarray:
        buf = raw
        try:
            for dec in reversed(self.b2b):
                buf = dec(buf, where)
            arr = np.frombuffer(buf, dtype=self.stored)
            for f in reversed(self.filters):
                arr = np.asarray(f.decode(arr))
        except CorruptShardError:
            raise
        except Exception as e:
            msg = f"{where}: cannot decode ({type(e).__name__}: {e}); the object is damaged, rewrite the collection"
            raise CorruptShardError(msg) from e
        if arr.size != n:
            msg = f"{where}: decoded to {arr.size} values, expected {n}; the object is damaged, rewrite the collection"
            raise CorruptShardError(msg)
        return arr.astype(dtype, copy=False).reshape(-1)


class RemoteRuns:
    """Reads row runs of one array in an object store, its shard indexes fetched once (see the module docs).

    Build one with :meth:`create`; read with :func:`read_remote_runs` (several arrays concurrently) or :meth:`read`.
    """

    def __init__(self, array: zarr.Array, store: Any, chain: _Chain, shard_cfg: dict[str, Any] | None) -> None:
        self._store = store
        self._prefix = f"{array.path}/" if array.path else ""
        self._encode = zarr_chunk_key_encoder(array)
        self._extra = [int(e) for e in array.shape[1:]]
        self._dtype = np.dtype(array.dtype)
        self._fill = array.fill_value
        self._chain = chain
        self._row_elems = math.prod(self._extra)
        if shard_cfg is None:
            self._chunk = self._shard = int(array.chunks[0])
        else:
            self._chunk, self._shard = int(array.chunks[0]), int(array.shards[0])  # type: ignore[index]
        self._sharded = shard_cfg is not None
        self._per_shard = self._shard // self._chunk
        self._index_at_end = shard_cfg is None or shard_cfg.get("index_location", "end") == "end"
        self._index_crc = bool(shard_cfg) and any(c.get("name") == "crc32c" for c in shard_cfg["index_codecs"])
        self._indexes: dict[int, NDArray[np.uint64] | None] = {}
        self.index_fetches = 0

    @classmethod
    def create(cls, array: zarr.Array) -> RemoteRuns | None:
        """Return a reader for ``array`` when it lives in an object store with a codec chain handled here, else ``None``."""
        import zarr.storage

        store = array.store_path.store
        if not _enabled() or not isinstance(store, zarr.storage.ObjectStore):
            return None
        try:
            meta = array.metadata.to_dict()
            dtype = np.dtype(array.dtype)
        except Exception:  # noqa: BLE001 - a zarr v2 array or a dtype numpy does not know: read through zarrs
            return None
        if meta.get("zarr_format") != 3 or dtype.kind not in "biuf" or array.chunks[1:] != array.shape[1:]:
            return None
        codecs = list(meta.get("codecs") or [])
        shard_cfg = None
        if codecs and codecs[0].get("name") == "sharding_indexed":
            if len(codecs) != 1:
                return None
            shard_cfg = codecs[0].get("configuration") or {}
            index = [c.get("name") for c in shard_cfg.get("index_codecs", [])]
            little = all(
                (c.get("configuration") or {}).get("endian", "little") == "little"
                for c in shard_cfg.get("index_codecs", [])
            )
            if index not in (["bytes"], ["bytes", "crc32c"]) or not little:
                return None
            if list(array.shards[1:]) != list(array.shape[1:]):  # type: ignore[index]
                return None
            codecs = shard_cfg.get("codecs") or []
        chain = _Chain.parse(codecs, dtype)
        return None if chain is None else cls(array, store.store, chain, shard_cfg)

    @property
    def dtype(self) -> np.dtype[Any]:
        """What :meth:`read` decodes into: the array's dtype (stored counts are widened here, as zarr reads them)."""
        return self._dtype

    def _key(self, si: int) -> str:
        return self._prefix + self._encode((si, *(0 for _ in self._extra)))

    async def _index(self, si: int) -> NDArray[np.uint64] | None:
        """Return the ``(inner chunks, 2)`` offsets and sizes of shard file ``si``, fetched once; ``None``: no such file."""
        if si in self._indexes:
            return self._indexes[si]
        import obstore

        key = self._key(si)
        n = 16 * self._per_shard + (4 if self._index_crc else 0)
        opts: Any = {"range": {"suffix": n} if self._index_at_end else {"offset": 0, "length": n}}
        try:
            raw = bytes(await (await obstore.get_async(self._store, key, options=opts)).bytes_async())
        except FileNotFoundError:
            raw = None  # all its chunks are the fill value (zarr writes no file), as zarr reads it
        except Exception as e:
            msg = f"{key}: cannot read its shard index ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            raise CorruptShardError(msg) from e
        self.index_fetches += 1
        where = f"{key} (shard index)"
        index = None if raw is None else parse_shard_index(raw, self._per_shard, crc=self._index_crc, where=where)
        self._indexes[si] = index
        return index

    async def read_async(self, runs: NDArray[np.int64], out: np.ndarray, limit: asyncio.Semaphore) -> int:
        """Decode ``runs`` (``(n, 2)`` start, stop) one after the other into ``out``; return the bytes fetched."""
        import obstore

        pieces = list(split_runs(runs, self._chunk))
        needed = sorted({ci for ci, *_ in pieces})
        by_shard: dict[int, list[int]] = {}
        for ci in needed:
            by_shard.setdefault(ci // self._per_shard, []).append(ci)
        missing = [si for si in by_shard if si not in self._indexes]
        async with limit:
            await asyncio.gather(*(self._index(si) for si in missing))
        decoded: dict[int, np.ndarray | None] = {}
        coalesce = _coalesce()
        n = self._chunk * self._row_elems

        async def fetch(si: int, cis: list[int]) -> int:
            key = self._key(si)
            if self._sharded:
                index = self._indexes[si]
                rows = [] if index is None else [index[ci % self._per_shard] for ci in cis]
                want = [(ci, int(r[0]), int(r[1])) for ci, r in zip(cis, rows, strict=False) if int(r[0]) != _EMPTY]
            else:
                want = [(cis[0], -1, -1)]
            for ci in cis:
                decoded[ci] = None
            if not want:
                return 0
            try:
                async with limit:
                    if self._sharded:
                        starts, ends = [w[1] for w in want], [w[1] + w[2] for w in want]
                        got = await obstore.get_ranges_async(
                            self._store, key, starts=starts, ends=ends, coalesce=coalesce
                        )
                    else:
                        got = [await (await obstore.get_async(self._store, key)).bytes_async()]
            except FileNotFoundError:
                if self._sharded:
                    msg = f"{key}: the shard file is missing but its index was read; the collection changed while being read, reopen it"
                    raise CorruptShardError(msg) from None
                return 0  # an unsharded chunk of fill values only
            except Exception as e:
                msg = f"{key}: cannot read chunks ({type(e).__name__}: {str(e).splitlines()[0][:200]}); the shard is truncated or damaged, rewrite the collection"
                raise CorruptShardError(msg) from e
            for (ci, _start, size), buf in zip(want, got, strict=True):
                if self._sharded and len(buf) != size:
                    msg = f"{key}: inner chunk {ci} is {len(buf)} of its {size} bytes; the shard is truncated, rewrite the collection"
                    raise CorruptShardError(msg)

            def decode() -> None:  # in a worker thread: blosc and the copies release the GIL
                for (ci, _start, _size), buf in zip(want, got, strict=True):
                    decoded[ci] = self._chain.decode(buf, n, self._dtype, f"{key} (inner chunk {ci})")

            await asyncio.to_thread(decode)
            return sum(len(buf) for buf in got)

        fetched = await asyncio.gather(*(fetch(si, cis) for si, cis in by_shard.items()))
        flat = out.reshape(-1)
        w = self._row_elems
        for ci, a, b, o in pieces:
            chunk = decoded[ci]
            dst = flat[o * w : (o + b - a) * w]
            if chunk is None:
                dst[...] = self._fill
            else:
                dst[...] = chunk[a * w : b * w]
        return int(sum(fetched))

    def read(self, runs: NDArray[np.int64], out: np.ndarray) -> None:
        """Decode ``runs`` (``(n, 2)`` start, stop) one after the other into ``out`` (a blocking call)."""
        read_remote_runs([(self, runs, out)])


def read_remote_runs(jobs: Sequence[tuple[RemoteRuns, NDArray[np.int64], np.ndarray]]) -> int:
    """Run every ``(reader, runs, out)`` read concurrently (at most :func:`max_requests` calls in flight).

    Returns the bytes fetched.

    Raises
    ------
    CorruptShardError
        If a shard file's index or chunks are missing, truncated or damaged; the message names the object.
    """
    if not jobs:
        return 0
    limit = max_requests()

    async def main() -> int:
        sem = asyncio.Semaphore(limit)
        got = await asyncio.gather(*(r.read_async(runs, out, sem) for r, runs, out in jobs if runs.shape[0]))
        return int(sum(got))

    return int(_run(main()))
