"""Recording the use of a registered collection on the active lamindb run.

When a loader is built from a registered collection, the collection becomes an
input of the active run (``ln.track()``, or a function decorated with
``@ln.flow`` / ``@ln.step``) and the loader's settings are stored on that run in
two queryable forms:

- features (indexed, ``ln.Run.filter(annshard_batch_size=4096)``):
  ``annshard_batch_size``, ``annshard_chunk_size``, ``annshard_preload_nchunks``,
  ``annshard_sampler``, ``annshard_loader_seed`` and ``annshard_obs_columns``
  (comma-separated);
- ``run.params["annshard_loader"]``: the whole ``Loader.settings()`` dict of the
  last loader, and ``run.params["annshard_loaders"]``: one entry per loader
  (``ln.Run.filter(params__annshard_loader__batch_size=4096)``).

Only the main process writes: a loader copied into a DataLoader worker (or
built inside one) never touches the database. Without an active run a warning
is issued once per process, as lamindb does.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from typing import Any

from annshard._compat import lamindb_tracked_run

__all__ = ["RUN_FEATURES", "NoRunWarning", "active_run", "in_main_process", "record_use"]


class NoRunWarning(UserWarning):
    """A registered collection was loaded with no active lamindb run, so the use is not recorded."""


# feature name -> (dtype, settings key)
RUN_FEATURES: dict[str, tuple[type, str]] = {
    "annshard_batch_size": (int, "batch_size"),
    "annshard_chunk_size": (int, "chunk_size"),
    "annshard_preload_nchunks": (int, "preload_nchunks"),
    "annshard_sampler": (str, "sampler"),
    "annshard_loader_seed": (int, "seed"),
    "annshard_obs_columns": (str, "obs_columns"),
}

_warned = False


def in_main_process() -> bool:
    """Whether this is the main process (not a multiprocessing child or a DataLoader worker)."""
    if multiprocessing.parent_process() is not None:
        return False
    data = sys.modules.get("torch.utils.data")
    if data is not None:
        try:
            if data.get_worker_info() is not None:
                return False
        except Exception:  # noqa: BLE001 - torch internals; assume main
            return True
    return True


def active_run() -> Any:
    """Return the run of ``ln.track()`` (or of a running ``@ln.flow``/``@ln.step``), or ``None``."""
    import lamindb as ln

    run = lamindb_tracked_run()
    return run if run is not None else ln.context.run


def ensure_features(spec: dict[str, type]) -> None:
    """Create the lamindb ``Feature`` records named in ``spec`` that do not exist yet."""
    import lamindb as ln

    existing = set(ln.Feature.filter(name__in=list(spec)).values_list("name", flat=True))
    missing = {name: dtype for name, dtype in spec.items() if name not in existing}
    if not missing:
        return
    verbosity = ln.settings.verbosity
    ln.settings.verbosity = "error"  # lamindb logs a tip per feature without a type hierarchy
    try:
        for name, dtype in missing.items():
            ln.Feature(name=name, dtype=dtype, description="written by annshard").save()
    finally:
        ln.settings.verbosity = verbosity


def _feature_value(value: Any, dtype: type) -> Any:
    if value is None:
        return None
    if dtype is int:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("name", value))
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def record_use(record: Any, settings: dict[str, Any]) -> Any:
    """Record that ``record`` (an ``ln.Collection``) is read with ``settings`` by the active run.

    Parameters
    ----------
    record
        The lamindb collection.
    settings
        ``Loader.settings()``.

    Returns
    -------
    The run the use was recorded on, or ``None``.
    """
    global _warned
    if not in_main_process():
        return None
    run = active_run()
    if run is None:
        if not _warned:
            _warned = True
            msg = (
                f"collection {record.key!r} (version {record.version}) is loaded outside a tracked run, so lamindb "
                "will not record which run used it; call `ln.track()` first"
            )
            package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            warnings.warn(msg, NoRunWarning, skip_file_prefixes=(package,))  # point at the user's line
        return None
    run.input_collections.add(record)
    settings = _jsonable(dict(settings))
    values = {}
    for name, (dtype, key) in RUN_FEATURES.items():
        value = _feature_value(settings.get(key), dtype)
        if value is not None:
            values[name] = value
    ensure_features({name: RUN_FEATURES[name][0] for name in values})
    if values:
        run.features.add_values(values)
    params = dict(run.params or {})
    entry = {"collection": record.uid, "key": record.key, "version": record.version, **settings}
    params["annshard_loader"] = settings
    params["annshard_loaders"] = [*params.get("annshard_loaders", []), entry]
    run.params = params
    run.save()
    return run
