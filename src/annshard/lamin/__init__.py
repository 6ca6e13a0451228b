"""Register annshard collections in lamindb, load them back, and record every use.

Needs the ``lamin`` extra (``pip install 'annshard[lamin]'``) and a lamindb
instance (``lamin init --storage ./data``).

- :func:`register` saves a collection's shards as ``ln.Artifact`` objects and the
  set as a versioned ``ln.Collection(key=...)``, with lineage from the sources;
- :func:`write_and_register` writes a collection from lamindb artifacts and registers it;
- ``ln.Collection.get(key=...).loader(**kw)`` (added to lamindb by annshard's
  lamindb-setup plugin, no import needed) and :func:`load_collection` build an
  :class:`annshard.Loader` and record the use on the active run;
- :func:`find_collections` queries collections by seed, source artifact, key, ...

Everything works offline: see :mod:`annshard.lamin._offline`.

This package imports lamindb only when one of its functions is called, because
lamindb-setup imports :mod:`annshard.lamin._plugin` while lamindb itself is
still being imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._instance import NoInstanceError, ensure_local_instance
    from ._register import (
        InvalidKeyError,
        NotAnnshardCollectionError,
        find_collections,
        load_collection,
        open_registered,
        register,
        write_and_register,
    )
    from ._usage import NoRunWarning

__all__ = [
    "InvalidKeyError",
    "NoInstanceError",
    "NoRunWarning",
    "NotAnnshardCollectionError",
    "ensure_local_instance",
    "find_collections",
    "load_collection",
    "open_registered",
    "register",
    "write_and_register",
]

_WHERE = {
    "NoInstanceError": "_instance",
    "ensure_local_instance": "_instance",
    "NoRunWarning": "_usage",
    "InvalidKeyError": "_register",
    "NotAnnshardCollectionError": "_register",
    "find_collections": "_register",
    "load_collection": "_register",
    "open_registered": "_register",
    "register": "_register",
    "write_and_register": "_register",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
