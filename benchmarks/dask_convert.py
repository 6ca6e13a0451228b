"""Conversion on dask.distributed: cells/s, per-task time and bytes moved, without Dask and with 1..N workers.

Converts the benchmark data (``benchmarks/data.py``'s ``.h5ad`` inputs) once per engine: the
single-process writer (``--workers 0``) and a loopback ``LocalCluster`` of ``n`` worker processes
(one thread each), checks that every engine wrote the same bytes
(:func:`annshard.testing.assert_identical_collections`) and prints a Markdown table:

- wall time and cells/s of the whole conversion (planning, both passes, commit);
- the mean scatter and gather task time (from the cluster's task stream);
- bytes moved: the inputs read, the bucket files written by the scatter tasks and read back by
  the gather tasks (the staging on the shared file system; estimated from the stored arrays' raw
  size), the collection written, and the task arguments shipped by the scheduler (the pickled
  plan, once per task).

Usage::

    uv run python benchmarks/dask_convert.py --cells 20000 --genes 20000 --workers 0,1,2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from data import ensure_dataset


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _staging_bytes(coll) -> int:
    """Raw size of the bucket files of a write: values, indices, row lengths, source rows, obs."""
    m = coll.manifest
    nnz = sum(s.nnz for s in m.shards)
    per_value = np.dtype(m.storage.data_dtype).itemsize + np.dtype(m.storage.indices_dtype).itemsize
    per_row = 8 + 8 + 4 + 8 * len(m.obs_columns) + 24  # rowlen, row, source, obs columns, names
    return nnz * per_value + coll.n_obs * per_row


def _convert(paths: list[Path], out: Path, budget: str, n_workers: int) -> dict:
    import annshard

    if n_workers == 0:
        t0 = time.perf_counter()
        coll = annshard.write_collection(paths, out, memory_budget=budget)
        return {"wall": time.perf_counter() - t0, "coll": coll, "scatter": None, "gather": None, "shipped": 0}
    import distributed

    from annshard._write import _dask

    with _dask.local_client(n_workers) as client:
        client.run(lambda: __import__("annshard._write"))  # the workers' imports are not the conversion's
        with distributed.get_task_stream(client) as ts:
            t0 = time.perf_counter()
            coll = annshard.write_collection(paths, out, memory_budget=budget, client=client)
            wall = time.perf_counter() - t0
    times: dict[str, list[float]] = {"_scatter_remote": [], "_gather_remote": []}
    for rec in ts.data:
        name = str(rec["key"]).split("-", 1)[0]  # "<function>-<uuid>"
        for part in rec["startstops"]:
            if part["action"] == "compute" and name in times:
                times[name].append(part["stop"] - part["start"])
    counts = _dask.last_counts
    return {
        "wall": wall,
        "coll": coll,
        "scatter": (len(times["_scatter_remote"]), float(np.mean(times["_scatter_remote"]))),
        "gather": (len(times["_gather_remote"]), float(np.mean(times["_gather_remote"]))),
        "shipped": counts.plan_bytes * (counts.scatter + counts.gather),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=20_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--nnz", type=int, default=1500)
    p.add_argument("--cells-per-file", type=int, default=10_000)
    p.add_argument("--data", type=Path, default=None, help="a directory of .h5ad inputs instead of generated ones")
    p.add_argument("--memory-budget", default="256MB")
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts; 0: without Dask")
    args = p.parse_args(argv)
    if args.data is not None:
        paths = sorted(args.data.glob("*.h5ad"))
    else:
        paths, _ = ensure_dataset(args.cells, args.genes, nnz=args.nnz, cells_per_file=args.cells_per_file)
    from annshard.testing import assert_identical_collections

    input_bytes = sum(q.stat().st_size for q in paths)
    tmp = Path(tempfile.mkdtemp(prefix="annshard-distributed-"))
    rows, ref = [], None
    try:
        for n in (int(w) for w in args.workers.split(",")):
            out = tmp / f"w{n}.zarr"
            r = _convert(paths, out, args.memory_budget, n)
            coll = r["coll"]
            if ref is None:
                ref = out
            else:
                assert_identical_collections(ref, out)
            sc = "-" if r["scatter"] is None else f"{r['scatter'][0]} x {r['scatter'][1]:.2f}"
            ga = "-" if r["gather"] is None else f"{r['gather'][0]} x {r['gather'][1]:.2f}"
            rows.append(
                f"| {'no Dask' if n == 0 else f'{n} worker' + ('s' if n > 1 else '')} | {r['wall']:.1f} | "
                f"{coll.n_obs / r['wall']:,.0f} | {sc} | {ga} | {input_bytes / 1e6:,.0f} | "
                f"{_staging_bytes(coll) / 1e6:,.0f} | {_du(out) / 1e6:,.0f} | {r['shipped'] / 1e6:.1f} |"
            )
            print(rows[-1], flush=True)
            if n:
                shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{len(paths)} inputs, budget {args.memory_budget}; every engine wrote the same bytes\n")
    print(
        "| engine | wall s | cells/s | scatter tasks x mean s | gather tasks x mean s | input MB | "
        "staging MB (written + read) | collection MB | task args MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
