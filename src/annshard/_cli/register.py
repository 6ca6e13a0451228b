"""``annshard register PATH --key KEY``: register a collection in the current lamindb instance."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "run"]


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("path", help="the collection (a directory written by annshard or annbatch)")
    parser.add_argument("--key", required=True, help="lamindb key, e.g. pbmc/train")
    parser.add_argument("--description", default=None, help="a description of the collection")
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="UID",
        help="uid of a lamindb artifact the collection was written from (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Register the collection and print its lamindb record."""
    from annshard.lamin import register

    record = register(args.path, key=args.key, description=args.description, sources=args.source or None)
    n = record.artifacts.count()
    print(f"registered {record.key!r} version {record.version} (uid {record.uid}): {n} shard artifacts")
    print(f"load it with: ln.Collection.get(key={record.key!r}).loader(batch_size=4096)")
    return 0
