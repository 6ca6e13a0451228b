"""Where a conversion's time goes: wall and CPU per stage of the writer, by timers around its named functions.

Usage::

    uv run python benchmarks/convert_profile.py bench_data/h5ad_c100000_g20000_nnz1500_f50000_s0/*.h5ad

The timers wrap module functions of ``annshard._write`` / ``annshard._store`` for this process only (profiling, not
tests). ``thread CPU`` is the calling thread's CPU (``time.thread_time``); ``process CPU`` counts every thread
(zarrs' pool, the obs/var writer thread ``annshard-frames``, which runs beside the next bucket's load), so nested
and concurrent stages overlap in that column.
annshard's lazy write import is resolved before the clock starts.
"""

from __future__ import annotations

import argparse
import collections
import functools
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import annshard

_ACC: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0])


def _wrap(owner: Any, name: str, label: str | None = None) -> None:
    f = getattr(owner, name)
    label = label or name

    @functools.wraps(f)
    def timed(*a: Any, **k: Any) -> Any:
        t, c, p = time.perf_counter(), time.thread_time(), time.process_time()
        try:
            return f(*a, **k)
        finally:
            r = _ACC[label]
            r[0] += time.perf_counter() - t
            r[1] += time.thread_time() - c
            r[2] += time.process_time() - p
            r[3] += 1

    setattr(owner, name, timed)


def _instrument() -> None:
    from annshard._store import _shard
    from annshard._write import _counts, _gather, _passes, _scatter
    from annshard._write._sources import _store

    _wrap(_passes, "scatter", "scatter pass")
    _wrap(_store.StoreSource, "read_matrix", "  read source X block")
    _wrap(_counts.ValueStats, "update", "  value statistics")
    _wrap(_scatter, "compact_block", "  counts check + uint16 cast")
    _wrap(_scatter, "_permute", "  sort rows by bucket")
    _wrap(_store.StoreSource, "read_obs_names", "  read obs names")
    _wrap(_scatter._ColumnReader, "read", "  read obs columns")
    _wrap(_scatter, "_append", "  append to bucket files")
    _wrap(_passes, "gather", "gather pass")
    _wrap(_gather, "_load", "  read bucket files (not values)")
    _wrap(_gather, "load_values", "  read bucket values")
    _wrap(_gather, "take_rows", "  permute rows")
    _wrap(_gather, "load_bucket", "  load bucket (both above, obs)")
    _wrap(_gather, "write_shard", "  write shard (X; obs/var left running)")
    _wrap(_shard, "write_plain_1d", "    X arrays written directly")
    _wrap(_shard, "order_array_chunks", "    chunk-order rewrite (zarrs-written)")
    _wrap(_shard, "_write_frames", "  obs/var/empty (frames thread)")


def main() -> None:
    """Convert the given sources once and print the per-stage table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sources", nargs="+", type=Path)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    write = annshard.write_collection  # the lazy import, outside the clock
    _instrument()
    out = Path(tempfile.mkdtemp(prefix="annshard-profile-")) / "c.zarr"
    try:
        t, c = time.perf_counter(), time.process_time()
        coll = write([str(s) for s in a.sources], out, seed=a.seed)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{coll.n_obs} cells: wall {wall:.2f} s, process CPU {cpu:.2f} s, peak RSS {rss:.0f} MB")
    print(f"{'stage':34s} {'wall s':>8s} {'thread CPU s':>13s} {'process CPU s':>14s} {'calls':>6s}")
    for label, (w, tc, pc, n) in _ACC.items():
        print(f"{label:34s} {w:8.2f} {tc:13.2f} {pc:14.2f} {int(n):6d}")


if __name__ == "__main__":
    main()
