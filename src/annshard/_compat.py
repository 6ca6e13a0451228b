"""Every use of a dependency's private API, each behind one named function.

annshard relies on a few things its dependencies do not promise to keep: a
private scipy kernel, zarrs-python's internal chunk interface, zarr-python's
internal array layer, donfig's config lock, anndata's IO registry error, and
lamindb / lamindb-setup internals. They all live here, so that a release that
changes one of them breaks one function, and ``tests/test_compat.py`` (one test
per function) names the dependency and the version this was checked against.

Each function's docstring names the version it was checked against (from
``uv.lock``). Imports happen inside the functions: importing this module
imports nothing heavy (lamindb-setup imports annshard's plugin, and with it
this module, while lamindb itself is still being imported).
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import numpy as np
    import zarr

__all__ = [
    "CHECKED",
    "anndata_io_registry_error",
    "artifact_storage_key",
    "instance_settings_class",
    "instance_settings_file",
    "is_on_hub_cache",
    "lamindb_tracked_run",
    "reset_zarr_config_lock",
    "scipy_csr_row_index",
    "set_is_on_hub_cache",
    "set_run_status",
    "zarr_chunk_key_encoder",
    "zarr_chunk_projection",
    "zarr_fallback_pipeline_path",
    "zarr_read_selection",
    "zarr_stored_counts",
    "zarr_sync",
    "zarrs_chunk_item",
    "zarrs_loaded",
    "zarrs_pipeline_impl",
]

CHECKED = {
    "scipy": "1.18.1",
    "zarr": "3.4.2",
    "zarrs": "0.2.3",
    "donfig": "0.8.1.post1",
    "anndata": "0.13.2",
    "lamindb": "2.12.1",
    "lamindb-setup": "1.27.0",
}
"""The version of each dependency that the functions below were checked against (``uv.lock``)."""


# -- scipy ------------------------------------------------------------------------------------------
def scipy_csr_row_index() -> Callable[..., None] | None:
    """Return scipy's C++ CSR row gather ``scipy.sparse._sparsetools.csr_row_index``, or ``None``.

    Signature ``(n_rows, rows, indptr, indices, data, out_indices, out_data)``; it copies the rows one
    after the other and releases the GIL. Checked against scipy 1.18.1. ``None`` when scipy moved it:
    callers fall back to numpy.
    """
    try:
        from scipy.sparse._sparsetools import csr_row_index
    except ImportError:  # pragma: no cover - scipy moved its private module
        return None
    return csr_row_index


# -- zarrs ------------------------------------------------------------------------------------------
def zarrs_loaded() -> bool:
    """Whether zarrs' Rust extension (``zarrs._internal``) is loaded in this process.

    Loading it starts nothing; its first decode starts the process-wide Rust thread pool that does not
    survive a fork. Checked against zarrs 0.2.3.
    """
    return "zarrs._internal" in sys.modules


def zarrs_chunk_item() -> type | None:
    """Return zarrs-python's ``zarrs._internal.ChunkItem``, checked once by building one; ``None`` otherwise.

    One item describes one read: ``ChunkItem(key=..., chunk_subset=[slice, ...], chunk_shape=[...],
    subset=[slice, ...], shape=[...])``. Checked against zarrs 0.2.3. ``None`` when zarrs is missing or
    the constructor changed: callers read through zarr instead.
    """
    try:
        from zarrs._internal import ChunkItem

        ChunkItem(key="c/0", chunk_subset=[slice(0, 1)], chunk_shape=[1], subset=[slice(0, 1)], shape=[1])
    except Exception:  # noqa: BLE001 - anything unexpected: read through zarr instead
        return None
    return ChunkItem


def zarrs_pipeline_impl(array: zarr.Array) -> Any | None:
    """Return the Rust pipeline of an array opened with zarrs' codec pipeline, or ``None``.

    That is ``array._async_array.codec_pipeline.impl``, with its
    ``retrieve_chunks_and_apply_index(items, out)`` (decode the :func:`zarrs_chunk_item` items into
    ``out``). Checked against zarrs 0.2.3 and zarr 3.4.2. ``None`` for any other pipeline.
    """
    try:
        impl = getattr(array._async_array.codec_pipeline, "impl", None)
    except AttributeError:
        return None
    if impl is None or not callable(getattr(impl, "retrieve_chunks_and_apply_index", None)):
        return None
    return impl


# -- zarr -------------------------------------------------------------------------------------------
def zarr_chunk_key_encoder(array: zarr.Array) -> Callable[[tuple[int, ...]], str]:
    """Return the function mapping chunk coordinates to a chunk key (``(0, 3)`` -> ``"c/0/3"``) of ``array``.

    That is ``array._async_array.metadata.encode_chunk_key``. Checked against zarr 3.4.2.
    """
    return array._async_array.metadata.encode_chunk_key


def zarr_chunk_projection(
    chunk_coords: tuple[int, ...], chunk_selection: tuple[slice, ...], out_selection: tuple[slice, ...], complete: bool
) -> Any:
    """Return one ``zarr.core.indexing.ChunkProjection``, the item a zarr indexer yields.

    Checked against zarr 3.4.2 (positional fields: chunk coordinates, selection in the chunk,
    selection in the output, whether the chunk is read whole).
    """
    return _chunk_projection_type()(chunk_coords, chunk_selection, out_selection, complete)


@functools.cache
def _chunk_projection_type() -> type:
    # imported once: zarr_chunk_projection runs once per chunk piece of every fallback read
    from zarr.core.indexing import ChunkProjection

    return ChunkProjection


async def zarr_read_selection(array: zarr.Array, indexer: Any, out: np.ndarray) -> None:
    """Decode the selection of a custom zarr indexer straight into ``out``.

    That is ``array._async_array._get_selection(indexer, prototype=..., out=...)`` with zarr's default
    buffer prototype. Checked against zarr 3.4.2.
    """
    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()
    await array._async_array._get_selection(indexer, prototype=proto, out=proto.nd_buffer(out))


def zarr_stored_counts(array: zarr.Array) -> zarr.Array | None:
    """Return ``array`` as its stored counts: the same chunks, read without its ``fixedscaleoffset`` filter.

    For an array whose values pass (first, inside its shards or not) through
    ``numcodecs.fixedscaleoffset`` with scale 1 and offset 0 into an unsigned
    integer (how annshard stores raw counts, :meth:`annshard.StorageSpec.counts_filters`),
    the returned array reads the stored integers themselves: widening them to
    the array's dtype afterwards gives exactly what ``array`` reads, without
    the filter's per-element decode. ``None`` for any other array. Built as
    ``zarr.AsyncArray(metadata, array._async_array.store_path)`` from the
    metadata dict with the filter left out. Checked against zarr 3.4.2.
    """
    d = array.metadata.to_dict()
    if d.get("zarr_format") != 3:
        return None
    codecs = d["codecs"]
    holder: dict[str, Any] = d
    if codecs and codecs[0].get("name") == "sharding_indexed":
        holder = codecs[0]["configuration"]
        codecs = holder["codecs"]
    import numpy as np

    from annshard._store._spec import stored_counts_dtype

    stored = stored_counts_dtype(codecs[0] if codecs else {}, np.dtype(array.dtype), d.get("fill_value"))
    if stored is None:
        return None
    holder["codecs"] = codecs[1:]
    d["data_type"] = stored.name
    d["fill_value"] = 0
    d["attributes"] = {}
    return type(array)(type(array._async_array)(d, array._async_array.store_path))


def zarr_sync(coroutine: Awaitable[Any]) -> Any:
    """Run ``coroutine`` on zarr's event loop thread and return its result (``zarr.core.sync.sync``).

    Checked against zarr 3.4.2.
    """
    from zarr.core.sync import sync

    return sync(coroutine)


def zarr_fallback_pipeline_path() -> str:
    """Return the import path of zarr-python's own codec pipeline, for ``codec_pipeline.path``.

    ``zarr.core.codec_pipeline.BatchedCodecPipeline`` (zarr's default). Checked against zarr 3.4.2.
    """
    return "zarr.core.codec_pipeline.BatchedCodecPipeline"


def reset_zarr_config_lock() -> bool:
    """Replace zarr's config lock (donfig's ``zarr.config.config_lock.lock``) when it is held; return whether it was.

    For a child process forked while a thread of the parent held it (no thread of the parent runs in the
    child, so it would stay locked forever). Checked against donfig 0.8.1.post1 and zarr 3.4.2.
    """
    import zarr

    holder = getattr(zarr.config, "config_lock", None)
    lock = getattr(holder, "lock", None)
    if lock is not None and hasattr(lock, "locked") and lock.locked():
        holder.lock = threading.Lock()  # type: ignore[union-attr]
        return True
    return False


# -- anndata ----------------------------------------------------------------------------------------
def anndata_io_registry_error() -> type[Exception]:
    """Return anndata's ``IORegistryError`` (no reader or writer for an element's encoding).

    It lives in ``anndata._io.specs.registry``; anndata does not export it. Checked against anndata 0.13.2.
    """
    from anndata._io.specs.registry import IORegistryError

    return IORegistryError


# -- lamindb and lamindb-setup ----------------------------------------------------------------------
def lamindb_tracked_run() -> Any | None:
    """Return the run of a running ``@ln.flow`` / ``@ln.step`` or ``ln.track()``, or ``None``.

    That is ``lamindb.core._functions.get_current_tracked_run()``; ``None`` too when lamindb moved it.
    Checked against lamindb 2.12.1.
    """
    try:
        from lamindb.core._functions import get_current_tracked_run
    except ImportError:  # pragma: no cover - moved in another lamindb version
        return None
    return get_current_tracked_run()


def set_run_status(run: Any, *, ok: bool) -> None:
    """Mark a lamindb ``Run`` as succeeded (``ok``) or failed, without saving it.

    lamindb has no public setter: this writes the ``Run._status_code`` field (0 succeeded, 1 failed).
    Checked against lamindb 2.12.1.
    """
    run._status_code = 0 if ok else 1


def instance_settings_file(name: str, owner: str) -> Any:
    """Return the path of the settings file lamindb-setup keeps for instance ``owner/name`` on this machine.

    That is ``lamindb_setup.core._settings_store.instance_settings_file``. Checked against lamindb-setup 1.27.0.
    """
    from lamindb_setup.core._settings_store import instance_settings_file as settings_file

    return settings_file(name, owner)


def instance_settings_class() -> type | None:
    """Return lamindb-setup's ``InstanceSettings`` class (``lamindb_setup.core._settings_instance``), or ``None``.

    annshard wraps its ``is_on_hub`` property (see :mod:`annshard.lamin._offline`). Checked against
    lamindb-setup 1.27.0.
    """
    try:
        from lamindb_setup.core._settings_instance import InstanceSettings
    except ImportError:  # pragma: no cover - lamindb-setup without this module
        return None
    return InstanceSettings


def is_on_hub_cache(isettings: Any) -> bool | None:
    """Return what ``InstanceSettings.is_on_hub`` has cached (``_is_on_hub``): ``None`` until it is known.

    Checked against lamindb-setup 1.27.0.
    """
    return getattr(isettings, "_is_on_hub", None)


def set_is_on_hub_cache(isettings: Any, value: bool) -> None:
    """Set what ``InstanceSettings.is_on_hub`` returns without asking the hub (its ``_is_on_hub`` cache).

    Checked against lamindb-setup 1.27.0.
    """
    isettings._is_on_hub = value


def artifact_storage_key(artifact: Any) -> str:
    """Return the key of a lamindb ``Artifact``'s files under its storage root (``artifact.path`` without the path).

    That is ``lamindb.core.storage.paths.auto_storage_key_from_artifact``: the artifact's own key when it was
    registered in place, ``.lamindb/<uid><suffix>`` otherwise. annshard needs it for artifacts on a bucket, where
    ``artifact.path`` builds lamindb's s3fs session (and with it a request to AWS). Checked against lamindb 2.12.1.
    """
    from lamindb.core.storage.paths import auto_storage_key_from_artifact

    return str(auto_storage_key_from_artifact(artifact))
