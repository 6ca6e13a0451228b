"""annshard vs annbatch, side by side, in one run on the same input files.

    uv run python benchmarks/compare.py                      # 200k cells x 20k genes, 3 repeats
    uv run python benchmarks/compare.py --quick              # 20k x 5k, 1 repeat, ~2 minutes
    uv run python benchmarks/compare.py --cells 4000 --genes 500 --repeats 1 --epochs 1   # a smoke test

What it measures (every figure is the median over ``--repeats`` repeats; the
repeats are interleaved, and which library goes first alternates):

- conversion: annbatch ``DatasetCollection.add_adatas(shuffle=True)`` vs
  ``annshard.write_collection``: cells/s and peak RSS;
- loading: annbatch ``Loader(shuffle=True)`` vs ``annshard.Loader`` over their own
  collections, scipy CSR plus the ``cell_type`` codes, at each ``--settings``
  (batch, chunk, preload): cells/s over ``--epochs`` epochs, time to first batch
  (from constructing the loader), peak RSS; page cache warm;
- end to end: one epoch of a small torch model (see ``jobs._model``; torch on one
  thread) over each loader, against max(compute alone, annshard's pure loading time);
- decode limit: every ``X`` chunk of each collection read whole through zarrs (no
  assembly), in cells/s, and each loader's throughput as a share of annshard's.

Every job runs in a fresh process (see ``harness.py``). Output: a table on
stdout, ``benchmarks/out/compare.json`` with all figures, and
``benchmarks/out/compare.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import DATA_DIR, ensure_dataset
from harness import dir_bytes, fmt_table, machine, median, run_job, warm_page_cache

LIBS = ("annbatch", "annshard")
OUT_DIR = Path(__file__).resolve().parent / "out"


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _order(r: int) -> tuple[str, ...]:
    return LIBS if r % 2 == 0 else LIBS[::-1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="annshard vs annbatch: conversion, loading, end to end, decode limit")
    p.add_argument("--cells", type=int, default=None, help="cells (default 200000; 20000 with --quick)")
    p.add_argument("--genes", type=int, default=None, help="genes (default 20000; 5000 with --quick)")
    p.add_argument("--nnz", type=int, default=1500, help="median non-zeros per cell")
    p.add_argument("--files", type=int, default=8, help="number of input .h5ad files")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3; 1 with --quick)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per loading measurement")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument(
        "--settings",
        default="32,256;256,32",
        help="loader settings 'chunk,preload;chunk,preload' (default %(default)s)",
    )
    p.add_argument("--skip", default="", help="comma-separated parts to skip: convert,load,train,decode")
    p.add_argument("--quick", action="store_true", help="20k cells x 5k genes, 1 repeat (a ~2 minute smoke run)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where the JSON and PNG go")
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNG")
    a = p.parse_args(argv)
    a.cells = a.cells or (20_000 if a.quick else 200_000)
    a.genes = a.genes or (5_000 if a.quick else 20_000)
    a.repeats = a.repeats or (1 if a.quick else 3)
    a.settings = [tuple(int(v) for v in s.split(",")) for s in a.settings.split(";") if s]
    a.skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    return a


def run(a: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    cells_per_file = -(-a.cells // a.files)
    paths, meta = ensure_dataset(a.cells, a.genes, nnz=a.nnz, cells_per_file=cells_per_file)
    paths = [str(p) for p in paths]
    work = DATA_DIR / "collections" / f"c{a.cells}_g{a.genes}_nnz{a.nnz}_f{cells_per_file}"
    work.mkdir(parents=True, exist_ok=True)
    coll = {lib: work / f"{lib}.zarr" for lib in LIBS}
    res: dict[str, Any] = {
        "command": " ".join(["uv run python benchmarks/compare.py", *sys.argv[1:]]),
        "machine": machine(),
        "data": {k: v for k, v in meta.items() if k != "files"} | {"n_files": len(paths)},
        "params": {
            "repeats": a.repeats,
            "epochs": a.epochs,
            "batch_size": a.batch_size,
            "settings": [list(s) for s in a.settings],
        },
        "runs": {},
    }
    runs: dict[str, list[dict]] = res["runs"]

    # -- conversion -------------------------------------------------------------------------
    need_convert = "convert" not in a.skip or not all((c / "zarr.json").exists() for c in coll.values())
    if need_convert:
        for r in range(a.repeats):
            for lib in _order(r):
                shutil.rmtree(coll[lib], ignore_errors=True)
                warm_page_cache(*paths)
                _log(f"convert {lib} (repeat {r + 1}/{a.repeats})")
                out = run_job(f"convert_{lib}", {"paths": paths, "out": str(coll[lib]), "n_obs": a.cells})
                out["bytes_on_disk"] = dir_bytes(coll[lib])
                runs.setdefault(f"convert/{lib}", []).append(out)
    for lib in LIBS:
        res.setdefault("collections", {})[lib] = {"path": str(coll[lib]), "bytes_on_disk": dir_bytes(coll[lib])}

    # -- decode limit -----------------------------------------------------------------------
    if "decode" not in a.skip:
        for lib in LIBS:
            warm_page_cache(coll[lib])
            _log(f"decode {lib} collection")
            runs.setdefault(f"decode/{lib}", []).append(run_job("decode", {"collection": str(coll[lib])}))

    # -- loading ----------------------------------------------------------------------------
    if "load" not in a.skip:
        for r in range(a.repeats):
            for chunk, preload in a.settings:
                for lib in _order(r):
                    warm_page_cache(coll[lib])
                    _log(f"load {lib} chunk={chunk} preload={preload} (repeat {r + 1}/{a.repeats})")
                    params = {
                        "collection": str(coll[lib]),
                        "batch_size": a.batch_size,
                        "chunk_size": chunk,
                        "preload_nchunks": preload,
                        "epochs": a.epochs,
                    }
                    runs.setdefault(f"load/{lib}/{chunk},{preload}", []).append(run_job(f"load_{lib}", params))

    # -- end to end -------------------------------------------------------------------------
    if "train" not in a.skip:
        chunk, preload = a.settings[0]
        common = {
            "batch_size": a.batch_size,
            "chunk_size": chunk,
            "preload_nchunks": preload,
            "n_vars": a.genes,
            "n_classes": 8,
            "n_obs": a.cells,
        }
        for r in range(a.repeats):
            _log(f"train compute only (repeat {r + 1}/{a.repeats})")
            runs.setdefault("train/compute", []).append(run_job("train_compute", {**common, "h5ad": paths[0]}))
            for lib in _order(r):
                warm_page_cache(coll[lib])
                _log(f"train {lib} (repeat {r + 1}/{a.repeats})")
                runs.setdefault(f"train/{lib}", []).append(
                    run_job(f"train_{lib}", {**common, "collection": str(coll[lib])})
                )

    res["summary"] = summarise(res, a)
    res["total_s"] = time.perf_counter() - t_start
    return res


def _med(runs: dict[str, list[dict]], key: str, field: str) -> float:
    return median([r[field] for r in runs.get(key, []) if r.get(field) is not None])


def summarise(res: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    """Medians per figure, ratios annshard / annbatch and the targets of issue 5."""
    runs = res["runs"]
    s: dict[str, Any] = {}
    for lib in LIBS:
        d: dict[str, Any] = {}
        d["convert_cells_per_s"] = _med(runs, f"convert/{lib}", "cells_per_s")
        d["convert_peak_rss_mb"] = _med(runs, f"convert/{lib}", "peak_rss_mb")
        d["decode_cells_per_s"] = _med(runs, f"decode/{lib}", "cells_per_s")
        d["decode_gb_per_s"] = _med(runs, f"decode/{lib}", "decoded_gb_per_s")
        d["bytes_on_disk"] = res.get("collections", {}).get(lib, {}).get("bytes_on_disk")
        for chunk, preload in a.settings:
            k = f"load/{lib}/{chunk},{preload}"
            d[f"load_{chunk}_{preload}_cells_per_s"] = _med(runs, k, "cells_per_s")
            d[f"load_{chunk}_{preload}_first_batch_s"] = _med(runs, k, "first_batch_s")
            d[f"load_{chunk}_{preload}_peak_rss_mb"] = _med(runs, k, "peak_rss_mb")
            d[f"load_{chunk}_{preload}_rss_over_base_mb"] = median(
                [r["peak_rss_mb"] - r["rss_base_mb"] for r in runs.get(k, [])]
            )
        d["train_epoch_s"] = _med(runs, f"train/{lib}", "epoch_s")
        s[lib] = d
    s["compute_epoch_s"] = _med(runs, "train/compute", "epoch_s")
    s["compute_step_ms"] = _med(runs, "train/compute", "step_ms")
    chunk, preload = a.settings[0]
    load_rate = s["annshard"][f"load_{chunk}_{preload}_cells_per_s"]
    s["annshard_pure_load_epoch_s"] = a.cells / load_rate if load_rate == load_rate else float("nan")
    s["e2e_bound_s"] = max(s["compute_epoch_s"], s["annshard_pure_load_epoch_s"])
    s["annshard_e2e_over_bound"] = s["annshard"]["train_epoch_s"] / s["e2e_bound_s"]
    s["ratio"] = {
        k: s["annshard"][k] / s["annbatch"][k]
        for k in s["annshard"]
        if isinstance(s["annshard"][k], int | float) and s["annbatch"].get(k)
    }
    limit = s["annshard"]["decode_cells_per_s"]
    s["share_of_decode_limit"] = {
        f"{lib}/{c},{p}": s[lib][f"load_{c}_{p}_cells_per_s"] / limit for lib in LIBS for c, p in a.settings
    }
    return s


def table(res: dict[str, Any], a: argparse.Namespace) -> str:
    s = res["summary"]
    rows: list[list[Any]] = []

    def row(label: str, key: str, target: str = "", higher_is_better: bool = True) -> None:
        ab, ash = s["annbatch"].get(key), s["annshard"].get(key)
        ratio = ash / ab if ab and ash == ash and ab == ab else float("nan")
        rows.append([label, ab, ash, f"{ratio:.2f}x" if ratio == ratio else "-", target])

    row("conversion, cells/s", "convert_cells_per_s", ">= 2x")
    row("conversion, peak RSS MB", "convert_peak_rss_mb", "<= 1x")
    for c, p in a.settings:
        tag = f"({a.batch_size},{c},{p})"
        row(f"load {tag}, cells/s", f"load_{c}_{p}_cells_per_s", ">= 2x")
        row(f"load {tag}, first batch s", f"load_{c}_{p}_first_batch_s", "<= 1x")
        row(f"load {tag}, peak RSS MB", f"load_{c}_{p}_peak_rss_mb", "<= 1x")
        row(f"load {tag}, RSS over imports MB", f"load_{c}_{p}_rss_over_base_mb")
    row("end to end, epoch s", "train_epoch_s", "")
    row("decode all X, cells/s", "decode_cells_per_s")
    row("collection size, bytes", "bytes_on_disk")
    out = [fmt_table(rows, ["figure", "annbatch", "annshard", "annshard/annbatch", "target"])]
    out.append("")
    out.append(
        f"end to end: compute alone {s['compute_epoch_s']:.2f} s/epoch ({s['compute_step_ms']:.1f} ms/step), "
        f"annshard pure loading {s['annshard_pure_load_epoch_s']:.2f} s/epoch, bound max() = {s['e2e_bound_s']:.2f} s; "
        f"annshard epoch / bound = {s['annshard_e2e_over_bound']:.2f} (target <= 1.10)"
    )
    shares = ", ".join(f"{k}: {v:.0%}" for k, v in s["share_of_decode_limit"].items())
    out.append(
        f"decode limit (annshard layout, all chunks via zarrs): {s['annshard']['decode_cells_per_s']:,.0f} cells/s; "
        f"loader share of it: {shares} (target annshard >= 50%)"
    )
    return "\n".join(out)


def plot(res: dict[str, Any], a: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["summary"]
    labels = ["conversion"] + [f"load\n({a.batch_size},{c},{p})" for c, p in a.settings] + ["end to end\n(cells/s)"]
    keys = ["convert_cells_per_s"] + [f"load_{c}_{p}_cells_per_s" for c, p in a.settings]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.38
    for j, lib in enumerate(LIBS):
        vals = [s[lib][k] for k in keys] + [a.cells / s[lib]["train_epoch_s"]]
        xs = [i + (j - 0.5) * width for i in range(len(vals))]
        bars = ax.bar(xs, vals, width, label=lib)
        ax.bar_label(bars, labels=[f"{v / 1000:.0f}k" if v == v else "" for v in vals], fontsize=8)
    limit = s["annshard"]["decode_cells_per_s"]
    if limit == limit:
        ax.axhline(limit, color="grey", ls="--", lw=1, label=f"decode limit {limit / 1000:.0f}k")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("cells / s")
    d = res["data"]
    ax.set_title(
        f"{d['cells']:,} cells x {d['genes']:,} genes, {d['nnz_per_cell_mean']:.0f} nnz/cell, "
        f"{res['machine']['cpus']} CPUs (median of {a.repeats})",
        fontsize=10,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    res = run(a)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "compare.json").write_text(json.dumps(res, indent=1, default=str))
    if not a.no_plot:
        plot(res, a, a.out / "compare.png")
    d = res["data"]
    print(
        f"annshard vs annbatch: {d['cells']:,} cells x {d['genes']:,} genes, {d['nnz_per_cell_mean']:.0f} nnz/cell "
        f"in {d['n_files']} .h5ad files; median of {a.repeats} interleaved repeats; {res['machine']['cpus']} CPUs"
    )
    print(table(res, a))
    print(f"\nwrote {a.out / 'compare.json'}" + ("" if a.no_plot else f" and {a.out / 'compare.png'}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
