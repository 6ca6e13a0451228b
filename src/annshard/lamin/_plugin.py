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

Importing this module imports nothing of lamindb, torch or the rest of annshard
(the ``loader`` method imports the loading code when it is called).

Where the plugin is installed, and why there
--------------------------------------------
The ``loader`` method calls :func:`annshard.lamin.load_collection`, so this
module sits above the loading code in the import graph (:mod:`~annshard.lamin._open`,
and through it :mod:`~annshard.lamin._instance`). Nothing that the loading code
imports may therefore install the plugin: ``require_instance()`` used to, which made the import cycle
``_instance -> _plugin -> _register -> _instance``. The plugin is installed in
two places above the loading code, and nowhere else:

1. the entry point, :func:`install` (offline patch and finder), on
   ``import lamindb_setup``; this is what puts ``.loader()`` on
   ``ln.Collection`` with no annshard import;
2. the import of the package :mod:`annshard.lamin`, which runs
   :func:`install_finder` (the finder alone: standard library only, so the
   package import stays light and imports neither lamindb nor lamindb-setup).
   Every public function lives in a submodule, so the finder is in place before
   any of them runs, also where the entry point is missing (a source tree on
   ``PYTHONPATH``).

The offline patch, the other half of :func:`install`, is a leaf
(:mod:`annshard.lamin._offline` imports nothing of annshard), so
``require_instance()`` and ``ensure_local_instance()`` apply it directly before
lamindb-setup can ask the hub.
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

__all__ = ["install", "install_finder", "patch_collection_class"]

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
    from ._open import load_collection

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


def install_finder() -> None:
    """Put ``.loader()`` on lamindb's ``Collection``, now if it is imported and each time it is (idempotent).

    Imports nothing: run by ``import annshard.lamin`` (see the module docstring).
    """
    if not any(isinstance(f, _CollectionModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CollectionModuleFinder())
    module = sys.modules.get(TARGET)
    if module is not None:
        _patch_module(module)


def install() -> None:
    """Entry point of the ``lamindb_setup.on_import`` group; see the module docstring."""
    from ._offline import patch_is_on_hub

    patch_is_on_hub()
    install_finder()
