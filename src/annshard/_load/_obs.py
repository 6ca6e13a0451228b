"""obs columns held in memory for the loader.

The requested columns of every shard are read once, when the loader is built:
categorical columns become integer codes into one category list (the
manifest's shared list; over several collections, their union in order of
first appearance), numeric columns stay arrays. A batch's obs is then one
gather by the batch's global row indices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd

from annshard._config import zarr_config
from annshard._errors import CorruptShardError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from annshard._collection import Collection

__all__ = ["ObsTable"]


def _available(coll: Collection) -> list[str]:
    names = [c.name for c in coll.manifest.obs_columns]
    if names:
        return names
    group = coll.shard_group(0)
    return sorted(group["obs"].keys()) if coll.shards else []


class ObsTable:
    """Global obs columns of one or more collections, read on demand and kept in memory."""

    def __init__(self, collections: Sequence[Collection]) -> None:
        self.collections = list(collections)
        self._values: dict[str, np.ndarray] = {}
        self._cats: dict[str, tuple[Any, ...]] = {}

    def load(self, names: Sequence[str]) -> None:
        """Read ``names`` from every shard (a no-op for columns already read).

        Raises
        ------
        KeyError
            If a column is not in a collection; the message lists the available ones.
        """
        for name in names:
            if name in self._values:
                continue
            for coll in self.collections:
                available = _available(coll)
                if name not in available:
                    msg = f"obs column {name!r} is not in collection {coll.path}; available columns: {', '.join(available)}"
                    raise KeyError(msg)
            self._read(name)

    def _read(self, name: str) -> None:
        parts: list[Any] = []
        union: list[Any] = []
        lookup: dict[Any, int] = {}
        categorical = False
        with zarr_config():
            for coll in self.collections:
                for i, info in enumerate(coll.shards):
                    try:
                        value = ad.io.read_elem(coll.shard_group(i)["obs"][name])
                    except Exception as e:
                        msg = f"collection {coll.path}, shard {info.name}: cannot read obs column {name!r} ({type(e).__name__}: {e}); rewrite the collection"
                        raise CorruptShardError(msg) from e
                    if isinstance(value, pd.Categorical | pd.Series) and isinstance(value.dtype, pd.CategoricalDtype):
                        categorical = True
                        cat = pd.Categorical(value)
                        for c in cat.categories:
                            if c not in lookup:
                                lookup[c] = len(union)
                                union.append(c)
                        lut = np.array([lookup[c] for c in cat.categories] + [-1], dtype=np.int64)
                        parts.append(lut[np.asarray(cat.codes, dtype=np.int64)])
                    else:
                        parts.append(np.asarray(value))
        values = np.concatenate(parts) if parts else np.zeros(0)
        if categorical:
            dtype = np.int8 if len(union) < 127 else np.int16 if len(union) < 32767 else np.int32
            values = values.astype(dtype)
            self._cats[name] = tuple(union)
        self._values[name] = values

    def column(self, name: str) -> np.ndarray:
        """Return the global column ``name`` (read if needed)."""
        self.load([name])
        return self._values[name]

    def categories(self, names: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """Category labels of the categorical columns among ``names``."""
        return {n: self._cats[n] for n in names if n in self._cats}

    def take(self, names: Sequence[str], index: np.ndarray) -> dict[str, np.ndarray]:
        """Each column's values at global rows ``index``."""
        return {n: self._values[n][index] for n in names}
