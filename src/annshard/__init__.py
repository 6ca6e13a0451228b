"""annshard: globally shuffled, sharded AnnData collections and a fast minibatch loader.

The public API is small:

- :func:`write_collection` turns ``.h5ad`` / AnnData-zarr files (or in-memory
  AnnData) into one shuffled, sharded zarr collection, out of core;
- :func:`open_collection` opens one as a :class:`Collection`;
- :class:`Loader` yields minibatches from one or more collections;
- :mod:`annshard.samplers` holds the sampling strategies;
- :mod:`annshard.lamin` registers collections in lamindb (needs the ``lamin`` extra).

``import annshard`` never imports torch, cupy or lamindb.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from ._collection import Collection, open_collection
from ._errors import (
    AnnshardError,
    CollectionExistsError,
    CollectionFormatError,
    CollectionLockedError,
    CorruptShardError,
    OverwriteRefusedError,
    SourceError,
    VarJoinError,
)

if TYPE_CHECKING:
    from ._load import Loader
    from ._write import write_collection

try:
    __version__ = version("annshard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AnnshardError",
    "Collection",
    "CollectionExistsError",
    "CollectionFormatError",
    "CollectionLockedError",
    "CorruptShardError",
    "Loader",
    "OverwriteRefusedError",
    "SourceError",
    "VarJoinError",
    "__version__",
    "open_collection",
    "samplers",
    "write_collection",
]


def __getattr__(name: str) -> Any:
    # resolved lazily so that importing the package stays cheap
    if name == "Loader":
        from ._load import Loader

        return Loader
    if name == "write_collection":
        from ._write import write_collection

        return write_collection
    if name in {"samplers", "lamin", "testing"}:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
