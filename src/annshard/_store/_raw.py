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

A block's reads are planned all at once by numpy (:mod:`annshard._store._raw_plan`) and done in parts on
``read_threads`` threads (:func:`read_raw_runs`); each part (:meth:`RawRuns.read_part`) opens the files it reads,
faults in its range of a fresh output buffer and, for gene indices, finds their extremes while they are in cache.
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
from annshard._store._raw_plan import Part, plan_parts, run_pieces
from annshard._store._spec import stored_counts_dtype

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    import zarr
    from numpy.typing import NDArray

__all__ = ["RawRuns", "parse_shard_index", "read_raw_runs", "run_pieces", "split_runs"]

_MISSING = 2**64 - 1  # a shard index entry of an inner chunk that was never written (all fill value)
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
        self._tables: dict[int, tuple[NDArray[np.int64], NDArray[np.int64], int] | None] = {}
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

    def table(self, s: int) -> tuple[NDArray[np.int64], NDArray[np.int64], int] | None:
        """Return shard file ``s``'s inner-chunk index: offsets, sizes (``-1``: never written), file size; read once.

        ``None``: the file was never written (all fill value).
        """
        if s in self._tables:  # a plain dict read: no lock once the index is loaded
            return self._tables[s]
        with self._lock:
            if s not in self._tables:
                try:
                    fd = os.open(self._file(s), os.O_RDONLY)
                except FileNotFoundError:  # a shard file never written: all fill value
                    self._tables[s] = None
                    return None
                try:
                    size = os.fstat(fd).st_size
                    n = self._n_inner * 16 + 4
                    raw = os.pread(fd, n, size - n) if size >= n else b""
                finally:
                    os.close(fd)
                table = parse_shard_index(raw, self._n_inner, crc=True, where=str(self.path(s))).view(np.int64)
                self._tables[s] = (table[:, 0].copy(), table[:, 1].copy(), size)  # 2**64 - 1 reads as -1
            return self._tables[s]

    def path(self, s: int) -> Path:
        """Return shard file ``s``'s path."""
        return self._dir / "c" / str(s)

    def _file(self, s: int) -> str:
        path = self._paths.get(s)
        if path is None:  # a str, built once: pathlib's joins cost more than the open itself
            path = self._paths[s] = str(self.path(s))
        return path

    @property
    def inner_len(self) -> int:
        """Elements per inner chunk."""
        return self._inner_len

    @property
    def n_inner(self) -> int:
        """Inner chunks per shard file."""
        return self._n_inner

    def read(
        self, runs: NDArray[np.int64], out: np.ndarray, pool: Any = None, *, extremes: bool = False
    ) -> tuple[int, int] | None:
        """Read ``runs`` (``(n, 2)`` start, stop) one after the other into ``out`` (``pool``: unused, as DirectRuns').

        When ``out`` is wider than :attr:`dtype` (stored counts into their values' dtype), the runs are read into a
        small buffer a few inner chunks at a time and each piece widened into ``out`` while it is in cache: no
        block-sized buffer of stored integers. With ``extremes``, return ``out``'s smallest and largest value
        (:func:`read_raw_runs`, in this thread).

        Raises
        ------
        OSError
            If a shard file is shorter than its index says (truncated), naming the file and chunk.
        """
        del pool
        return read_raw_runs([(self, runs, out, extremes, False)], 1)

    def read_part(self, part: Part) -> tuple[int, int] | None:
        """Do ``part``'s reads (:func:`~annshard._store._raw_plan.plan_parts`); with ``part.extremes``, return the smallest and largest value.

        The extremes are read while the part is still in cache (the gene index check).
        """
        out = part.out
        fds: dict[int, int] = {}  # open for this part only: a collection may have thousands of shard files
        try:
            if out.dtype == self.dtype:
                self._read_into(part, fds)
            else:
                self._read_widening(part, fds)
        finally:
            for fd in fds.values():
                os.close(fd)
        if not part.extremes or out.shape[0] == 0:
            return None
        return int(out.min()) if out.dtype.kind == "i" else 0, int(out.max())

    def _read_into(self, part: Part, fds: dict[int, int]) -> None:
        size, out = self.dtype.itemsize, part.out
        view = memoryview(out.reshape(-1).view(np.uint8))
        for f, at, o, n in zip(part.file, part.at, part.dest, part.n, strict=True):
            if f < 0:
                out[o : o + n] = self._fill
            else:
                self._pread(f, fds, view, o * size, n * size, at)

    def _read_widening(self, part: Part, fds: dict[int, int]) -> None:
        # reads are packed into the scratch buffer one after the other (they are contiguous in `out` too), a read
        # longer than the room left is cut, and the scratch is widened into `out` whenever it is full
        size, room, out = self.dtype.itemsize, _WIDEN_CHUNKS * self._inner_len, part.out
        scratch = np.empty(room, dtype=self.dtype)
        view = memoryview(scratch.view(np.uint8))
        start = used = 0  # `out` position of scratch[0], elements in the scratch
        for f, at, o, n in zip(part.file, part.at, part.dest, part.n, strict=True):
            if f < 0:  # fill value straight into `out`, in its own dtype
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
                self._pread(f, fds, view, used * size, m * size, at + pos * size)
                used, pos = used + m, pos + m
        np.copyto(out[start : start + used], scratch[:used], casting="unsafe")

    def _pread(self, s: int, fds: dict[int, int], view: memoryview, dest: int, n: int, at: int) -> None:
        fd = fds.get(s)
        if fd is None:
            fd = fds[s] = os.open(self._file(s), os.O_RDONLY)
        got = os.preadv(fd, [view[dest : dest + n]], at)
        if got != n:
            msg = f"{self.path(s)}: read {got} of {n} bytes at {at} (truncated file)"
            raise OSError(msg)


def read_raw_runs(
    jobs: Sequence[tuple[RawRuns, NDArray[np.int64], np.ndarray, bool, bool]],
    threads: int | None,
    *,
    populate: Callable[[np.ndarray], None] | None = None,
) -> tuple[int, int] | None:
    """Do ``jobs`` on up to ``threads`` threads (``None``: one per core).

    A job is ``(reader, element runs, 1-D output, extremes, fresh)``. All jobs are planned at once, by numpy
    (:func:`~annshard._store._raw_plan.plan_parts`), each cut into parts of whole runs of about equal bytes (at
    least 1 MiB each), so the copies scale with cores even when a block touches one or two shards; ``os.preadv``
    releases the GIL. The output of a ``fresh`` job (a new buffer whose pages were not faulted in yet) is handed
    to ``populate`` part by part, each in the thread that then fills it, so the kernel's first touch is spread over
    the threads too. Returns the smallest and largest value read by the jobs that ask for their ``extremes``
    (``None`` if they read none): each part finds its own while its bytes are in cache, on its own thread. A
    part's error is raised after every part has finished.
    """
    n = max(1, threads or os.cpu_count() or 1)
    parts = plan_parts(jobs, n)

    def do(part: Part) -> tuple[int, int] | None:
        if part.fresh and populate is not None:
            populate(part.out)
        return part.reader.read_part(part)

    if n == 1 or len(parts) <= 1:
        found = [do(part) for part in parts]
    else:
        with ThreadPoolExecutor(min(n, len(parts)), thread_name_prefix="annshard-raw") as ex:
            futures = [ex.submit(do, part) for part in parts]
            found = [future.result() for future in futures]
    got = [e for e in found if e is not None]
    if not got:
        return None
    return min(lo for lo, _ in got), max(hi for _, hi in got)
