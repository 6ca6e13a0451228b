"""``annshard convert SOURCES... -o PATH``: write sources into one shuffled, sharded collection."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

__all__ = ["add_parser", "run"]


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help=".h5ad files or AnnData zarr directories")
    from . import add_storage_option

    parser.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="the collection directory (or URL, s3://...) to create"
    )
    add_storage_option(parser)
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
    engine = parser.add_mutually_exclusive_group()
    engine.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the passes on this dask.distributed scheduler (tcp://host:port); needs annshard[dask], "
        "sources and output on a file system every worker reaches; same collection as without it",
    )
    engine.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run the passes on a local dask cluster of N worker processes (loopback only; needs annshard[dask])",
    )


def run(args: argparse.Namespace) -> int:
    """Write the collection and print what was written."""
    from annshard._write import write_collection

    obs_columns = None if args.obs_columns is None else [c.strip() for c in args.obs_columns.split(",") if c.strip()]
    layers, obsm = (_names(v) for v in (args.layers, args.obsm))
    t0 = time.perf_counter()
    with _engine(args.scheduler, args.workers) as client:
        coll = _write(write_collection, args, obs_columns, layers, obsm, client)
    dt = time.perf_counter() - t0
    print(
        f"wrote {coll.path}: {coll.n_obs} cells x {coll.n_vars} genes in {len(coll.shards)} shards "
        f"from {len(coll.sources)} sources (seed {coll.seed}, join {coll.join}) in {dt:.1f}s "
        f"({coll.n_obs / max(dt, 1e-9):,.0f} cells/s)"
    )
    return 0


@contextlib.contextmanager
def _engine(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """Yield a dask client for ``--scheduler`` / ``--workers`` (closed afterwards), or ``None``."""
    if scheduler is None and workers is None:
        yield None
        return
    try:
        import distributed
    except ImportError as e:
        msg = "annshard convert: --scheduler/--workers need dask.distributed: pip install 'annshard[dask]'"
        raise SystemExit(msg) from e
    if workers is not None:
        if workers < 1:
            raise SystemExit(f"annshard convert: --workers must be at least 1, not {workers}")
        from annshard._write._dask import local_client

        with local_client(workers) as client:
            yield client
        return
    try:
        client = distributed.Client(scheduler, timeout=30)
    except (OSError, TimeoutError, ValueError) as e:
        raise SystemExit(f"annshard convert: cannot reach the dask scheduler at {scheduler}: {e}") from e
    with client:
        yield client


def _write(
    write_collection: Any, args: argparse.Namespace, obs_columns: Any, layers: Any, obsm: Any, client: Any
) -> Any:
    from . import storage_options

    return write_collection(
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
        show_progress=not args.quiet and client is None,
        client=client,
        **({"storage_options": opts} if (opts := storage_options(args)) else {}),
    )


def _names(value: str | None) -> list[str] | str | None:
    """``"a,b"`` -> ``["a", "b"]``; ``"all"`` and ``None`` pass through."""
    if value is None or value.strip() == "all":
        return None if value is None else "all"
    return [v.strip() for v in value.split(",") if v.strip()]
