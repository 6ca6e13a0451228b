"""Planning a block's raw reads all at once: numpy over every run of every array, a Python loop per file only.

:func:`~annshard._store._raw.read_raw_runs` gets a block's jobs (one per shard and array: element runs and their
place in the block). Cutting each run at inner-chunk borders, finding each piece's bytes in its shard file's
index, checking them, joining pieces that continue each other in the file and cutting the jobs into parts for
the read threads used to be Python per piece (a few µs each, thousands per block) in every job; here it is a
fixed number of numpy calls per *block* plus a loop over the shard files touched, so the read thread's share
stays small and the parts' threads do little but ``os.preadv``. The trade-off: a block's plan is built before
any byte is read (a few arrays of one entry per piece), where the loop interleaved planning with reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

__all__ = ["Part", "plan_parts", "run_pieces"]

PART_BYTES = 1 << 20  # a job is cut into parts of at least this many bytes, one per thread
_FILE_KEY = 1 << 32  # (job, shard file) as one integer: job * _FILE_KEY + file


def _pieces(runs: NDArray[np.int64], chunk: Any) -> tuple[NDArray[np.int64], ...]:
    """Owner run, chunk index, start and stop in the chunk, start in the output, of every piece (no empty run)."""
    first = runs[:, 0] // chunk
    k = (runs[:, 1] - 1) // chunk - first + 1  # pieces per run
    owner = np.repeat(np.arange(runs.shape[0]), k)
    ci = np.repeat(first - np.cumsum(k) + k, k) + np.arange(owner.shape[0])  # chunk index of each piece
    size = chunk if np.ndim(chunk) == 0 else chunk[owner]
    c0 = ci * size
    start = np.maximum(runs[owner, 0], c0)
    stop = np.minimum(runs[owner, 1], c0 + size)
    lens = stop - start
    return owner, ci, start - c0, stop - c0, np.cumsum(lens) - lens


def run_pieces(runs: NDArray[np.int64], chunk: int) -> NDArray[np.int64]:
    """Split runs of a chunked axis at chunk borders, all at once: ``(n, 4)`` of chunk index, start and stop in it, start in output.

    The runs (``(n, 2)`` start, stop) are laid out one after the other in the output; empty runs give no piece.
    The same pieces, in the same order, as cutting each run in a loop, computed by numpy in a few calls.
    """
    runs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    runs = runs[runs[:, 1] > runs[:, 0]]
    if runs.shape[0] == 0:
        return np.zeros((0, 4), dtype=np.int64)
    _, ci, a, b, out = _pieces(runs, chunk)
    return np.stack([ci, a, b, out], axis=1)


@dataclass
class Part:
    """One thread's share of a block's raw reads: whole runs of one job, as reads into ``out``.

    ``file``, ``at``, ``dest``, ``n``: per read, the shard file (``-1``: fill value, nothing stored), the byte
    offset in it, the start in ``out`` and the number of elements. The part's thread opens the files it reads.
    """

    reader: Any
    out: np.ndarray
    file: list[int]
    at: list[int]
    dest: list[int]
    n: list[int]
    extremes: bool
    fresh: bool


def plan_parts(jobs: Sequence[tuple[Any, NDArray[np.int64], np.ndarray, bool, bool]], threads: int) -> list[Part]:
    """Plan ``jobs`` (reader, element runs, 1-D output, extremes, fresh) as parts of about equal bytes.

    Each job is cut into up to ``threads`` parts of whole runs (each at least :data:`PART_BYTES`), in order.
    Only the shard indexes are read here (each once per reader, :meth:`~annshard._store._raw.RawRuns.table`);
    the parts' threads open the files they read.

    Raises
    ------
    OSError
        If an inner chunk is not a whole chunk inside its file (a truncated file), naming the file and chunk.
    """
    n_jobs = len(jobs)
    if n_jobs == 0:
        return []
    counts = np.array([job[1].shape[0] for job in jobs], dtype=np.int64)
    runs = np.concatenate([np.asarray(job[1], dtype=np.int64).reshape(-1, 2) for job in jobs])
    job_of_run = np.repeat(np.arange(n_jobs), counts)
    keep = runs[:, 1] > runs[:, 0]
    if not keep.all():
        runs, job_of_run = runs[keep], job_of_run[keep]
    if runs.shape[0] == 0:
        return []
    readers = [job[0] for job in jobs]
    inner_len = np.array([r.inner_len for r in readers], dtype=np.int64)
    n_inner = np.array([r.n_inner for r in readers], dtype=np.int64)
    itemsize = np.array([r.dtype.itemsize for r in readers], dtype=np.int64)
    # parts: a job of T elements in k parts; run r (ending at e within its job) is in part ceil(e k / T) - 1
    run_len = runs[:, 1] - runs[:, 0]
    total = np.bincount(job_of_run, weights=run_len, minlength=n_jobs).astype(np.int64)
    job_base = np.cumsum(total) - total
    out_bytes = np.array([job[2].itemsize for job in jobs], dtype=np.int64)
    k = np.clip(
        np.minimum(np.minimum(threads, np.bincount(job_of_run, minlength=n_jobs)), total * out_bytes // PART_BYTES),
        1,
        None,
    )
    ends = np.cumsum(run_len) - job_base[job_of_run]
    tot_r, k_r = total[job_of_run], k[job_of_run]
    part_base = np.cumsum(k) - k
    run_part = part_base[job_of_run] + np.minimum(k_r - 1, (ends * k_r + tot_r - 1) // tot_r - 1)
    # pieces, and where their bytes are
    owner, ci, a, b, dest = _pieces(runs, inner_len[job_of_run])
    job = job_of_run[owner]
    shard = ci // n_inner[job]
    inner = ci - shard * n_inner[job]
    keys, which = np.unique(job * _FILE_KEY + shard, return_inverse=True)
    offsets, nbytes, sizes, files, base = [], [], [], [], []
    at_entry = 0
    for key in keys.tolist():  # the shard files this block touches
        j, s = divmod(key, _FILE_KEY)
        table = readers[j].table(s)
        if table is None:  # never written: every chunk reads as missing
            table = (np.full(int(n_inner[j]), -1, dtype=np.int64),) * 2 + (0,)
        offsets.append(table[0])
        nbytes.append(table[1])
        sizes.append(table[2])
        files.append(s)
        base.append(at_entry)
        at_entry += table[0].shape[0]
    entry = np.array(base, dtype=np.int64)[which] + inner
    off = np.concatenate(offsets)[entry]
    nb = np.concatenate(nbytes)[entry]
    item = itemsize[job]
    chunk_bytes = inner_len[job] * item
    written = ~((off == -1) & (nb == -1))
    bad = written & ((nb != chunk_bytes) | (off < 0) | (off > np.array(sizes, dtype=np.int64)[which] - nb))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        path = readers[int(job[i])].path(int(shard[i]))
        msg = f"{path}: inner chunk {int(inner[i])} is {int(nb[i])} bytes at {int(off[i])}, not {int(chunk_bytes[i])} bytes inside the file"
        raise OSError(msg)
    fd = np.where(written, np.array(files, dtype=np.int64)[which], -1)  # the file, -1: fill value
    at = off + a * item
    lens = b - a
    part = run_part[owner]
    # a piece joins the read before it when both are in the same part and file, right after each other (the
    # output is contiguous by construction), or both fill value
    joins = np.zeros(owner.shape[0], dtype=bool)
    joins[1:] = (
        (part[1:] == part[:-1]) & (fd[1:] == fd[:-1]) & ((fd[1:] < 0) | (at[1:] == at[:-1] + lens[:-1] * item[1:]))
    )
    heads = np.flatnonzero(~joins)
    read_part = part[heads]
    bounds = np.searchsorted(read_part, np.arange(int(part_base[-1] + k[-1]) + 1)).tolist()
    fd_l, at_l = fd[heads].tolist(), at[heads].tolist()
    dest_l, n_l = (dest[heads] - job_base[job[heads]]).tolist(), np.add.reduceat(lens, heads).tolist()
    parts = []
    for p, j in enumerate(np.repeat(np.arange(n_jobs), k).tolist()):
        lo, hi = bounds[p], bounds[p + 1]
        if lo == hi:
            continue
        d0 = dest_l[lo]
        out = jobs[j][2][d0 : dest_l[hi - 1] + n_l[hi - 1]]
        rel = [d - d0 for d in dest_l[lo:hi]]
        parts.append(Part(readers[j], out, fd_l[lo:hi], at_l[lo:hi], rel, n_l[lo:hi], jobs[j][3], jobs[j][4]))
    return parts
