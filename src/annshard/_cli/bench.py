"""``annshard bench PATH``: loader throughput (cells/s), time to first batch and peak memory."""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "bench", "run"]


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options."""
    from . import add_storage_option

    parser.add_argument("path", nargs="+", help="collection path(s) or URL(s) (annshard or annbatch)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--preload-nchunks", type=int, default=256)
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs to read (fractions allowed)")
    parser.add_argument("--obs-column", action="append", default=[], help="obs column to load (repeatable)")
    parser.add_argument("--sampler", default="random", choices=["random", "sequential"])
    parser.add_argument("--output", default="scipy", choices=["scipy", "numpy", "torch"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--read-threads", type=int, default=None, help="decode threads (default: cores - 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--cache", default=None, metavar="DIR", help="local cache of remote shard data (Loader(cache=))"
    )
    add_storage_option(parser)


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def bench(
    paths: list[str],
    *,
    batch_size: int = 4096,
    chunk_size: int = 32,
    preload_nchunks: int = 256,
    epochs: float = 1.0,
    obs_columns: list[str] | None = None,
    sampler: str = "random",
    output: str = "scipy",
    seed: int = 0,
    read_threads: int | None = None,
    progress: bool = True,
    storage_options: dict[str, Any] | None = None,
    cache: str | None = None,
) -> dict[str, Any]:
    """Read ``epochs`` epochs and return the figures (cells/s, seconds to first batch, peak RSS in MB).

    ``epoch_s`` are each pass's seconds, the first counted from constructing the
    loader; ``later_first_batch_s`` each later pass's wait for its first batch.
    """
    from tqdm.auto import tqdm

    from annshard._load import Loader

    t0 = time.perf_counter()
    loader = Loader(
        paths,
        batch_size=batch_size,
        chunk_size=chunk_size,
        preload_nchunks=preload_nchunks,
        obs_columns=obs_columns,
        sampler=sampler,
        output=output,  # type: ignore[arg-type]
        seed=seed,
        read_threads=read_threads,
        storage_options=storage_options,
        cache=cache,
    )
    target = int(loader.n_obs * epochs)
    cells, first, cpu0 = 0, None, 0.0
    epoch_s: list[float] = []  # each pass's seconds, the first counted from constructing the loader
    waits: list[float] = []  # each later pass's wait for its first batch (a pipeline fill not overlapped)
    mark = t0
    bar = tqdm(total=target, unit="cells", unit_scale=True, disable=not progress, file=sys.stderr)
    while cells < target:
        start, fresh = time.perf_counter(), True
        for batch in loader:
            if fresh and first is not None:
                waits.append(time.perf_counter() - start)
            fresh = False
            if first is None:
                first = time.perf_counter() - t0
                cpu0 = time.process_time()
            cells += batch.n_obs
            bar.update(batch.n_obs)
            if cells >= target:
                break
        now = time.perf_counter()
        epoch_s.append(now - mark)
        mark = now
    bar.close()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "paths": paths,
        "n_obs": loader.n_obs,
        "n_vars": loader.n_vars,
        "cells": cells,
        "seconds": elapsed,
        "cells_per_s": cells / (elapsed - (first or 0.0)) if elapsed > (first or 0.0) else float("nan"),
        "cells_per_s_total": cells / elapsed,
        "first_batch_s": first,
        "epoch_s": epoch_s,
        "later_first_batch_s": waits,
        "cpu_s_per_1k_cells": 1000 * cpu / cells if cells else float("nan"),
        "peak_rss_mb": _peak_rss_mb(),
        "settings": loader.settings(),
    }


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the figures."""
    from . import storage_options

    res = bench(
        args.path,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        preload_nchunks=args.preload_nchunks,
        epochs=args.epochs,
        obs_columns=args.obs_column,
        sampler=args.sampler,
        output=args.output,
        seed=args.seed,
        read_threads=args.read_threads,
        progress=not args.no_progress,
        storage_options=storage_options(args),
        cache=args.cache,
    )
    if args.json:
        print(json.dumps(res, indent=2, default=str))
        return 0
    print(f"collection      {', '.join(args.path)} ({res['n_obs']} cells x {res['n_vars']} genes)")
    print(
        f"settings        batch {args.batch_size}, chunk {args.chunk_size}, preload {args.preload_nchunks}, sampler {args.sampler}, output {args.output}"
    )
    print(f"cells read      {res['cells']} in {res['seconds']:.2f} s")
    print(
        f"throughput      {res['cells_per_s']:,.0f} cells/s (after the first batch; {res['cells_per_s_total']:,.0f} overall)"
    )
    print(
        f"CPU time        {res['cpu_s_per_1k_cells'] * 1000:.1f} ms per 1,000 cells (all threads, after the first batch)"
    )
    print(f"first batch     {res['first_batch_s']:.3f} s (including opening the collection)")
    if len(res["epoch_s"]) > 1:
        first_s, later = res["epoch_s"][0], res["epoch_s"][1:]
        print(
            f"epochs          first {first_s:.2f} s (from constructing the loader), later {', '.join(f'{e:.2f}' for e in later)} s"
        )
        waits = ", ".join(f"{w:.3f}" for w in res["later_first_batch_s"])
        print(f"later epochs    first batch after {waits} s (the wait at each later epoch's start)")
    print(f"peak RSS        {res['peak_rss_mb']:.0f} MB")
    return 0
