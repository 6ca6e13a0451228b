"""``annshard info TARGET``: describe a collection given by its path, or by its lamindb key."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from annshard._store._collection import Collection

__all__ = ["add_parser", "describe", "run"]

_MAX_CATEGORIES_SHOWN = 8


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    from . import add_storage_option

    parser.add_argument(
        "target", help="a collection directory or URL (s3://...), or the key of a collection registered in lamindb"
    )
    add_storage_option(parser)


def describe(coll: Collection) -> str:
    """Summarise a collection for humans."""
    m = coll.manifest
    st = m.storage
    lines = [
        f"{coll.path}  ({m.format} v{m.format_version}, {coll.origin}{', ' + m.created_by if m.created_by else ''})",
        f"  n_obs      {m.n_obs}",
        f"  n_vars     {m.n_vars}",
        f"  shards     {len(m.shards)} (rows {min(s.n_obs for s in m.shards)}-{max(s.n_obs for s in m.shards)})"
        if m.shards
        else "  shards     0",
        f"  seed       {m.seed}",
        f"  join       {m.join}",
        f"  layer      {m.layer or 'X'}",
        f"  storage    {st.x_format}, {st.data_dtype} values"
        + (f" (whole numbers, stored as {st.counts_dtype})" if st.counts_dtype else "")
        + (" (uncompressed)" if st.counts_dtype and st.counts_codec == "none" else "")
        + (f", {st.indices_dtype} indices" if st.x_format == "csr" else "")
        + (" (uncompressed)" if st.x_format == "csr" and st.indices_codec == "none" else "")
        + f", blosc {st.codec} clevel {st.clevel} {st.shuffle}",
    ]
    for mat in m.matrices:
        ms = mat.storage
        lines.append(
            f"  {mat.group:<10} {mat.name}: {ms.x_format}, {mat.n_cols} columns, {ms.data_dtype} values"
            + (f" (whole numbers, stored as {ms.counts_dtype})" if ms.counts_dtype else "")
        )
    if m.appends:
        lines.append(f"  appends    {len(m.appends)}")
    lines.append(f"  sources    {len(m.sources)}")
    for s in m.sources:
        where = s.path or s.uid or "(in memory)"
        gen = f", append {s.generation}" if s.generation else ""
        lines.append(f"    {s.name}: {s.n_obs} rows, {s.kind}{gen}  {where}")
    lines.append(f"  obs columns {len(m.obs_columns)}")
    for c in m.obs_columns:
        if c.kind == "categorical":
            cats = list(c.categories or ())
            shown = ", ".join(map(str, cats[:_MAX_CATEGORIES_SHOWN]))
            more = f", ... (+{len(cats) - _MAX_CATEGORIES_SHOWN})" if len(cats) > _MAX_CATEGORIES_SHOWN else ""
            lines.append(f"    {c.name}: categorical, {len(cats)} categories [{shown}{more}]")
        else:
            lines.append(f"    {c.name}: {c.kind} ({c.dtype})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the summary of a collection on disk, or ask lamindb when the target is not a path."""
    from annshard._store._location import is_url

    from . import storage_options

    target = args.target
    if is_url(target) or Path(target).exists():
        from annshard import open_collection

        print(describe(open_collection(target, storage_options=storage_options(args))))
        return 0
    try:
        from annshard.lamin._cli import info_key
    except ImportError as e:
        print(
            f"annshard info: error: {target}: no such path, and lamindb keys cannot be looked up ({e}); "
            "give the path of a collection, or install the lamin extra (pip install 'annshard[lamin]')",
            file=sys.stderr,
        )
        return 2
    return int(info_key(target) or 0)
