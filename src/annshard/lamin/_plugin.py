"""The lamindb-setup plugin: ``ln.Collection(...).loader()`` with no extra import.

lamindb-setup calls every entry point of the group ``lamindb_setup.on_import``
at the end of ``import lamindb_setup`` (see ``lamindb_setup/_entry_points.py``),
which ``import lamindb`` does first. annshard declares one in its
``pyproject.toml``::

    [project.entry-points."lamindb_setup.on_import"]
    annshard = "annshard.lamin._plugin:install"

At that moment lamindb's models are not imported yet (and importing them would
be circular), so :func:`install` does two cheap things:

1. it wraps ``InstanceSettings.is_on_hub`` so that local instances never ask
   LaminHub over the network (see :mod:`annshard.lamin._offline`);
2. it puts a finder on ``sys.meta_path`` that, each time the module
   ``lamindb.models.collection`` is executed, adds a ``loader`` method to its
   ``Collection`` class. ``ln.connect()`` to another instance drops lamindb's
   modules from ``sys.modules`` and imports them afresh; the finder patches the
   new class too, so ``.loader()`` survives switching instances.

Nothing here imports lamindb, torch or the rest of annshard.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    from annshard._load import Loader

__all__ = ["install", "patch_collection_class"]

TARGET = "lamindb.models.collection"
_MARK = "__annshard_plugin__"


def loader(self: Any, *, version: str | None = None, **loader_kwargs: Any) -> Loader:
    """Build an :class:`annshard.Loader` over this collection (added by annshard).

    The collection must have been registered with :func:`annshard.lamin.register`
    (or be a plain lamindb collection of the shards of one annshard or annbatch
    collection). Building the loader records the collection as an input of the
    active run (``ln.track()``) and stores the loader's settings on that run.

    Parameters
    ----------
    version
        Load this version of the collection's family instead (``"1"``, ``"2"``, ...).
    **loader_kwargs
        Passed to :class:`annshard.Loader` (``batch_size``, ``chunk_size``, ...).

    Returns
    -------
    The loader.

    Examples
    --------
    >>> import lamindb as ln
    >>> loader = ln.Collection.get(key="pbmc/train").loader(batch_size=4096)  # doctest: +SKIP
    >>> for batch in loader:  # doctest: +SKIP
    ...     pass
    """
    from ._register import load_collection

    return load_collection(self, version=version, **loader_kwargs)


setattr(loader, _MARK, True)


def patch_collection_class(cls: type) -> None:
    """Add :func:`loader` to a lamindb ``Collection`` class (idempotent; never replaces someone else's)."""
    existing = cls.__dict__.get("loader")
    if existing is not None and not getattr(existing, _MARK, False):
        return
    cls.loader = loader  # type: ignore[attr-defined]


def _patch_module(module: ModuleType) -> None:
    cls = getattr(module, "Collection", None)
    if isinstance(cls, type):
        patch_collection_class(cls)


class _CollectionModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``lamindb.models.collection`` through the other finders and patches it once executed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _CollectionModuleFinder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        inner = spec.loader
        exec_module = getattr(inner, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            _patch_module(module)

        try:
            inner.exec_module = exec_and_patch  # type: ignore[union-attr]
        except AttributeError:  # pragma: no cover - a loader that refuses attributes
            return spec
        return spec


def install() -> None:
    """Entry point of the ``lamindb_setup.on_import`` group; see the module docstring."""
    from ._offline import patch_is_on_hub

    patch_is_on_hub()
    if not any(isinstance(f, _CollectionModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CollectionModuleFinder())
    module = sys.modules.get(TARGET)
    if module is not None:
        _patch_module(module)
