"""The on-disk collection format: the manifest and its parts.

A collection is a zarr v3 group. Its attribute ``"annshard"`` holds the
manifest below, written last and atomically, so a group without it is not a
collection. Each shard is a child group named ``shard-NNNNN.zarr`` and is a
complete AnnData zarr store.

Everything written into metadata is a small frozen dataclass with
``to_dict`` / ``from_dict`` (the zarr-python habit), and the manifest is read
by dispatching on its ``format`` and ``format_version``: a reader exists for
every version ever written. How a matrix is laid out (:class:`StorageSpec`, :class:`MatrixSpec`) lives in
:mod:`annshard._store._spec` and is re-exported here; which reader a directory on disk goes to (this
manifest's or annbatch's) is decided by :mod:`annshard._store._read`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from annshard._errors import CollectionFormatError

from ._spec import MatrixSpec, StorageSpec, from_dict_known
from ._validate import validate_manifest_v1

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_KEY",
    "Manifest",
    "MatrixSpec",
    "ObsColumn",
    "ShardInfo",
    "SourceInfo",
    "StorageSpec",
    "shard_name",
]

FORMAT_NAME = "annshard-collection"
FORMAT_VERSION = 1
MANIFEST_KEY = "annshard"
"""The group attribute that holds the manifest."""


def shard_name(i: int) -> str:
    """Return the child group name of shard ``i``."""
    return f"shard-{i:05d}.zarr"


@dataclass(frozen=True)
class ShardInfo:
    """One shard of a collection.

    Attributes
    ----------
    name
        Child group name (``shard-NNNNN.zarr``).
    n_obs
        Number of rows.
    nnz
        Number of stored values (CSR) or ``n_obs * n_vars`` (dense).
    generation
        0 for shards of the first write, ``k`` for shards added by the ``k``-th append.
    """

    name: str
    n_obs: int
    nnz: int = 0
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardInfo:
        """Inverse of :meth:`to_dict`."""
        return from_dict_known(cls, d)


@dataclass(frozen=True)
class SourceInfo:
    """One input of a collection, so any row can be traced back to it.

    Attributes
    ----------
    name
        The label used in the shards' ``obs["source"]`` column.
    n_obs
        Rows taken from it.
    path
        Its path when it was a file (``None`` for in-memory AnnData).
    uid
        Its lamindb artifact uid when it was one.
    hash
        A content hash (hex), so a changed file is noticed.
    kind
        ``"h5ad"``, ``"zarr"``, ``"anndata"`` or ``"lamindb"``.
    generation
        Which write (0) or append (k) brought it in.
    """

    name: str
    n_obs: int
    path: str | None = None
    uid: str | None = None
    hash: str | None = None
    kind: str = "h5ad"
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceInfo:
        """Inverse of :meth:`to_dict`."""
        return from_dict_known(cls, d)


@dataclass(frozen=True)
class ObsColumn:
    """An obs column as stored in every shard.

    Attributes
    ----------
    name
        Column name.
    kind
        ``"categorical"``, ``"numeric"``, ``"bool"`` or ``"string"``.
    dtype
        numpy dtype of values (numeric/bool) or of codes (categorical).
    categories
        For categorical columns, the single category list shared by all shards,
        so that a code means the same label in every shard and every batch.
    ordered
        Whether the categorical is ordered.
    """

    name: str
    kind: Literal["categorical", "numeric", "bool", "string"]
    dtype: str
    categories: tuple[Any, ...] | None = None
    ordered: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        if self.categories is not None:
            d["categories"] = list(self.categories)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObsColumn:
        """Inverse of :meth:`to_dict`."""
        obj = from_dict_known(cls, d)
        if obj.categories is not None:
            obj = replace(obj, categories=tuple(obj.categories))
        return obj


@dataclass(frozen=True)
class Manifest:
    """The self-description of a collection, stored in the root group's attributes.

    Attributes
    ----------
    n_obs
        Total rows over all shards.
    n_vars
        Genes (columns), identical in every shard.
    seed
        The shuffle seed of the first write.
    join
        ``"inner"`` or ``"outer"``.
    storage
        How ``X`` is laid out.
    shards
        The shards in order; a row's global index is its shard's offset plus its row in the shard.
    sources
        Every input, in the order they were given.
    obs_columns
        The stored obs columns (always including ``source`` and ``source_row``).
    layer
        The source layer that became ``X`` (``None`` for ``X``).
    appends
        One entry per append: its seed and the number of shards and rows it added.
    matrices
        Layers and obsm arrays stored beside ``X`` in every shard (none in collections
        written before this field existed).
    created_by
        annshard version that wrote the first generation.
    format
        Always ``"annshard-collection"``.
    format_version
        The format version.
    """

    n_obs: int
    n_vars: int
    seed: int
    join: Literal["inner", "outer"]
    storage: StorageSpec
    shards: tuple[ShardInfo, ...]
    sources: tuple[SourceInfo, ...]
    obs_columns: tuple[ObsColumn, ...]
    layer: str | None = None
    appends: tuple[dict[str, Any], ...] = ()
    matrices: tuple[MatrixSpec, ...] = ()
    created_by: str = ""
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = sum(s.n_obs for s in self.shards)
        if total != self.n_obs:
            msg = f"manifest is inconsistent: shards hold {total} rows but n_obs is {self.n_obs}"
            raise CollectionFormatError(msg)

    @property
    def shard_offsets(self) -> list[int]:
        """Global index of the first row of each shard, plus ``n_obs`` at the end."""
        out = [0]
        for s in self.shards:
            out.append(out[-1] + s.n_obs)
        return out

    def obs_column(self, name: str) -> ObsColumn:
        """Return the stored obs column called ``name``."""
        for c in self.obs_columns:
            if c.name == name:
                return c
        available = ", ".join(c.name for c in self.obs_columns)
        msg = f"obs column {name!r} is not in the collection; available: {available}"
        raise KeyError(msg)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "format": self.format,
            "format_version": self.format_version,
            "n_obs": self.n_obs,
            "n_vars": self.n_vars,
            "seed": self.seed,
            "join": self.join,
            "layer": self.layer,
            "storage": self.storage.to_dict(),
            "shards": [s.to_dict() for s in self.shards],
            "sources": [s.to_dict() for s in self.sources],
            "obs_columns": [c.to_dict() for c in self.obs_columns],
            "appends": list(self.appends),
            "matrices": [m.to_dict() for m in self.matrices],
            "created_by": self.created_by,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "collection") -> Manifest:
        """Read a manifest, dispatching on its format name and version.

        Parameters
        ----------
        d
            The attribute value.
        where
            The collection's path, for error messages.

        Raises
        ------
        CollectionFormatError
            If the format or version is unknown, or the manifest fails its version's schema check
            (:func:`annshard._store._validate.validate_manifest_v1`): a field missing, of the wrong type, out of
            range, not allowed, or a shard name that is not plain or is listed twice.
        """
        if not isinstance(d, dict):
            msg = f"{where}: manifest is a {type(d).__name__}, not an object; the collection is damaged, rewrite it"
            raise CollectionFormatError(msg)
        fmt = d.get("format")
        if fmt != FORMAT_NAME:
            msg = f"{where}: manifest format is {str(fmt)[:80]!r}, expected {FORMAT_NAME!r}"
            raise CollectionFormatError(msg)
        version = d.get("format_version")
        reader = _READERS.get(version) if type(version) is int else None
        if reader is None:
            msg = (
                f"{where}: collection format version {str(version)[:40]} is not supported by this annshard "
                f"(it reads versions {sorted(_READERS)}); upgrade annshard"
            )
            raise CollectionFormatError(msg)
        validate, read = reader
        validate(d, where=where)  # the schema first: nothing below sees a malformed field
        try:
            return read(d)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, CollectionFormatError):
                raise
            msg = f"{where}: manifest is missing or has a malformed field ({e}); the collection is damaged"
            raise CollectionFormatError(msg) from e


def _read_v1(d: dict[str, Any]) -> Manifest:
    return Manifest(
        n_obs=int(d["n_obs"]),
        n_vars=int(d["n_vars"]),
        seed=int(d["seed"]),
        join=d["join"],
        layer=d.get("layer"),
        storage=StorageSpec.from_dict(d["storage"]),
        shards=tuple(ShardInfo.from_dict(s) for s in d["shards"]),
        sources=tuple(SourceInfo.from_dict(s) for s in d["sources"]),
        obs_columns=tuple(ObsColumn.from_dict(c) for c in d["obs_columns"]),
        appends=tuple(d.get("appends", ())),
        matrices=tuple(MatrixSpec.from_dict(m) for m in d.get("matrices", ())),
        created_by=d.get("created_by", ""),
        format=d["format"],
        format_version=int(d["format_version"]),
        extra=dict(d.get("extra", {})),
    )


_READERS = {1: (validate_manifest_v1, _read_v1)}
"""A (schema check, reader) pair for every format version ever written."""
