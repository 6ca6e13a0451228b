"""annshard vs annbatch, side by side, in one run on the same input files.

    uv run python benchmarks/compare.py                      # 200k cells x 20k genes, both kinds, 3 repeats
    uv run python benchmarks/compare.py --cells 100000 --kind lognorm
    uv run python benchmarks/compare.py --quick              # 20k x 5k, 1 repeat, a few minutes
    uv run python benchmarks/compare.py --cells 4000 --genes 500 --repeats 1 --epochs 2 --kind both  # a smoke test

What it measures, for each ``--kind`` of values (``counts``: raw counts;
``lognorm``: log1p(CP10k) float32 of the same cells, in their own ``.h5ad``
files, see ``data.py``; ``both``: one after the other in one run). Every figure
is the median over ``--repeats`` repeats; the repeats are interleaved, and which
library goes first alternates:

- conversion: annbatch ``DatasetCollection.add_adatas(shuffle=True)`` vs
  ``annshard.write_collection``: cells/s and peak RSS;
- loading, as a user sees it: annbatch ``Loader(shuffle=True, rng=default_rng(0))``
  vs ``annshard.Loader`` over their own collections, scipy CSR plus the
  ``cell_type`` codes, at each ``--settings`` (chunk, preload): ``--epochs``
  epochs counted from constructing the loader (time to first batch included):
  cells/s, time to first batch, first vs later epoch, peak RSS, and CPU ms per
  1,000 cells (user + sys of the whole process over that span, all threads);
  page cache warm;
- per-stage CPU of annshard's loader (CPU ms per 1,000 cells of the read thread
  and zarrs' native decode threads (stage A), the gather thread (stage B) and
  the consumer) and the throughput each stage would cap at on 2, 8 and 16 cores
  (the assumptions are printed with the table);
- end to end: one epoch of a small torch model (see ``jobs._model``; torch on one
  thread) over each loader, against max(compute alone, annshard's pure loading time);
- decode limit: every ``X`` chunk of each collection read whole through zarrs (no
  assembly), in cells/s, and each loader's throughput as a share of annshard's.

Every job runs in a fresh process (see ``harness.py``). Output: tables on
stdout (the first in the layout of issue 15), ``benchmarks/out/compare.json`` with all figures, and
``benchmarks/out/compare.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import DATA_DIR, KINDS, ensure_dataset
from harness import dir_bytes, fmt_table, machine, median, run_job, warm_page_cache

LIBS = ("annbatch", "annshard")
CORES = (2, 8, 16)
"""Core counts of the per-stage projection."""
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
    p.add_argument(
        "--kind",
        choices=(*KINDS, "both"),
        default="both",
        help="values: raw counts, log1p(CP10k) float32 of the same cells, or both (default %(default)s)",
    )
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3; 1 with --quick)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per loading measurement, from constructing the loader")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument(
        "--settings",
        default="32,256;256,32",
        help="loader settings 'chunk,preload;chunk,preload' (default %(default)s)",
    )
    p.add_argument(
        "--read-threads",
        type=int,
        default=None,
        help="annshard's read_threads (default: its own, cores - 1); 2 on 2 cores shows the raw reads' threads",
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
    a.kinds = KINDS if a.kind == "both" else (a.kind,)
    return a


def prepare_kernel() -> dict[str, Any]:
    """Build annshard's ahead-of-time gather kernel before anything is timed, as installing a wheel would.

    A loader that finds it missing starts its build in a background subprocess (``annshard._kernel_aot``), whose
    CPU no job would count; building it here first keeps every measured run alike (the module is per machine,
    in ``~/.cache/annshard`` or ``$ANNSHARD_CACHE_DIR``). Returns whether it was built here and how long it took.
    """
    code = (
        "import json, time; from annshard._kernel import _gather; from annshard import _kernel_aot as k; "
        "p = k.module_path(_gather); t = time.perf_counter(); "
        "had = p is not None and k.load(p) is not None; "
        "(had or p is None) or k.build(p, _gather); "
        "print(json.dumps({'path': str(p), 'already_built': had, 'build_s': time.perf_counter() - t}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"annshard's fused kernel not built (the loader uses scipy's gather): {out.stderr.strip()[-300:]}")
        return {"error": out.stderr.strip()[-300:]}
    info = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"annshard's fused kernel: {'already built' if info['already_built'] else 'built'} ({info['path']})")
    return info


def run(a: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    cells_per_file = -(-a.cells // a.files)
    files: dict[str, list[str]] = {}
    metas: dict[str, dict] = {}
    coll: dict[str, dict[str, Path]] = {}
    for kind in a.kinds:
        paths, meta = ensure_dataset(a.cells, a.genes, nnz=a.nnz, cells_per_file=cells_per_file, kind=kind)
        files[kind], metas[kind] = [str(p) for p in paths], meta
        work = DATA_DIR / "collections" / f"{kind}_c{a.cells}_g{a.genes}_nnz{a.nnz}_f{cells_per_file}"
        work.mkdir(parents=True, exist_ok=True)
        coll[kind] = {lib: work / f"{lib}.zarr" for lib in LIBS}
    meta = metas[a.kinds[0]]
    res: dict[str, Any] = {
        "command": " ".join(["uv run python benchmarks/compare.py", *sys.argv[1:]]),
        "machine": machine(),
        "fused_kernel": prepare_kernel(),
        "data": {k: v for k, v in meta.items() if k not in ("files", "kind", "values", "counts_dir", "bytes_on_disk")}
        | {
            "n_files": len(files[a.kinds[0]]),
            "kinds": {
                k: {"values": m.get("values", "raw counts (float32)"), "bytes_on_disk": m["bytes_on_disk"]}
                for k, m in metas.items()
            },
        },
        "params": {
            "kinds": list(a.kinds),
            "repeats": a.repeats,
            "epochs": a.epochs,
            "batch_size": a.batch_size,
            "settings": [list(s) for s in a.settings],
            "train_kind": a.kinds[0],
        },
        "runs": {},
    }
    runs: dict[str, list[dict]] = res["runs"]

    # -- conversion -------------------------------------------------------------------------
    for kind in a.kinds:
        need = "convert" not in a.skip or not all((c / "zarr.json").exists() for c in coll[kind].values())
        if not need:
            continue
        for r in range(a.repeats):
            for lib in _order(r):
                shutil.rmtree(coll[kind][lib], ignore_errors=True)
                warm_page_cache(*files[kind])
                _log(f"convert {kind} {lib} (repeat {r + 1}/{a.repeats})")
                params = {"paths": files[kind], "out": str(coll[kind][lib]), "n_obs": a.cells}
                out = run_job(f"convert_{lib}", params)
                out["bytes_on_disk"] = dir_bytes(coll[kind][lib])
                runs.setdefault(f"{kind}/convert/{lib}", []).append(out)
    res["collections"] = {
        kind: {lib: {"path": str(c), "bytes_on_disk": dir_bytes(c)} for lib, c in coll[kind].items()}
        for kind in a.kinds
    }

    # -- decode limit -----------------------------------------------------------------------
    if "decode" not in a.skip:
        for kind in a.kinds:
            for lib in LIBS:
                warm_page_cache(coll[kind][lib])
                _log(f"decode {kind} {lib} collection")
                out = run_job("decode", {"collection": str(coll[kind][lib])})
                runs.setdefault(f"{kind}/decode/{lib}", []).append(out)

    # -- loading ----------------------------------------------------------------------------
    if "load" not in a.skip:
        for r in range(a.repeats):
            for kind in a.kinds:
                for chunk, preload in a.settings:
                    for lib in _order(r):
                        warm_page_cache(coll[kind][lib])
                        _log(f"load {kind} {lib} chunk={chunk} preload={preload} (repeat {r + 1}/{a.repeats})")
                        params = {
                            "collection": str(coll[kind][lib]),
                            "batch_size": a.batch_size,
                            "chunk_size": chunk,
                            "preload_nchunks": preload,
                            "epochs": a.epochs,
                        }
                        if lib == "annshard" and a.read_threads:
                            params["kwargs"] = {"read_threads": a.read_threads}
                        key = f"{kind}/load/{lib}/{chunk},{preload}"
                        runs.setdefault(key, []).append(run_job(f"load_{lib}", params))

    # -- end to end (on the first kind) -----------------------------------------------------
    if "train" not in a.skip:
        kind = a.kinds[0]
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
            runs.setdefault("train/compute", []).append(run_job("train_compute", {**common, "h5ad": files[kind][0]}))
            for lib in _order(r):
                warm_page_cache(coll[kind][lib])
                _log(f"train {lib} (repeat {r + 1}/{a.repeats})")
                runs.setdefault(f"train/{lib}", []).append(
                    run_job(f"train_{lib}", {**common, "collection": str(coll[kind][lib])})
                )

    res["summary"] = summarise(res, a)
    res["total_s"] = time.perf_counter() - t_start
    return res


def _med(runs: dict[str, list[dict]], key: str, field: str) -> float:
    return median([r[field] for r in runs.get(key, []) if r.get(field) is not None])


def _ratio(num: float, den: float) -> float:
    return num / den if den and num == num and den == den else float("nan")


def stage_cpu(run: dict[str, Any]) -> dict[str, float]:
    """CPU ms per 1,000 cells of each stage of annshard's loader, from one load job's ``threads_cpu``."""
    t = run["threads_cpu"]
    py = dict(t["python_threads_s"])
    per_1k = 1e6 / run["cells"]
    stages = {
        # the read thread and the next epoch's read-ahead (one thread each)
        "A_read": (py.pop("annshard-read", 0.0) + py.pop("annshard-read-next", 0.0)) * per_1k,
        "A_decode": t["native_s"] * per_1k,
        # the parts of a block's raw reads (_store/_raw.py), on read_threads threads: os.preadv of uncompressed
        # arrays, counts' widening, the gene index check, the first touch of fresh block buffers; the read thread
        # only plans them (numpy, _store/_raw_plan.py) and waits. With read_threads=1 (the default on 2 cores)
        # the parts run in the read thread itself and count there
        "A_raw": sum(py.pop(n) for n in [n for n in py if n.startswith("annshard-raw")]) * per_1k,
        # stage B's thread and its helpers (annshard-gather_<i>, gather_threads(read_threads) - 1 of them)
        "B_gather": sum(py.pop(n) for n in [n for n in py if n.startswith("annshard-gather")]) * per_1k,
        "consumer": py.pop("MainThread", 0.0) * per_1k,
    }
    stages["A"] = stages["A_read"] + stages["A_decode"] + stages["A_raw"]
    stages["other"] = sum(py.values()) * per_1k  # other Python threads: zarr's I/O loop (opening), asyncio pools
    stages["all"] = t["cpu_s"] * per_1k
    return stages


def ceilings(st: dict[str, float], cores: int) -> dict[str, float]:
    """The cells/s each stage would cap at on ``cores`` cores (see :data:`CEILING_ASSUMPTIONS`)."""

    def cap(us_per_cell: float, n: float) -> float:
        return n * 1e6 / us_per_cell if us_per_cell > 0 else float("inf")

    from annshard._load._assemble import gather_threads

    decode_cores = max(1, cores - 1)
    c = {
        "A_read": cap(st["A_read"], 1),
        "A_decode": cap(st["A_decode"], decode_cores),
        "A_raw": cap(st.get("A_raw", 0.0), decode_cores),
        "A": cap(st["A_read"] + (st["A_decode"] + st.get("A_raw", 0.0)) / decode_cores, 1),
        "B_gather": cap(st["B_gather"], gather_threads(decode_cores)),
        "consumer": cap(st["consumer"], 1),
        "other": cap(st["other"], 1),
        "all": cap(st["all"], cores),
    }
    c["pipeline"] = min(c["A"], c["B_gather"], c["consumer"], c["all"])
    return c


CEILING_ASSUMPTIONS = (
    "ceilings assume: the read thread and the consumer are one thread each (<= 1 core each); stage B's gather "
    "runs on gather_threads(read_threads) threads (2 per 5 decode threads); "
    "zarrs' decode and the raw reads (annshard-raw threads: reads, widening, gene index check, first touch of "
    "fresh block buffers) scale with read_threads = N-1 cores; within stage A "
    "the read thread waits while its block decodes, so A caps at 1 / (read + (decode + raw) / (N-1)); with "
    "read_threads=1 (the default on 2 cores) the raw reads run in the read thread and count as its own; the process as a whole at N cores / all CPU per cell; "
    "the pipeline at the lowest of these. Figures: cells/s."
)


def summarise(res: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    """Medians per kind and figure, ratios annshard / annbatch, per-stage CPU and its projection."""
    runs = res["runs"]
    s: dict[str, Any] = {}
    for kind in a.kinds:
        sk: dict[str, Any] = {}
        for lib in LIBS:
            d: dict[str, Any] = {}
            d["convert_cells_per_s"] = _med(runs, f"{kind}/convert/{lib}", "cells_per_s")
            d["convert_peak_rss_mb"] = _med(runs, f"{kind}/convert/{lib}", "peak_rss_mb")
            d["convert_cpu_s"] = _med(runs, f"{kind}/convert/{lib}", "cpu_s")
            d["decode_cells_per_s"] = _med(runs, f"{kind}/decode/{lib}", "cells_per_s")
            d["decode_gb_per_s"] = _med(runs, f"{kind}/decode/{lib}", "decoded_gb_per_s")
            d["bytes_on_disk"] = res.get("collections", {}).get(kind, {}).get(lib, {}).get("bytes_on_disk")
            for chunk, preload in a.settings:
                k, tag = f"{kind}/load/{lib}/{chunk},{preload}", f"load_{chunk}_{preload}"
                for field in (
                    "cells_per_s",
                    "first_batch_s",
                    "first_epoch_s",
                    "later_epoch_s",
                    "cpu_ms_per_1k_cells",
                    "peak_rss_mb",
                ):
                    d[f"{tag}_{field}"] = _med(runs, k, field)
                d[f"{tag}_first_over_later_epoch"] = median(
                    [r["first_epoch_s"] / r["later_epoch_s"] for r in runs.get(k, []) if r.get("later_epoch_s")]
                )
                d[f"{tag}_rss_over_base_mb"] = median([r["peak_rss_mb"] - r["rss_base_mb"] for r in runs.get(k, [])])
            sk[lib] = d
        sk["ratio"] = {
            k: sk["annshard"][k] / sk["annbatch"][k]
            for k in sk["annshard"]
            if isinstance(sk["annshard"][k], int | float) and sk["annbatch"].get(k)
        }
        limit = sk["annshard"]["decode_cells_per_s"]
        sk["share_of_decode_limit"] = {
            f"{lib}/{c},{p}": _ratio(sk[lib][f"load_{c}_{p}_cells_per_s"], limit) for lib in LIBS for c, p in a.settings
        }
        sk["stages"] = {}
        for chunk, preload in a.settings:
            per_run = [stage_cpu(r) for r in runs.get(f"{kind}/load/annshard/{chunk},{preload}", [])]
            if not per_run:
                continue
            st = {name: median([r[name] for r in per_run]) for name in per_run[0]}
            sk["stages"][f"{chunk},{preload}"] = {
                "cpu_ms_per_1k_cells": st,
                "ceiling_cells_per_s": {str(n): ceilings(st, n) for n in CORES},
            }
        s[kind] = sk
    s["assumptions"] = CEILING_ASSUMPTIONS
    # end to end, on the first kind
    k0, (chunk, preload) = a.kinds[0], a.settings[0]
    for lib in LIBS:
        s.setdefault("train", {})[f"{lib}_epoch_s"] = _med(runs, f"train/{lib}", "epoch_s")
    s["train"]["kind"] = k0
    s["train"]["compute_epoch_s"] = _med(runs, "train/compute", "epoch_s")
    s["train"]["compute_step_ms"] = _med(runs, "train/compute", "step_ms")
    load_rate = s[k0]["annshard"][f"load_{chunk}_{preload}_cells_per_s"]
    t = s["train"]
    t["annshard_pure_load_epoch_s"] = a.cells / load_rate if load_rate == load_rate else float("nan")
    t["e2e_bound_s"] = max(t["compute_epoch_s"], t["annshard_pure_load_epoch_s"])
    t["annshard_e2e_over_bound"] = _ratio(t["annshard_epoch_s"], t["e2e_bound_s"])
    return s


def _x(v: float) -> str:
    return f"{v:.2f}x" if v == v else "-"


def _pair(a: float, b: float, fmt: str = "{:.2f}") -> str:
    return " / ".join("-" if v != v or v is None else fmt.format(v) for v in (a, b))


_KIND_LABEL = {"counts": "raw counts", "lognorm": "log1p(CP10k) float32"}


def table(res: dict[str, Any], a: argparse.Namespace) -> str:
    """The issue's table (loading), then loading details, conversion, per-stage CPU, end to end and decode."""
    s = res["summary"]
    out: list[str] = []
    rows: list[list[Any]] = []
    for kind in a.kinds:
        sk = s[kind]
        for c, p in a.settings:
            t = f"load_{c}_{p}"
            ash, ab = sk["annshard"], sk["annbatch"]
            rows.append(
                [
                    _KIND_LABEL[kind],
                    f"({c}, {p})",
                    ash[f"{t}_cells_per_s"],
                    ab[f"{t}_cells_per_s"],
                    _x(_ratio(ash[f"{t}_cells_per_s"], ab[f"{t}_cells_per_s"])),
                    _pair(ash[f"{t}_cpu_ms_per_1k_cells"], ab[f"{t}_cpu_ms_per_1k_cells"], "{:.1f}"),
                ]
            )
    head = ["data", "setting (chunk, preload)", "annshard cells/s", "annbatch cells/s", "ratio"]
    out.append(
        f"loading, {a.epochs} epochs from constructing the loader, batch {a.batch_size}, scipy CSR + cell_type "
        f"(median of {a.repeats}):"
    )
    out.append(fmt_table(rows, [*head, "CPU ms per 1k cells annshard / annbatch"]))

    rows = []
    for kind in a.kinds:
        for c, p in a.settings:
            t, ash, ab = f"load_{c}_{p}", s[kind]["annshard"], s[kind]["annbatch"]
            rows.append(
                [
                    _KIND_LABEL[kind],
                    f"({c}, {p})",
                    _pair(ash[f"{t}_first_batch_s"], ab[f"{t}_first_batch_s"]),
                    _pair(ash[f"{t}_first_epoch_s"], ab[f"{t}_first_epoch_s"]),
                    _pair(ash[f"{t}_later_epoch_s"], ab[f"{t}_later_epoch_s"]),
                    _pair(ash[f"{t}_first_over_later_epoch"], ab[f"{t}_first_over_later_epoch"]),
                    _pair(ash[f"{t}_peak_rss_mb"], ab[f"{t}_peak_rss_mb"], "{:,.0f}"),
                    _x(_ratio(ash[f"{t}_peak_rss_mb"], ab[f"{t}_peak_rss_mb"])),
                ]
            )
    out += ["", "loading details, annshard / annbatch:"]
    out.append(
        fmt_table(
            rows,
            [
                "data",
                "setting",
                "first batch s",
                "first epoch s",
                "later epoch s",
                "first / later epoch",
                "peak RSS MB",
                "RSS ratio",
            ],
        )
    )

    rows = []
    for kind in a.kinds:
        ash, ab = s[kind]["annshard"], s[kind]["annbatch"]
        rows.append(
            [
                _KIND_LABEL[kind],
                ash["convert_cells_per_s"],
                ab["convert_cells_per_s"],
                _x(_ratio(ash["convert_cells_per_s"], ab["convert_cells_per_s"])),
                _pair(ash["convert_cpu_s"], ab["convert_cpu_s"], "{:,.1f}"),
                _pair(ash["convert_peak_rss_mb"], ab["convert_peak_rss_mb"], "{:,.0f}"),
                _pair(ash["bytes_on_disk"] / 1e6, ab["bytes_on_disk"] / 1e6, "{:,.0f}"),
            ]
        )
    out += ["", "conversion:"]
    out.append(
        fmt_table(
            rows,
            [
                "data",
                "annshard cells/s",
                "annbatch cells/s",
                "ratio",
                "CPU s annshard / annbatch",
                "peak RSS MB annshard / annbatch",
                "collection MB annshard / annbatch",
            ],
        )
    )

    rows = []
    labels = {
        "A_read": ("A: read thread", "1 thread"),
        "A_decode": ("A: zarrs decode (native threads)", "read_threads"),
        "A_raw": ("A: raw reads (annshard-raw threads)", "read_threads"),
        "A": ("A: read + decode", "see below"),
        "B_gather": ("B: gather threads", "gather_threads"),
        "consumer": ("consumer (main thread)", "1 thread"),
        "other": ("other Python threads (zarr's I/O loop, ...)", "1 thread"),
        "all": ("whole process", "N cores"),
    }
    for kind in a.kinds:
        for c, p in a.settings:
            stg = s[kind]["stages"].get(f"{c},{p}")
            if stg is None:
                continue
            ceil = stg["ceiling_cells_per_s"]
            for name, (label, scales) in labels.items():
                rows.append(
                    [
                        _KIND_LABEL[kind],
                        f"({c}, {p})",
                        label,
                        stg["cpu_ms_per_1k_cells"][name],
                        scales,
                        *(ceil[str(n)][name] for n in CORES),
                    ]
                )
            rows.append(
                [
                    _KIND_LABEL[kind],
                    f"({c}, {p})",
                    "pipeline (lowest)",
                    "",
                    "",
                    *(ceil[str(n)]["pipeline"] for n in CORES),
                ]
            )
    out += ["", "annshard per-stage CPU and the cells/s it caps at:"]
    out.append(
        fmt_table(
            rows, ["data", "setting", "stage", "CPU ms per 1k cells", "scales with", *(f"{n} cores" for n in CORES)]
        )
    )
    out.append(s["assumptions"])

    t = s["train"]
    if t["compute_epoch_s"] == t["compute_epoch_s"]:
        out.append("")
        out.append(
            f"end to end ({_KIND_LABEL[t['kind']]}): annbatch {t['annbatch_epoch_s']:.2f} s/epoch, annshard "
            f"{t['annshard_epoch_s']:.2f}; compute alone {t['compute_epoch_s']:.2f} s/epoch "
            f"({t['compute_step_ms']:.1f} ms/step), annshard pure loading {t['annshard_pure_load_epoch_s']:.2f} s/epoch, "
            f"bound max() = {t['e2e_bound_s']:.2f} s; annshard epoch / bound = {t['annshard_e2e_over_bound']:.2f}"
        )
    for kind in a.kinds:
        sk = s[kind]
        if sk["annshard"]["decode_cells_per_s"] != sk["annshard"]["decode_cells_per_s"]:
            continue
        shares = ", ".join(f"{k}: {v:.0%}" for k, v in sk["share_of_decode_limit"].items())
        out.append(
            f"decode limit, {_KIND_LABEL[kind]} (all X chunks via zarrs): annshard layout "
            f"{sk['annshard']['decode_cells_per_s']:,.0f} cells/s, annbatch layout "
            f"{sk['annbatch']['decode_cells_per_s']:,.0f}; loader share of annshard's: {shares}"
        )
    return "\n".join(out)


def plot(res: dict[str, Any], a: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["summary"]
    labels = ["conversion"] + [f"load\n({c},{p})" for c, p in a.settings]
    keys = ["convert_cells_per_s"] + [f"load_{c}_{p}_cells_per_s" for c, p in a.settings]
    fig, axes = plt.subplots(1, len(a.kinds), figsize=(6 * len(a.kinds), 4.5), squeeze=False)
    width = 0.38
    for ax, kind in zip(axes[0], a.kinds, strict=True):
        for j, lib in enumerate(LIBS):
            vals = [s[kind][lib][k] for k in keys]
            xs = [i + (j - 0.5) * width for i in range(len(vals))]
            bars = ax.bar(xs, vals, width, label=lib)
            ax.bar_label(bars, labels=[f"{v / 1000:.0f}k" if v == v else "" for v in vals], fontsize=8)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel("cells / s")
        ax.set_title(_KIND_LABEL[kind], fontsize=10)
        ax.legend()
    d = res["data"]
    fig.suptitle(
        f"{d['cells']:,} cells x {d['genes']:,} genes, {d['nnz_per_cell_mean']:.0f} nnz/cell, batch {a.batch_size}, "
        f"{a.epochs} epochs from construction, {res['machine']['cpus']} CPUs (median of {a.repeats})",
        fontsize=10,
    )
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
