"""Realistic synthetic benchmark inputs: several ``.h5ad`` files, cached under ``bench_data/``.

Cells come from :func:`annshard.testing.make_adata`: per-cell non-zeros are
lognormal around ``nnz`` (sigma 0.35), gene popularity is a power law, values
are negative-binomial counts, and obs has the categorical columns
``cell_type``, ``donor``, ``assay`` plus numeric QC columns. The cells are
split into files of at most ``cells_per_file`` rows (as real collections are
made of many datasets); each file is generated in its own process so the
generator's memory does not accumulate.

The output directory is keyed by every parameter, and a ``done.json`` marker is
written last, so a rerun with the same parameters returns at once and an
interrupted one starts over.

``kind="lognorm"`` gives the same cells normalised as many users train on them:
``log1p(CP10k)`` in float32 (each cell's counts scaled to a total of 10,000, then
``log1p``), written as their own ``.h5ad`` files next to the counts files (same
names, same obs and var) and cached the same way. Both libraries then convert
and load the same files, and no value is a whole number.

Usage::

    uv run python benchmarks/data.py --cells 200000 --genes 20000 --nnz 1500 [--kind lognorm]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "bench_data"


def dataset_dir(cells: int, genes: int, nnz: int, cells_per_file: int, seed: int) -> Path:
    """The cache directory for one parameter set."""
    return DATA_DIR / f"h5ad_c{cells}_g{genes}_nnz{nnz}_f{cells_per_file}_s{seed}"


def file_sizes(cells: int, cells_per_file: int) -> list[int]:
    """Cells per file: full files of ``cells_per_file`` and one remainder."""
    sizes = [cells_per_file] * (cells // cells_per_file)
    if cells % cells_per_file:
        sizes.append(cells % cells_per_file)
    return sizes


def _write_one(path: Path, n: int, genes: int, nnz: int, seed: int, i: int) -> dict:
    from annshard.testing import make_adata

    adata = make_adata(n, genes, nnz_per_cell=nnz, seed=seed + i, obs_prefix=f"d{i}-cell", donor_prefix=f"d{i}-donor")
    adata.write_h5ad(path)
    return {"path": path.name, "n_obs": n, "nnz": int(adata.X.nnz)}


KINDS = ("counts", "lognorm")
"""The kinds of values: raw counts, and log1p(CP10k) float32 of the same cells."""


def _cached_or_fresh(out: Path) -> tuple[list[Path], dict] | None:
    """The cached files of a finished dataset in ``out``; else ``None``, with ``out`` emptied for a new one."""
    marker = out / "done.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        return [out / f["path"] for f in meta["files"]], meta
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return None


def ensure_dataset(
    cells: int,
    genes: int,
    *,
    nnz: int = 1500,
    cells_per_file: int = 25_000,
    seed: int = 0,
    kind: str = "counts",
    verbose: bool = True,
) -> tuple[list[Path], dict]:
    """Return the ``.h5ad`` paths of a dataset (generating it if it is not cached) and its description."""
    if kind not in KINDS:
        msg = f"kind must be one of {KINDS}, got {kind!r}"
        raise ValueError(msg)
    if kind == "lognorm":
        paths, meta = ensure_dataset(cells, genes, nnz=nnz, cells_per_file=cells_per_file, seed=seed, verbose=verbose)
        return _ensure_lognorm(paths, meta, verbose=verbose)
    out = dataset_dir(cells, genes, nnz, cells_per_file, seed)
    cached = _cached_or_fresh(out)
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    files = []
    for i, n in enumerate(file_sizes(cells, cells_per_file)):
        path = out / f"dataset-{i:02d}.h5ad"
        if n * nnz <= 5_000_000:  # small: in this process, no interpreter start-up per file
            files.append(_write_one(path, n, genes, nnz, seed, i))
            continue
        # large: one process per file, so make_adata's temporaries are freed with the process
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); from data import _write_one; from pathlib import Path; "
            "print(json.dumps(_write_one(Path(sys.argv[2]), *map(int, sys.argv[3:]))))"
        )
        args = [str(Path(__file__).parent), str(path), str(n), str(genes), str(nnz), str(seed), str(i)]
        res = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
        files.append(json.loads(res.stdout.strip().splitlines()[-1]))
        if verbose:
            print(f"  generated {path.name}: {n} cells ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    total_nnz = sum(f["nnz"] for f in files)
    meta = {
        "cells": cells,
        "genes": genes,
        "nnz_median": nnz,
        "nnz_per_cell_mean": total_nnz / cells,
        "total_nnz": total_nnz,
        "cells_per_file": cells_per_file,
        "seed": seed,
        "files": files,
        "bytes_on_disk": sum((out / f["path"]).stat().st_size for f in files),
    }
    (out / "done.json").write_text(json.dumps(meta, indent=1))
    return [out / f["path"] for f in files], meta


def lognorm(x: sp.csr_matrix) -> sp.csr_matrix:
    """``log1p(CP10k)`` of a counts matrix, float32: each row scaled to a total of 10,000, then ``log1p``."""
    x = sp.csr_matrix(x)
    totals = np.asarray(x.sum(axis=1, dtype=np.float64)).ravel()
    scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
    rows = np.repeat(scale, np.diff(x.indptr))
    data = np.log1p(x.data.astype(np.float64) * rows).astype(np.float32)
    return sp.csr_matrix((data, x.indices, x.indptr), shape=x.shape)


def _ensure_lognorm(paths: list[Path], meta: dict, *, verbose: bool) -> tuple[list[Path], dict]:
    import anndata as ad

    src = paths[0].parent
    out = src.with_name(src.name + "_lognorm")
    cached = _cached_or_fresh(out)
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    for path in paths:
        adata = ad.read_h5ad(path)
        adata.X = lognorm(adata.X)
        adata.write_h5ad(out / path.name)
        del adata
        if verbose:
            print(f"  normalised {path.name} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    lmeta = {**meta, "kind": "lognorm", "values": "log1p(CP10k) float32", "counts_dir": str(src)}
    lmeta["bytes_on_disk"] = sum((out / f["path"]).stat().st_size for f in meta["files"])
    (out / "done.json").write_text(json.dumps(lmeta, indent=1))
    return [out / f["path"] for f in lmeta["files"]], lmeta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=200_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--nnz", type=int, default=1500, help="median non-zeros per cell")
    p.add_argument("--cells-per-file", type=int, default=25_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kind", choices=KINDS, default="counts", help="raw counts or log1p(CP10k) float32")
    a = p.parse_args(argv)
    paths, meta = ensure_dataset(a.cells, a.genes, nnz=a.nnz, cells_per_file=a.cells_per_file, seed=a.seed, kind=a.kind)
    print(json.dumps({k: v for k, v in meta.items() if k != "files"}, indent=1))
    print("\n".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
