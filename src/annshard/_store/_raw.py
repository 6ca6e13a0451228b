"""Reading row runs of an *uncompressed* sharded 1-D zarr array on a local disk straight into the output.

The CSR gene indices are stored uncompressed (``StorageSpec.indices_codec = "none"``): each inner chunk of a zarr
shard file is the chunk's little-endian bytes as they are. zarrs still reads such a chunk as a whole into its own
buffer and copies the run out of it (measured: ~3 ms of CPU per 1,000 cells for ~3 MB of gene indices, the cost
of a copy at ~1 GB/s); :class:`RawRuns` instead parses each shard file's index once and reads every run's bytes
with one ``os.preadv`` into its place in the output (~0.9 ms). It applies only where nothing needs decoding:
zarr v3, the ``sharding_indexed`` codec with ``bytes`` (little-endian) as its only inner codec, or raw counts'
``numcodecs.fixedscaleoffset`` (scale 1, offset 0, into an unsigned integer) then ``bytes``
(``StorageSpec.counts_codec = "none"``: read as the stored integers and widened as they are read), its index at
the end (``bytes`` + ``crc32c``), the default chunk key encoding, on a :class:`zarr.storage.LocalStore`;
:meth:`RawRuns.create` returns ``None`` for anything else, and the caller reads through zarrs. Every file it
opens is a chunk key of the array, inside the array's directory.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import google_crc32c
import numpy as np

from annshard._errors import CorruptShardError
from annshard._store._spec import stored_counts_dtype

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from pathlib import Path

    import zarr
    from numpy.typing import NDArray

__all__ = ["RawRuns", "parse_shard_index", "read_raw_runs", "split_runs"]

_MISSING = 2**64 - 1  # a shard index entry of an inner chunk that was never written (all fill value)
_PART_BYTES = 1 << 20  # a read is cut into parts of at least this many bytes, one per thread
_WIDEN_CHUNKS = 4  # stored counts are read and widened this many inner chunks at a time (in cache)


def parse_shard_index(raw: bytes, n_chunks: int, *, crc: bool, where: str) -> NDArray[np.uint64]:
    """Return a zarr shard index as stored (``bytes`` little-endian, then ``crc32c`` when ``crc``): ``(n_chunks, 2)``.

    Each row is an inner chunk's byte offset and size in the shard file (``2**64 - 1`` twice: never written). The
    local and the remote reader both read indexes through this.

    Raises
    ------
    CorruptShardError
        If ``raw`` is shorter than the index (a truncated file) or fails its checksum, naming ``where``.
    """
    n = 16 * n_chunks + (4 if crc else 0)
    if len(raw) != n:
        msg = f"{where}: {len(raw)} bytes, shorter than its shard index ({n} bytes); the shard is truncated, rewrite the collection"
        raise CorruptShardError(msg)
    body = raw[: 16 * n_chunks]
    if crc and google_crc32c.value(body) != int.from_bytes(raw[-4:], "little"):
        # a damaged index would point the reads at the wrong bytes
        msg = f"{where}: its shard index fails its CRC32C check (CRC32C mismatch); the shard is damaged, rewrite the collection"
        raise CorruptShardError(msg)
    return np.frombuffer(body, "<u8").reshape(n_chunks, 2)


def split_runs(runs: NDArray[np.int64], chunk: int) -> Iterator[tuple[int, int, int, int]]:
    """Split runs of a chunked axis at chunk borders: ``(chunk index, start in it, stop in it, start in output)``.

    The runs are laid out one after the other in the output.
    """
    out = 0
    for start, stop in runs.tolist():
        pos = start
        while pos < stop:
            ci = pos // chunk
            c0 = ci * chunk
            end = min(stop, c0 + chunk)
            yield ci, pos - c0, end - c0, out
            out += end - pos
            pos = end


class RawRuns:
    """Reads ``[start, stop)`` element runs of one uncompressed sharded 1-D array by ``os.preadv``.

    Raw counts stored uncompressed (``fixedscaleoffset`` then ``bytes``, ``StorageSpec.counts_codec = "none"``)
    are read as the stored integers: :attr:`dtype` is then the stored type, and the caller widens them (as
    :class:`~annshard._load._fetch.DirectRuns` does).
    """

    def __init__(self, directory: Path, dtype: np.dtype, shard_len: int, inner_len: int, fill: Any) -> None:
        self._dir = directory
        self.dtype = dtype
        self._shard_len = shard_len
        self._inner_len = inner_len
        self._n_inner = shard_len // inner_len
        self._fill = fill
        self._tables: dict[int, list[tuple[int, int, int]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, array: zarr.Array) -> RawRuns | None:
        """Return a raw reader for ``array``, or ``None`` when its chunks need decoding or it is not on a local disk."""
        from zarr.storage import LocalStore

        if not isinstance(array.store, LocalStore) or array.ndim != 1:
            return None
        d = json.loads(json.dumps(array.metadata.to_dict(), default=str))  # tuples as lists
        if d.get("zarr_format") != 3 or d.get("chunk_key_encoding") != {
            "name": "default",
            "configuration": {"separator": "/"},
        }:
            return None
        codecs = d.get("codecs", [])
        if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
            return None
        cfg = codecs[0]["configuration"]
        inner = list(cfg.get("codecs", []))
        little = {"name": "bytes", "configuration": {"endian": "little"}}
        dtype = np.dtype(array.dtype)
        if inner and inner[0].get("name") == "numcodecs.fixedscaleoffset":
            dtype = stored_counts_dtype(inner.pop(0), dtype, d.get("fill_value"))
            if dtype is None:
                return None
        if inner != [little] and not (dtype.itemsize == 1 and inner == [{"name": "bytes"}]):
            return None
        if cfg.get("index_location", "end") != "end" or cfg.get("index_codecs") != [little, {"name": "crc32c"}]:
            return None
        shard_len, inner_len = int(d["chunk_grid"]["configuration"]["chunk_shape"][0]), int(cfg["chunk_shape"][0])
        if shard_len % inner_len or dtype.kind not in "iuf":
            return None
        directory = array.store.root / array.path if array.path else array.store.root
        return cls(directory, dtype.newbyteorder("<"), shard_len, inner_len, d.get("fill_value") or 0)

    def _index(self, s: int, fd: int) -> list[tuple[int, int, int]]:
        """Return the inner-chunk index of shard file ``s`` open as ``fd``: (offset, bytes, file size) per chunk; read once."""
        with self._lock:
            if s not in self._tables:
                size = os.fstat(fd).st_size
                n = self._n_inner * 16 + 4
                raw = os.pread(fd, n, size - n) if size >= n else b""
                table = parse_shard_index(raw, self._n_inner, crc=True, where=str(self._path(s)))
                self._tables[s] = [(off, nb, size) for off, nb in table.tolist()]  # Python ints: cheap per piece
            return self._tables[s]

    def _path(self, s: int) -> Path:
        return self._dir / "c" / str(s)

    @property
    def inner_len(self) -> int:
        """Elements per inner chunk (the unit :meth:`read_pieces` takes)."""
        return self._inner_len

    def read(self, runs: NDArray[np.int64], out: np.ndarray, pool: Any = None) -> None:
        """Read ``runs`` (``(n, 2)`` start, stop) one after the other into ``out`` (``pool``: unused, as DirectRuns').

        When ``out`` is wider than :attr:`dtype` (stored counts into their values' dtype), the runs are read into a
        small buffer a few inner chunks at a time and each piece widened into ``out`` while it is in cache: no
        block-sized buffer of stored integers, and the widening runs on the read's threads.
        """
        del pool
        pieces = split_runs(runs, self._inner_len)
        if out.dtype == self.dtype:
            self.read_pieces(pieces, out)
            return
        scratch = np.empty(_WIDEN_CHUNKS * self._inner_len, dtype=self.dtype)
        fds: dict[int, int | None] = {}
        try:
            group: list[tuple[int, int, int, int]] = []
            start = n = 0
            for ci, a, b, o in pieces:
                if n + b - a > scratch.shape[0]:
                    self._read(group, scratch, fds)
                    np.copyto(out[start : start + n], scratch[:n], casting="unsafe")
                    group, start, n = [], o, 0
                group.append((ci, a, b, n))
                n += b - a
            if group:
                self._read(group, scratch, fds)
                np.copyto(out[start : start + n], scratch[:n], casting="unsafe")
        finally:
            _close(fds)

    def read_pieces(self, pieces: Iterable[tuple[int, int, int, int]], out: np.ndarray) -> None:
        """Read ``pieces`` (inner chunk, start in it, stop in it, start in ``out``) into ``out`` (C-contiguous, of :attr:`dtype`).

        Raises
        ------
        OSError
            If a shard file is shorter than its index says (truncated), naming the file and chunk.
        """
        fds: dict[int, int | None] = {}  # open for this call only: a collection may have thousands of shard files
        try:
            self._read(pieces, out, fds)
        finally:
            _close(fds)

    def _read(self, pieces: Iterable[tuple[int, int, int, int]], out: np.ndarray, fds: dict[int, int | None]) -> None:
        # pieces that continue each other in the file and in ``out`` (a run over consecutive inner chunks, which the
        # writer lays out in chunk order) are read by one call
        size = self.dtype.itemsize
        chunk_bytes = self._inner_len * size
        view = memoryview(out.reshape(-1).view(np.uint8))
        n_inner, tables = self._n_inner, self._tables
        pend_fd, pend_file, pend_out, pend_n, pend_s = -1, 0, 0, 0, 0  # the read being extended
        for ci, a, b, o in pieces:
            s, c = divmod(ci, n_inner)
            if s not in fds:
                try:
                    fds[s] = os.open(self._path(s), os.O_RDONLY)
                except FileNotFoundError:  # a shard file never written: all fill value
                    fds[s] = None
            fd = fds[s]
            if fd is None:
                out[o : o + b - a] = self._fill
                continue
            table = tables.get(s)  # a plain dict read: no lock once the index is loaded
            if table is None:
                table = self._index(s, fd)
            off, nbytes, file_size = table[c]
            if off == _MISSING:
                out[o : o + b - a] = self._fill
                continue
            if nbytes != chunk_bytes or off + nbytes > file_size:
                msg = f"{self._path(s)}: inner chunk {c} is {nbytes} bytes at {off}, not {chunk_bytes} bytes inside the file"
                raise OSError(msg)
            at, dest, want = off + a * size, o * size, (b - a) * size
            if fd == pend_fd and at == pend_file + pend_n and dest == pend_out + pend_n:
                pend_n += want
                continue
            if pend_n:
                self._pread(pend_fd, view, pend_out, pend_n, pend_file, pend_s)
            pend_fd, pend_file, pend_out, pend_n, pend_s = fd, at, dest, want, s
        if pend_n:
            self._pread(pend_fd, view, pend_out, pend_n, pend_file, pend_s)

    def _pread(self, fd: int, view: memoryview, dest: int, n: int, at: int, s: int) -> None:
        got = os.preadv(fd, [view[dest : dest + n]], at)
        if got != n:
            msg = f"{self._path(s)}: read {got} of {n} bytes at {at} (truncated file)"
            raise OSError(msg)


def _close(fds: dict[int, int | None]) -> None:
    for fd in fds.values():
        if fd is not None:
            os.close(fd)


def read_raw_runs(jobs: Sequence[tuple[RawRuns, NDArray[np.int64], np.ndarray]], threads: int | None) -> None:
    """Do ``jobs`` (reader, element runs, 1-D output) on up to ``threads`` threads (``None``: one per core).

    Each job is cut into parts of whole runs of about equal bytes (at least 1 MiB each), so the copies scale with
    cores even when a block touches one or two shards; ``os.preadv`` releases the GIL. A part's error is raised
    after every part has finished.
    """
    n = max(1, threads or os.cpu_count() or 1)
    parts: list[tuple[RawRuns, NDArray[np.int64], np.ndarray]] = []
    for reader, runs, out in jobs:
        if runs.shape[0] == 0:
            continue
        ends = np.cumsum(runs[:, 1] - runs[:, 0])
        k = int(min(n, runs.shape[0], max(1, int(ends[-1]) * out.itemsize // _PART_BYTES)))
        cuts = [0, *np.searchsorted(ends, np.linspace(0, int(ends[-1]), k + 1)[1:-1], side="right").tolist()]
        for a, b in zip(cuts, [*cuts[1:], runs.shape[0]], strict=True):
            if a < b:
                parts.append((reader, runs[a:b], out[(int(ends[a - 1]) if a else 0) : int(ends[b - 1])]))
    if n == 1 or len(parts) <= 1:
        for reader, runs, out in parts:
            reader.read(runs, out)
        return
    with ThreadPoolExecutor(min(n, len(parts)), thread_name_prefix="annshard-raw") as ex:
        for future in [ex.submit(reader.read, runs, out) for reader, runs, out in parts]:
            future.result()
