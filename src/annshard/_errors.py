"""The package's exceptions.

Every error subclasses a built-in so callers who catch ``ValueError`` or
``FileNotFoundError`` keep working, and every message names the file, the
element and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AnnshardError",
    "CollectionExistsError",
    "CollectionFormatError",
    "CollectionLockedError",
    "CorruptShardError",
    "OverwriteRefusedError",
    "SourceError",
    "VarJoinError",
]


class AnnshardError(Exception):
    """Base class of all annshard errors."""


class SourceError(AnnshardError, ValueError):
    """An input source cannot be used: missing, not AnnData, corrupt, empty or inconsistent."""


class VarJoinError(SourceError):
    """The sources' gene spaces cannot be joined (duplicated names, empty intersection)."""


class CollectionFormatError(AnnshardError, ValueError):
    """A path is not an annshard (or annbatch) collection, or its manifest is invalid."""


class CollectionExistsError(AnnshardError, FileExistsError):
    """The output path exists and ``overwrite=True`` was not given."""


class CorruptShardError(AnnshardError, OSError):
    """A shard of a collection is missing on disk or cannot be decoded."""


class OverwriteRefusedError(CollectionExistsError):
    """``overwrite=True`` was given, but the path is not a collection (or holds a source): nothing was deleted."""


class CollectionLockedError(AnnshardError, TimeoutError):
    """Another writer holds the collection's lock (or the file system cannot lock)."""
