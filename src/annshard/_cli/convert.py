"""``annshard convert SOURCES... -o PATH``: write sources into one shuffled, sharded collection."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "run"]


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help=".h5ad files or AnnData zarr directories")
    parser.add_argument("-o", "--output", required=True, metavar="PATH", help="the collection directory to create")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default: 0)")
    parser.add_argument(
        "--join", choices=("inner", "outer"), default="inner", help="keep genes in all sources (inner) or any (outer)"
    )
    parser.add_argument(
        "--obs-columns",
        default=None,
        metavar="COLS",
        help="comma-separated obs columns to keep (default: all; source and source_row are always added)",
    )
    parser.add_argument("--layer", default=None, help="take this layer instead of X")
    parser.add_argument(
        "--layers",
        default=None,
        metavar="NAMES",
        help="comma-separated layers to keep beside X in every shard, or 'all' (those every source has)",
    )
    parser.add_argument(
        "--obsm",
        default=None,
        metavar="NAMES",
        help="comma-separated obsm arrays (embeddings) to keep in every shard, or 'all'",
    )
    parser.add_argument(
        "--memory-budget", default="1GB", metavar="SIZE", help="peak working memory, e.g. 512MB, 4GiB (default: 1GB)"
    )
    parser.add_argument(
        "--n-obs-per-shard", type=int, default=None, metavar="N", help="rows per shard (default: from the budget)"
    )
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument("--dense", dest="dense", action="store_true", default=None, help="store X dense")
    layout.add_argument("--sparse", dest="dense", action="store_false", help="store X as CSR")
    parser.add_argument(
        "--obs-conflicts",
        choices=("raise", "string"),
        default="raise",
        help="an obs column with numbers in one source and strings in another: refuse, or store as strings",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing collection at PATH (only a collection or an empty directory; never a source)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Write the collection and print what was written."""
    from annshard._write import write_collection

    obs_columns = None if args.obs_columns is None else [c.strip() for c in args.obs_columns.split(",") if c.strip()]
    layers, obsm = (_names(v) for v in (args.layers, args.obsm))
    t0 = time.perf_counter()
    coll = write_collection(
        args.sources,
        args.output,
        seed=args.seed,
        join=args.join,
        obs_columns=obs_columns,
        layer=args.layer,
        layers=layers,
        obsm=obsm,
        memory_budget=args.memory_budget,
        n_obs_per_shard=args.n_obs_per_shard,
        dense=args.dense,
        obs_conflicts=args.obs_conflicts,
        overwrite=args.overwrite,
        show_progress=not args.quiet,
    )
    dt = time.perf_counter() - t0
    print(
        f"wrote {coll.path}: {coll.n_obs} cells x {coll.n_vars} genes in {len(coll.shards)} shards "
        f"from {len(coll.sources)} sources (seed {coll.seed}, join {coll.join}) in {dt:.1f}s "
        f"({coll.n_obs / max(dt, 1e-9):,.0f} cells/s)"
    )
    return 0


def _names(value: str | None) -> list[str] | str | None:
    """``"a,b"`` -> ``["a", "b"]``; ``"all"`` and ``None`` pass through."""
    if value is None or value.strip() == "all":
        return None if value is None else "all"
    return [v.strip() for v in value.split(",") if v.strip()]
