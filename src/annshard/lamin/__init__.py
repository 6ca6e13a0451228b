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
still being imported. Importing it installs the finder that adds ``.loader()``
to ``ln.Collection`` (standard library only); the entry point does the same on
``import lamindb_setup``. Why there and nowhere else: :mod:`annshard.lamin._plugin`.

Modules, one concept each: :mod:`~annshard.lamin._register` (runs, versions,
``register``, ``write_and_register``), :mod:`~annshard.lamin._storage` (in place or
copied into the storage root), :mod:`~annshard.lamin._bucket` (storage locations on a
bucket: uploaded by annshard, read back with obstore), :mod:`~annshard.lamin._snapshot` (the manifest
snapshot and its features), :mod:`~annshard.lamin._undo` (taking back a failed
registration), :mod:`~annshard.lamin._open` (loading back),
:mod:`~annshard.lamin._find` (queries), :mod:`~annshard.lamin._errors` (errors,
key checks), :mod:`~annshard.lamin._usage` (use on the active run),
:mod:`~annshard.lamin._instance`, :mod:`~annshard.lamin._offline`,
:mod:`~annshard.lamin._plugin`, :mod:`~annshard.lamin._cli`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _plugin

if TYPE_CHECKING:
    from ._errors import InvalidKeyError, NotAnnshardCollectionError
    from ._find import find_collections
    from ._instance import NoInstanceError, ensure_local_instance
    from ._open import load_collection, open_registered
    from ._register import register, write_and_register
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
    "InvalidKeyError": "_errors",
    "NotAnnshardCollectionError": "_errors",
    "find_collections": "_find",
    "load_collection": "_open",
    "open_registered": "_open",
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


_plugin.install_finder()  # see annshard.lamin._plugin: where the plugin is installed, and why there
