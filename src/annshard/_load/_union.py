"""Several collections read as one: their shards one after the other, checked to fit together.

A :class:`~annshard.Loader` over several collections reads them as one
collection whose shards are the first collection's, then the second's, and so
on. A row's global index is its shard's offset (from each manifest's
:attr:`~annshard.Manifest.shard_offsets`, shifted by the rows of the
collections before) plus its row in the shard. The collections must agree on
their genes (``var``), and every requested layer and obsm array must be in
each of them, with one width; every shard must be on disk and its metadata
agree with its manifest. Everything here reads metadata only.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from annshard._errors import CorruptShardError
from annshard._store._collection import Collection, open_collection
from annshard._store._location import is_url
from annshard._store._validate import check_shard_metadata

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from annshard._store._cache import ShardCache

__all__ = ["CollectionUnion", "ShardRef"]

_REMOTE_CHECKS = 16
"""Shards of a remote collection whose metadata are checked at once when a loader opens it."""


def _with_cache(coll: Collection, cache: ShardCache) -> Collection:
    out = copy.copy(coll)
    out.cache = cache
    return out


@dataclass(frozen=True)
class ShardRef:
    """One shard among the loader's (possibly several) collections."""

    collection: Collection
    shard: int
    offset: int
    """Global index of the shard's first row (over all collections)."""

    @property
    def where(self) -> str:
        """Human description for error messages."""
        return f"collection {self.collection.path}, shard {self.collection.shards[self.shard].name}"


class CollectionUnion:
    """One or more collections with the same genes, read as one collection.

    Parameters
    ----------
    collection
        A :class:`~annshard.Collection`, a path or URL, or a list of them.
    storage_options
        Options for the URLs among them (see :func:`annshard.open_collection`).
    cache
        A local cache for the shard data of the remote collections among them (local ones read from disk).

    Attributes
    ----------
    collections
        The opened collections, in order.
    shards
        Every shard of every collection, in global order.
    n_obs
        Rows of each shard, in global order.
    n_vars
        Genes (the same in every collection).

    Raises
    ------
    ValueError
        If no collection is given, or two collections have different genes.
    CorruptShardError
        If a shard is missing on disk or its metadata disagrees with its manifest.
    """

    def __init__(
        self, collection: Any, storage_options: Mapping[str, Any] | None = None, cache: ShardCache | None = None
    ) -> None:
        items = list(collection) if isinstance(collection, list | tuple) else [collection]
        if not items:
            msg = "Loader needs at least one collection"
            raise ValueError(msg)
        self.collections: list[Collection] = [
            open_collection(c, storage_options=storage_options if is_url(c) else None) for c in items
        ]
        if cache is not None:  # the loader's own copies: a Collection the caller passed is not changed
            self.collections = [_with_cache(c, cache) if c.remote else c for c in self.collections]
        self._check_vars()
        self.shards = self._shard_refs()
        self.n_vars = self.collections[0].n_vars
        self.n_obs = tuple(ref.collection.shards[ref.shard].n_obs for ref in self.shards)

    def _check_vars(self) -> None:
        first = self.collections[0]
        for other in self.collections[1:]:
            if other.n_vars != first.n_vars or not other.var_names.equals(first.var_names):
                msg = (
                    f"collections {first.path} and {other.path} have different genes ({first.n_vars} vs "
                    f"{other.n_vars} vars or a different order); a Loader over several collections needs the same var"
                )
                raise ValueError(msg)

    def _shard_refs(self) -> list[ShardRef]:
        refs, base = [], 0
        for coll in self.collections:
            offsets = coll.manifest.shard_offsets

            def check(i: int, coll: Collection = coll, offsets: Any = offsets, base: int = base) -> ShardRef:
                info, offset = coll.shards[i], base + offsets[i]
                if not coll.shard_exists(i):
                    msg = f"collection {coll.path}: shard {info.name} (rows {offset}-{offset + info.n_obs - 1}) is missing {'from the bucket' if coll.remote else 'on disk'}; restore or rewrite the collection"
                    raise CorruptShardError(msg)
                check_shard_metadata(coll, i)  # the shard's own X agrees with the manifest (metadata reads)
                return ShardRef(collection=coll, shard=i, offset=offset)

            if coll.remote:  # a few small GETs per shard: concurrently, so opening costs a few round trips
                with ThreadPoolExecutor(_REMOTE_CHECKS, thread_name_prefix="annshard-open") as pool:
                    refs.extend(pool.map(check, range(len(coll.shards))))
            else:
                refs.extend(check(i) for i in range(len(coll.shards)))
            base += offsets[-1]
        return refs

    def check_layer(self, layer: str | None) -> None:
        """Check that ``layer`` (read instead of ``X``) is stored in the first shard.

        Raises
        ------
        KeyError
            If it is not, listing the layers that are.
        """
        if layer is None or not self.shards:
            return
        ref = self.shards[0]
        group = ref.collection.shard_group(ref.shard)
        layers = sorted(group["layers"].keys()) if "layers" in group else []
        if layer not in layers:
            msg = f"layer {layer!r} is not in collection {ref.collection.path} (shard {ref.collection.shards[ref.shard].name}); available layers: {layers or 'none'}"
            raise KeyError(msg)

    def check_matrices(self, elements: Sequence[str]) -> dict[str, int]:
        """Check that every collection stores ``elements`` (``"layers/<k>"``, ``"obsm/<k>"``); return their widths.

        Raises
        ------
        KeyError
            If a collection lacks one (the message lists what it has).
        CorruptShardError
            If a layer's width differs from ``X``'s.
        ValueError
            If an obsm array's width differs between collections.
        """
        widths: dict[str, int] = {}
        first: dict[str, Collection] = {}
        for coll in self.collections:
            if not coll.shards:
                continue
            group = coll.shard_group(0)
            for element in elements:
                kind, _, name = element.partition("/")
                have = sorted(group[kind].keys()) if kind in group else []
                if name not in have:
                    msg = f"{kind} {name!r} is not in collection {coll.path} (shard {coll.shards[0].name}); available {kind}: {have or 'none'} (write it with write_collection(..., {kind}=[{name!r}]))"
                    raise KeyError(msg)
                node = group[element]
                shape = node.attrs["shape"] if "shape" in node.attrs else node.shape
                width = int(shape[1]) if len(shape) > 1 else 1
                if kind == "layers" and width != self.n_vars:
                    msg = f"collection {coll.path}: layer {name!r} has {width} columns, X has {self.n_vars}; the collection is damaged, rewrite it"
                    raise CorruptShardError(msg)
                if widths.setdefault(element, width) != width:
                    msg = f"obsm {name!r} has {widths[element]} columns in collection {first[element].path} but {width} in {coll.path}; a Loader over several collections needs the same width"
                    raise ValueError(msg)
                first.setdefault(element, coll)
        return widths
