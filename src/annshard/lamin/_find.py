"""Finding registered collections by what they were made from and how.

Finding every collection made with seed 0 from a given artifact is one query on
the features of the manifest snapshots (:mod:`~annshard.lamin._snapshot`),
wrapped by :func:`find_collections`::

    ln.Collection.filter(meta_artifact__in=ln.Artifact.filter(annshard_seed=0), run__input_artifacts=artifact)
"""

from __future__ import annotations

from typing import Any

from ._instance import require_instance
from ._snapshot import META_FEATURES
from ._usage import ensure_features

__all__ = ["find_collections"]


def find_collections(
    *,
    seed: int | None = None,
    source: Any = None,
    key: str | None = None,
    join: str | None = None,
    format_version: int | None = None,
) -> Any:
    """Query registered annshard collections matching all given criteria, as a lamindb ``QuerySet``.

    Parameters
    ----------
    seed
        The shuffle seed.
    source
        An ``ln.Artifact`` (or its uid) the collection was written from.
    key
        The collection key.
    join
        ``"inner"`` or ``"outer"``.
    format_version
        The on-disk format version.

    Examples
    --------
    >>> import annshard, lamindb as ln
    >>> raw = ln.Artifact.get(key="pbmc/raw/donor1.h5ad")  # doctest: +SKIP
    >>> annshard.lamin.find_collections(seed=0, source=raw).to_list()  # doctest: +SKIP
    """
    require_instance()
    import lamindb as ln

    ensure_features(META_FEATURES)
    features = {"annshard_seed": seed, "annshard_join": join, "annshard_format_version": format_version}
    metas = ln.Artifact.filter(**{k: v for k, v in features.items() if v is not None})
    query = ln.Collection.filter(meta_artifact__in=metas)
    if source is not None:
        query = query.filter(**{"run__input_artifacts__uid": source if isinstance(source, str) else source.uid})
    if key is not None:
        query = query.filter(key=key)
    return query.distinct().order_by("key", "created_at")
