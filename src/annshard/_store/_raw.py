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
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    import zarr
    from numpy.typing import NDArray

__all__ = ["RawRuns", "parse_shard_index", "read_raw_runs", "run_pieces", "split_runs"]

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

    The runs are laid out one after the other in the output. The pieces of :func:`run_pieces`, as Python ints.
    """
    for piece in run_pieces(runs, chunk).tolist():
        yield piece[0], piece[1], piece[2], piece[3]


def run_pieces(runs: NDArray[np.int64], chunk: int) -> NDArray[np.int64]:
    """Split runs of a chunked axis at chunk borders, all at once: ``(n, 4)`` of chunk index, start and stop in it, start in output.

    The runs (``(n, 2)`` start, stop) are laid out one after the other in the output; empty runs give no piece.
    The same pieces, in the same order, as cutting each run in a loop (:func:`split_runs`), computed by numpy in
    a few calls per block instead of a few Python operations per piece.
    """
    runs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    runs = runs[runs[:, 1] > runs[:, 0]]
    if runs.shape[0] == 0:
        return np.zeros((0, 4), dtype=np.int64)
    first = runs[:, 0] // chunk
    k = (runs[:, 1] - 1) // chunk - first + 1  # pieces per run
    owner = np.repeat(np.arange(runs.shape[0]), k)
    ci = np.repeat(first - np.cumsum(k) + k, k) + np.arange(owner.shape[0])  # chunk index of each piece
    c0 = ci * chunk
    start = np.maximum(runs[owner, 0], c0)
    stop = np.minimum(runs[owner, 1], c0 + chunk)
    lens = stop - start
    out = np.cumsum(lens) - lens
    return np.stack([ci, start - c0, stop - c0, out], axis=1)


class RawRuns:
    """Reads ``[start, stop)`` element runs of one uncompressed sharded 1-D array by ``os.preadv``.

    Raw counts stored uncompressed (``fixedscaleoffset`` then ``bytes``, ``StorageSpec.counts_codec = "none"``)
    are read as the stored integers: :attr:`dtype` is then the stored type, and the caller widens them (as
    :class:`~annshard._load._direct.DirectRuns` does).
    """

    def __init__(self, directory: Path, dtype: np.dtype, shard_len: int, inner_len: int, fill: Any) -> None:
        self._dir = directory
        self.dtype = dtype
        self._shard_len = shard_len
        self._inner_len = inner_len
        self._n_inner = shard_len // inner_len
        self._fill = fill
        self._tables: dict[int, tuple[NDArray[np.int64], NDArray[np.int64], int]] = {}
        self._lock = threading.Lock()
        self._paths: dict[int, str] = {}

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

    def _index(self, s: int, fd: int) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
        """Return the inner-chunk index of shard file ``s`` open as ``fd``: offsets, sizes (``-1``: never written), file size; read once."""
        with self._lock:
            if s not in self._tables:
                size = os.fstat(fd).st_size
                n = self._n_inner * 16 + 4
                raw = os.pread(fd, n, size - n) if size >= n else b""
                table = parse_shard_index(raw, self._n_inner, crc=True, where=str(self._path(s))).view(np.int64)
                self._tables[s] = (table[:, 0].copy(), table[:, 1].copy(), size)  # 2**64 - 1 reads as -1
            return self._tables[s]

    def _path(self, s: int) -> Path:
        return self._dir / "c" / str(s)

    def _open(self, s: int, fds: dict[int, int | None]) -> int | None:
        if s not in fds:
            path = self._paths.get(s)
            if path is None:  # a str, built once: pathlib's joins cost more than the open itself
                path = self._paths[s] = str(self._path(s))
            try:
                fds[s] = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # a shard file never written: all fill value
                fds[s] = None
        return fds[s]

    @property
    def inner_len(self) -> int:
        """Elements per inner chunk."""
        return self._inner_len

    def reads(self, runs: NDArray[np.int64], fds: dict[int, int | None]) -> tuple[list[int], ...]:
        """Plan the reads of ``runs`` (``(n, 2)`` start, stop, laid out one after the other in the output).

        Returns four lists, one entry per read: the file descriptor (``-1``: fill value, nothing stored), the byte
        offset in the file, the start in the output and the number of elements. Every step is numpy over all the
        runs' inner-chunk pieces (:func:`run_pieces`) at once, with a Python loop over the shard files touched
        only; pieces that continue each other in the file (a run over consecutive inner chunks, which the writer
        lays out in chunk order) and in the output become one read, so a read is about a run. Files are opened
        into ``fds`` (shard file -> descriptor, ``None``: never written), which the caller closes.

        Raises
        ------
        OSError
            If an inner chunk is not a whole chunk inside its file (a truncated file), naming the file and chunk.
        """
        pieces = run_pieces(runs, self._inner_len)
        n = pieces.shape[0]
        if n == 0:
            return [], [], [], []
        size = self.dtype.itemsize
        chunk_bytes = self._inner_len * size
        shard, inner = np.divmod(pieces[:, 0], self._n_inner)
        fd = np.full(n, -1, dtype=np.int64)
        at = np.zeros(n, dtype=np.int64)
        files = np.unique(shard).tolist()
        for s in files:
            f = self._open(s, fds)
            if f is None:
                continue
            table = self._tables.get(s)  # a plain dict read: no lock once the index is loaded
            offsets, nbytes, file_size = self._index(s, f) if table is None else table
            sel = slice(None) if len(files) == 1 else np.flatnonzero(shard == s)
            c = inner[sel]
            off, nb = offsets[c], nbytes[c]
            written = ~((off == -1) & (nb == -1))
            bad = written & ((nb != chunk_bytes) | (off < 0) | (off > file_size - nb))
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                msg = f"{self._path(s)}: inner chunk {int(c[j])} is {int(nb[j])} bytes at {int(off[j])}, not {chunk_bytes} bytes inside the file"
                raise OSError(msg)
            fd[sel] = np.where(written, f, -1)
            at[sel] = off + pieces[sel, 1] * size
        lens = pieces[:, 2] - pieces[:, 1]
        # the output is contiguous by construction: a piece joins the previous read when it is in the same file
        # right after it, or when both are fill value
        joins = np.zeros(n, dtype=bool)
        joins[1:] = (fd[1:] == fd[:-1]) & ((fd[1:] < 0) | (at[1:] == at[:-1] + lens[:-1] * size))
        heads = np.flatnonzero(~joins)
        return fd[heads].tolist(), at[heads].tolist(), pieces[heads, 3].tolist(), np.add.reduceat(lens, heads).tolist()

    def read(
        self, runs: NDArray[np.int64], out: np.ndarray, pool: Any = None, *, extremes: bool = False
    ) -> tuple[int, int] | None:
        """Read ``runs`` (``(n, 2)`` start, stop) one after the other into ``out`` (``pool``: unused, as DirectRuns').

        When ``out`` is wider than :attr:`dtype` (stored counts into their values' dtype), the runs are read into a
        small buffer a few inner chunks at a time and each piece widened into ``out`` while it is in cache: no
        block-sized buffer of stored integers, and the widening runs on the read's threads. With ``extremes``,
        return ``out``'s smallest and largest value, read while ``out`` is still in cache (the gene index check).

        Raises
        ------
        OSError
            If a shard file is shorter than its index says (truncated), naming the file and chunk.
        """
        del pool
        fds: dict[int, int | None] = {}  # open for this call only: a collection may have thousands of shard files
        try:
            reads = self.reads(runs, fds)
            if out.dtype == self.dtype:
                self._read_into(reads, out, fds)
            else:
                self._read_widening(reads, out, fds)
        finally:
            _close(fds)
        if not extremes or out.shape[0] == 0:
            return None
        return int(out.min()) if out.dtype.kind == "i" else 0, int(out.max())

    def _read_into(self, reads: tuple[list[int], ...], out: np.ndarray, fds: dict[int, int | None]) -> None:
        size = self.dtype.itemsize
        view = memoryview(out.reshape(-1).view(np.uint8))
        for fd, at, o, n in zip(*reads, strict=True):
            if fd < 0:
                out[o : o + n] = self._fill
            else:
                self._pread(fd, view, o * size, n * size, at, fds)

    def _read_widening(self, reads: tuple[list[int], ...], out: np.ndarray, fds: dict[int, int | None]) -> None:
        # reads are packed into the scratch buffer one after the other (they are contiguous in `out` too), a read
        # longer than the room left is cut, and the scratch is widened into `out` whenever it is full
        size, room = self.dtype.itemsize, _WIDEN_CHUNKS * self._inner_len
        scratch = np.empty(room, dtype=self.dtype)
        view = memoryview(scratch.view(np.uint8))
        start = used = 0  # `out` position of scratch[0], elements in the scratch
        for fd, at, o, n in zip(*reads, strict=True):
            if fd < 0:  # fill value straight into `out`, in its own dtype
                np.copyto(out[start : start + used], scratch[:used], casting="unsafe")
                out[o : o + n] = self._fill
                start, used = o + n, 0
                continue
            pos = 0
            while pos < n:
                if used == room:
                    np.copyto(out[start : start + used], scratch, casting="unsafe")
                    start, used = start + used, 0
                m = min(n - pos, room - used)
                self._pread(fd, view, used * size, m * size, at + pos * size, fds)
                used, pos = used + m, pos + m
        np.copyto(out[start : start + used], scratch[:used], casting="unsafe")

    def _pread(self, fd: int, view: memoryview, dest: int, n: int, at: int, fds: dict[int, int | None]) -> None:
        got = os.preadv(fd, [view[dest : dest + n]], at)
        if got != n:
            s = next(k for k, v in fds.items() if v == fd)
            msg = f"{self._path(s)}: read {got} of {n} bytes at {at} (truncated file)"
            raise OSError(msg)


def _close(fds: dict[int, int | None]) -> None:
    for fd in fds.values():
        if fd is not None:
            os.close(fd)


def read_raw_runs(
    jobs: Sequence[tuple[Any, ...]],
    threads: int | None,
    *,
    populate: Callable[[np.ndarray], None] | None = None,
) -> tuple[int, int] | None:
    """Do ``jobs`` on up to ``threads`` threads (``None``: one per core).

    A job is ``(reader, element runs, 1-D output[, extremes[, fresh]])``. Each is cut into parts of whole runs of
    about equal bytes (at least 1 MiB each), so the copies scale with cores even when a block touches one or two
    shards; ``os.preadv`` releases the GIL. The output of a ``fresh`` job (a new buffer whose pages were not
    faulted in yet) is handed to ``populate`` part by part, each in the thread that then fills it, so the kernel's
    first touch is spread over the threads too. Returns the smallest and largest value read by the jobs that ask
    for their ``extremes`` (``None`` if they read none): each part finds its own while its bytes are in cache, on
    its own thread (:meth:`RawRuns.read`). A part's error is raised after every part has finished.
    """
    n = max(1, threads or os.cpu_count() or 1)
    parts: list[tuple[RawRuns, NDArray[np.int64], np.ndarray, bool, bool]] = []
    for reader, runs, out, *flags in jobs:
        if runs.shape[0] == 0:
            continue
        extremes, fresh = (*(bool(f) for f in flags), False, False)[:2]
        ends = np.cumsum(runs[:, 1] - runs[:, 0])
        k = int(min(n, runs.shape[0], max(1, int(ends[-1]) * out.itemsize // _PART_BYTES)))
        cuts = [0, *np.searchsorted(ends, np.linspace(0, int(ends[-1]), k + 1)[1:-1], side="right").tolist()]
        for a, b in zip(cuts, [*cuts[1:], runs.shape[0]], strict=True):
            if a < b:
                part = out[(int(ends[a - 1]) if a else 0) : int(ends[b - 1])]
                parts.append((reader, runs[a:b], part, extremes, fresh and populate is not None))

    def do(reader: RawRuns, runs: NDArray[np.int64], out: np.ndarray, extremes: bool, fresh: bool) -> Any:
        if fresh and populate is not None:
            populate(out)
        return reader.read(runs, out, extremes=True) if extremes else reader.read(runs, out)

    if n == 1 or len(parts) <= 1:
        found = [do(*part) for part in parts]
    else:
        with ThreadPoolExecutor(min(n, len(parts)), thread_name_prefix="annshard-raw") as ex:
            futures = [ex.submit(do, *part) for part in parts]
            found = [future.result() for future in futures]
    got = [e for e in found if e is not None]
    if not got:
        return None
    return min(lo for lo, _ in got), max(hi for _, hi in got)
