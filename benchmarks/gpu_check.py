"""CPU mode vs GPU preload: cells/s over two epochs from constructing the loader, and time to first batch.

Run by ``benchmarks/gpu_check.sh`` (which also prints the GPU and runs the GPU tests)::

    uv run python benchmarks/gpu_check.py                    # 200k cells x 20k genes, ~1,000 non-zeros per cell
    uv run python benchmarks/gpu_check.py --cpu-only --cells 4000 --genes 500 --nnz 50   # no GPU: CPU mode only

The collection is generated (files in parallel processes, then
``annshard.write_collection``) and cached under ``bench_data/``, so a rerun
starts at the measurements. Modes, each over torch CSR output with one
categorical obs column, batch 4096, at both settings (chunk 32 / preload 256
and chunk 256 / preload 32), interleaved:

- ``cpu``: ``Loader(output="torch")``, batches gathered on the host, torch CSR on the CPU;
- ``cuda``: ``Loader(output="torch", device="cuda")``, the GPU preload (blocks moved once, gathered on the GPU);
- ``cuda-host``: ``Loader(output="torch", device="cuda", gather="host")``, host gather then a copy per batch.

GPU modes are skipped (and the script says so) with ``--cpu-only`` or without
CUDA. Each figure is the median of ``--repeats`` runs; the GPU timings end
with ``torch.cuda.synchronize()``; CUDA's context is created before the first
timing. CPU ms per 1,000 cells counts all threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ((32, 256), (256, 32))


def _write_file(args: tuple[str, int, int, int, int]) -> str:
    from annshard.testing import make_adata

    path, n, genes, nnz, seed = args
    make_adata(n, genes, nnz_per_cell=nnz, seed=seed, obs_prefix=f"s{seed}-cell").write_h5ad(path)
    return path


def ensure_collection(cells: int, genes: int, nnz: int, *, files: int, workers: int, data_dir: Path) -> Path:
    """Return the path of the benchmark collection, generating it (in ``workers`` processes) unless cached."""
    import annshard

    out = data_dir / f"gpu_check_c{cells}_g{genes}_nnz{nnz}_f{files}"
    coll = out / "collection.zarr"
    if (out / "done.json").exists():
        print(f"collection: {coll} (cached)", flush=True)
        return coll
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sizes = [cells // files + (i < cells % files) for i in range(files)]
    jobs = [(str(out / f"part-{i:02d}.h5ad"), n, genes, nnz, i) for i, n in enumerate(sizes)]
    if cells * nnz <= 5_000_000 or workers <= 1:  # small: no process start-ups
        paths = [_write_file(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, files)) as pool:
            paths = list(pool.map(_write_file, jobs))
    t1 = time.perf_counter()
    annshard.write_collection(paths, coll, obs_columns=["cell_type"], overwrite=True)
    t2 = time.perf_counter()
    for p in paths:
        Path(p).unlink()
    (out / "done.json").write_text(json.dumps({"cells": cells, "genes": genes, "nnz": nnz}))
    print(f"collection: {coll} (generated in {t1 - t0:.0f} s, written in {t2 - t1:.0f} s)", flush=True)
    return coll


def measure(path: Path, mode: str, chunk: int, preload: int, *, batch_size: int, epochs: int) -> dict[str, float]:
    """One run: ``epochs`` epochs from constructing the loader; cells/s, first-batch seconds, CPU ms per 1k cells."""
    import torch

    import annshard

    kw: dict = {"batch_size": batch_size, "chunk_size": chunk, "preload_nchunks": preload, "output": "torch"}
    if mode != "cpu":
        kw["device"] = "cuda"
    if mode == "cuda-host":
        kw["gather"] = "host"
    sync = torch.cuda.synchronize if mode != "cpu" else (lambda: None)
    c0, t0 = time.process_time(), time.perf_counter()
    loader = annshard.Loader(path, obs_columns=["cell_type"], seed=0, **kw)
    cells, first = 0, None
    for _ in range(epochs):
        for batch in loader:
            cells += batch.n_obs
            if first is None:
                sync()
                first = time.perf_counter() - t0
    sync()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"cells_s": cells / wall, "first_s": first or 0.0, "cpu_ms_1k": 1e3 * cpu / cells * 1e3}


def gpu_reason() -> str | None:
    """Why GPU modes cannot run here (``None`` when they can)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=200_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--nnz", type=int, default=1000, help="median non-zeros per cell (issue 15's data: ~1,500)")
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes generating the files")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cpu-only", action="store_true", help="skip the GPU modes")
    p.add_argument("--data-dir", type=Path, default=ROOT / "bench_data", help="where the collection is cached")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = p.parse_args(argv)
    reason = "--cpu-only" if a.cpu_only else gpu_reason()
    modes = ["cpu"] if reason else ["cpu", "cuda", "cuda-host"]
    if reason:
        print(f"GPU modes skipped ({reason}): measuring CPU mode only", flush=True)
    if not reason:  # CUDA's context is made once, before any timing (it is not the loader's cost)
        import torch

        torch.zeros(1, device="cuda").sum().item()
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    path = ensure_collection(a.cells, a.genes, a.nnz, files=a.files, workers=a.workers, data_dir=a.data_dir)
    runs: dict[tuple[str, int, int], list[dict[str, float]]] = {}
    for r in range(a.repeats):
        for chunk, preload in SETTINGS:
            for mode in modes if r % 2 == 0 else modes[::-1]:  # interleaved, alternating order
                res = measure(path, mode, chunk, preload, batch_size=a.batch_size, epochs=a.epochs)
                runs.setdefault((mode, chunk, preload), []).append(res)
                print(f"  {mode:9s} chunk {chunk:3d} / preload {preload:3d}: {res['cells_s']:9.0f} cells/s", flush=True)
    print(f"\n{a.cells} cells x {a.genes} genes, ~{a.nnz} non-zeros per cell, batch {a.batch_size}, {a.epochs} epochs")
    print("| mode | chunk / preload | cells/s | first batch (s) | CPU ms per 1k cells |")
    print("|---|---|---|---|---|")
    table = []
    for (mode, chunk, preload), rs in runs.items():
        med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        table.append({"mode": mode, "chunk": chunk, "preload": preload, **med})
        print(
            f"| {mode} | {chunk} / {preload} | {med['cells_s']:.0f} | {med['first_s']:.2f} | {med['cpu_ms_1k']:.1f} |"
        )
    if a.json:
        a.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
