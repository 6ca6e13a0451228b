"""annshard: globally shuffled, sharded AnnData collections and a fast minibatch loader.

The public API is small:

- :func:`write_collection` turns ``.h5ad`` / AnnData-zarr files (or in-memory
  AnnData) into one shuffled, sharded zarr collection, out of core;
- :func:`open_collection` opens one as a :class:`Collection` (read-only);
- :func:`append_collection` adds sources to one as new shards;
- :class:`Loader` yields minibatches (:class:`Batch`) from one or more collections;
- the types a user receives: the manifest (:class:`Manifest`, :class:`StorageSpec`,
  :class:`ShardInfo`, :class:`SourceInfo`, :class:`ObsColumn`, :class:`MatrixSpec`),
  a process's place among ranks and workers (:class:`World`) and an epoch's plan
  (:class:`EpochStream`);
- :mod:`annshard.samplers` holds the sampling strategies;
- :mod:`annshard.testing` holds synthetic data generators and conformance checks;
- :mod:`annshard.lamin` registers collections in lamindb (needs the ``lamin`` extra).

``import annshard`` never imports torch, cupy or lamindb.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from ._store._collection import Collection, open_collection
from ._store._manifest import Manifest, MatrixSpec, ObsColumn, ShardInfo, SourceInfo, StorageSpec
from ._version import __version__

if TYPE_CHECKING:
    from ._load._assemble import EpochStream
    from ._load._batch import Batch
    from ._load._loader import Loader
    from ._load._world import World
    from ._write import append_collection, write_collection

__all__ = [
    "AnnshardError",
    "Batch",
    "Collection",
    "CollectionExistsError",
    "CollectionFormatError",
    "CollectionLockedError",
    "CorruptShardError",
    "EpochStream",
    "Loader",
    "Manifest",
    "MatrixSpec",
    "ObsColumn",
    "OverwriteRefusedError",
    "ShardInfo",
    "SourceError",
    "SourceInfo",
    "StorageSpec",
    "VarJoinError",
    "World",
    "__version__",
    "append_collection",
    "open_collection",
    "samplers",
    "write_collection",
]


def __getattr__(name: str) -> Any:
    # resolved on first use (the loader's and writer's modules), so that importing the package stays cheap
    if name == "Batch":
        from ._load._batch import Batch

        return Batch
    if name == "EpochStream":
        from ._load._assemble import EpochStream

        return EpochStream
    if name == "Loader":
        from ._load import Loader

        return Loader
    if name == "World":
        from ._load._world import World

        return World
    if name == "append_collection":
        from ._write import append_collection

        return append_collection
    if name == "write_collection":
        from ._write import write_collection

        return write_collection
    if name in {"samplers", "lamin", "testing"}:
        return importlib.import_module(f"{__name__}.{name}")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
