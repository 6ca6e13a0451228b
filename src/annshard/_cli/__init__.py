"""The ``annshard`` command line.

Each subcommand lives in its own module with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``, and is listed in
:data:`COMMANDS`. Modules are imported only when their command runs, so
``annshard --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["add_storage_option", "main", "storage_options"]

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "demo": ("demo", "run the whole mission on synthetic data: write, register, load"),
    "convert": ("convert", "write sources (.h5ad / AnnData zarr) into a shuffled, sharded collection"),
    "info": ("info", "describe a collection (a path, or a lamindb key)"),
    "bench": ("bench", "measure loader throughput and peak memory on a collection"),
    "register": ("register", "register a collection in the current lamindb instance"),
}


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        msg = f"{item!r}: expected KEY=VALUE, e.g. endpoint_url=http://127.0.0.1:9000"
        raise argparse.ArgumentTypeError(msg)
    return key.strip(), value


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--storage-option KEY=VALUE`` (repeatable): storage options of collections given as URLs."""
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="for a collection at a URL (s3://...): a storage option in fsspec spelling, e.g. "
        "endpoint_url=http://127.0.0.1:9000 (repeatable; credentials also from the AWS_* environment variables)",
    )


def storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--storage-option`` values as a dict (``None`` when none were given; a later key wins)."""
    return dict(getattr(args, "storage_option", None) or ()) or None


def _build_parser() -> argparse.ArgumentParser:
    from annshard import __version__

    parser = argparse.ArgumentParser(prog="annshard", description="Sharded AnnData collections and a fast loader.")
    parser.add_argument("--version", action="version", version=f"annshard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{module}":
                raise
            p.set_defaults(_missing=True)
            continue
        mod.add_parser(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``annshard`` command."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_missing", False):
        parser.error(f"command {args.command!r} is not available in this build")
    mod = importlib.import_module(f"{__name__}.{args._module}")
    from annshard._errors import AnnshardError

    try:
        return int(mod.run(args) or 0)
    except (AnnshardError, FileNotFoundError) as e:
        print(f"annshard {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
