"""Storage layout sweep: which StorageSpec decodes and loads fastest on this machine?

    uv run python benchmarks/storage.py [--cells 50000 --genes 20000 --repeats 2]

The same rows (the first ``--cells`` of the benchmark data set, permuted with a
fixed seed) are written once per variant with :mod:`layout` (annshard's own
``write_shard``, in memory, so only the layout differs), then for each variant,
in a fresh process each and with the files in page cache:

- decode: every ``X/data`` and ``X/indices`` chunk read whole through zarrs (cells/s);
- load: ``annshard.Loader`` at (batch 4096, chunk 32, preload 256), 2 epochs (cells/s).

Variants change one thing at a time from what ``write_collection`` chooses for
this (raw count) data up to issue 15 round 3, ``StorageSpec(counts_dtype="uint16", indices_codec="none")``
(since round 4 the writer also stores counts uncompressed: the ``counts uncompressed`` variant):
how values are stored (counts or as float32), whether gene indices are
compressed, codec and level, blosc shuffle, inner chunk length (``chunk_elems``),
zarr shard length (``shard_elems``) and the index dtype. Repeats are interleaved over variants.
Writes ``benchmarks/out/storage.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import DATA_DIR, ensure_dataset
from harness import dir_bytes, fmt_table, median, run_job, warm_page_cache

from annshard._store._manifest import StorageSpec

OUT_DIR = Path(__file__).resolve().parent / "out"


def variants() -> dict[str, StorageSpec]:
    # what write_collection picks for whole-number values
    base = StorageSpec(counts_dtype="uint16", indices_codec="none")
    v = {"default": base}
    v["indices compressed"] = replace(base, indices_codec=None)
    v["counts uncompressed"] = replace(base, counts_codec="none")  # write_collection's default since round 4
    v["float32 values"] = replace(base, counts_dtype=None)
    v["float32 values, bitshuffle"] = replace(base, counts_dtype=None, shuffle="bitshuffle")
    v["previous layout (float32 values, indices compressed)"] = replace(base, counts_dtype=None, indices_codec=None)
    v["zstd clevel 3"] = replace(base, codec="zstd", clevel=3)
    v["zstd clevel 1"] = replace(base, codec="zstd", clevel=1)
    v["lz4 clevel 1"] = replace(base, clevel=1)
    v["lz4 clevel 9"] = replace(base, clevel=9)
    v["no compression"] = replace(base, codec="none")
    for e in (4096, 8192, 16384, 65536):
        if e != base.chunk_elems:
            v[f"chunk_elems {e // 1024}k"] = replace(base, chunk_elems=e)
    for s in (2**20, 2**22, 2**26):
        if s != base.shard_elems:
            v[f"shard_elems 2^{s.bit_length() - 1}"] = replace(base, shard_elems=s)
    v["int32 indices"] = replace(base, indices_dtype="int32")
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=50_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--source-cells", type=int, default=200_000, help="which cached data set to take the rows from")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--only", default="", help="comma-separated variant names")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    a = p.parse_args(argv)

    import layout

    paths, meta = ensure_dataset(a.source_cells, a.genes, cells_per_file=25_000)
    work = DATA_DIR / "storage"
    work.mkdir(parents=True, exist_ok=True)
    specs = variants()
    if a.only:
        keep = {s.strip() for s in a.only.split(",")}
        specs = {k: v for k, v in specs.items() if k in keep or k == "default"}
    adata = layout.load_rows(paths, a.cells)
    dirs = {}
    write_s = {}
    for name, spec in specs.items():
        d = work / (name.replace(" ", "_").replace("^", "") + ".zarr")
        t0 = time.perf_counter()
        layout.write_layout(adata, d, spec, shard_rows=25_000)
        write_s[name] = time.perf_counter() - t0
        dirs[name] = d
        print(f"wrote {name}: {dir_bytes(d) / 1e6:.0f} MB in {write_s[name]:.1f} s", file=sys.stderr)
    del adata

    runs: dict[str, dict[str, list[dict]]] = {n: {"decode": [], "load": []} for n in specs}
    for r in range(a.repeats):
        order = list(specs) if r % 2 == 0 else list(specs)[::-1]
        for name in order:
            warm_page_cache(dirs[name])
            runs[name]["decode"].append(run_job("decode", {"collection": str(dirs[name]), "repeats": 3}))
            load = {"collection": str(dirs[name]), "batch_size": 4096, "chunk_size": 32, "preload_nchunks": 256}
            runs[name]["load"].append(run_job("load_annshard", {**load, "epochs": 2}))
            print(
                f"[{r + 1}/{a.repeats}] {name}: decode {runs[name]['decode'][-1]['cells_per_s']:,.0f} cells/s, "
                f"load {runs[name]['load'][-1]['cells_per_s']:,.0f} cells/s",
                file=sys.stderr,
            )

    rows, summary = [], {}
    for name, spec in specs.items():
        dec = median([x["cells_per_s"] for x in runs[name]["decode"]])
        gbs = median([x["decoded_gb_per_s"] for x in runs[name]["decode"]])
        load = median([x["cells_per_s"] for x in runs[name]["load"]])
        size = dir_bytes(dirs[name])
        summary[name] = {
            "spec": spec.to_dict(),
            "bytes": size,
            "write_s": write_s[name],
            "decode_cells_per_s": dec,
            "decode_gb_per_s": gbs,
            "load_32_256_cells_per_s": load,
        }
        rows.append([name, size / 1e6, write_s[name], dec, gbs, load])
    table = fmt_table(
        rows, ["variant", "MB on disk", "write s", "decode cells/s", "decoded GB/s", "load (4096,32,256) cells/s"]
    )
    a.out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join(["uv run python benchmarks/storage.py", *sys.argv[1:]]),
        "cells": a.cells,
        "genes": a.genes,
        "nnz_per_cell_mean": meta["nnz_per_cell_mean"],
        "summary": summary,
        "runs": runs,
    }
    (a.out / "storage.json").write_text(json.dumps(result, indent=1))
    print(
        f"storage sweep: {a.cells:,} cells x {a.genes:,} genes, median of {a.repeats}; default = {variants()['default']}"
    )
    print(table)
    for d in dirs.values():
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
