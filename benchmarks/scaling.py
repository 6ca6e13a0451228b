"""How annshard scales with the number of cells: loader throughput should stay flat, writer memory bounded.

    uv run python benchmarks/scaling.py [--cells 100000 200000 500000 --genes 20000 --memory-budget 1GB]

For each size: generate (or reuse) the ``.h5ad`` inputs (25k cells per file),
write an annshard collection in a fresh process (cells/s, peak RSS), then load
it in a fresh process at (batch 4096, chunk 32, preload 256) for ``--epochs``
epochs with the collection in page cache (cells/s, peak RSS). A dataset larger
than RAM is out of reach on the 24 GB machine; what matters is the trend:
nothing here should grow with the number of cells except the time to write.
Writes ``benchmarks/out/scaling.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import DATA_DIR, ensure_dataset
from harness import dir_bytes, fmt_table, machine, run_job, warm_page_cache

OUT_DIR = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, nargs="+", default=[100_000, 200_000, 500_000])
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--memory-budget", default="1GB")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the written collections")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    a = p.parse_args(argv)
    rows, results = [], []
    for n in a.cells:
        paths, meta = ensure_dataset(n, a.genes, cells_per_file=25_000)
        out = DATA_DIR / "scaling" / f"annshard_c{n}_g{a.genes}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        warm_page_cache(*paths)
        conv = run_job(
            "convert_annshard",
            {
                "paths": [str(x) for x in paths],
                "out": str(out),
                "n_obs": n,
                "kwargs": {"memory_budget": a.memory_budget},
            },
        )
        warm_page_cache(out)
        load = run_job(
            "load_annshard",
            {"collection": str(out), "batch_size": 4096, "chunk_size": 32, "preload_nchunks": 256, "epochs": a.epochs},
        )
        r = {
            "cells": n,
            "input_bytes": meta["bytes_on_disk"],
            "collection_bytes": dir_bytes(out),
            "convert": conv,
            "load": load,
        }
        results.append(r)
        rows.append(
            [
                n,
                r["input_bytes"] / 1e9,
                conv["cells_per_s"],
                conv["peak_rss_mb"],
                load["cells_per_s"],
                load["first_batch_s"],
                load["peak_rss_mb"],
            ]
        )
        print(
            f"{n} cells: write {conv['cells_per_s']:,.0f} cells/s, load {load['cells_per_s']:,.0f} cells/s",
            file=sys.stderr,
        )
        if not a.keep:
            shutil.rmtree(out, ignore_errors=True)
    a.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": " ".join(["uv run python benchmarks/scaling.py", *sys.argv[1:]]),
        "machine": machine(),
        "results": results,
    }
    (a.out / "scaling.json").write_text(json.dumps(doc, indent=1))
    print(f"memory budget {a.memory_budget}; load at (4096, 32, 256), {a.epochs} epoch(s), page cache warm")
    print(
        fmt_table(
            rows,
            [
                "cells",
                "input GB",
                "write cells/s",
                "write peak RSS MB",
                "load cells/s",
                "first batch s",
                "load peak RSS MB",
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
