"""One test per function of ``annshard._compat``: each fails loudly when a dependency's release changes what it uses.

The message names the dependency, the version installed and the version the function was checked against.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import zarr

from annshard import _compat


def _broke(dist: str, what: str) -> str:
    installed = importlib.metadata.version(dist)
    return (
        f"{dist} {installed} changed {what} (annshard._compat was checked against {dist} {_compat.CHECKED[dist]}): "
        f"update annshard/_compat.py for this release"
    )


def test_every_function_has_a_test_and_a_checked_version():
    here = Path(__file__).read_text()
    for name in _compat.__all__:
        if name == "CHECKED":
            continue
        assert f"def test_{name}(" in here, f"tests/test_compat.py has no test_{name}"
        doc = getattr(_compat, name).__doc__ or ""
        assert "Checked against" in doc, f"_compat.{name}'s docstring names no checked version"
    text = (Path(__file__).resolve().parent.parent / "uv.lock").read_text()
    for dist, version in _compat.CHECKED.items():
        assert f'name = "{dist}"\nversion = "{version}"' in text, f"_compat.CHECKED[{dist!r}] is not uv.lock's version"


@pytest.fixture
def zarrs_array(tmp_path):
    pytest.importorskip("zarrs")
    from annshard._config import zarr_config

    with zarr_config():
        a = zarr.create_array(tmp_path / "a.zarr", shape=(100,), chunks=(10,), shards=(50,), dtype="float32")
        a[:] = np.arange(100, dtype=np.float32)
        return zarr.open_array(tmp_path / "a.zarr", mode="r")


# -- scipy ------------------------------------------------------------------------------------------
def test_scipy_csr_row_index():
    gather = _compat.scipy_csr_row_index()
    assert gather is not None, _broke("scipy", "scipy.sparse._sparsetools.csr_row_index (it is gone)")
    m = sp.random(20, 8, density=0.4, format="csr", dtype=np.float32, random_state=0)
    rows = np.array([5, 0, 19, 5], dtype=m.indptr.dtype)
    want = m[rows]
    out_indices = np.empty(want.nnz, dtype=m.indices.dtype)
    out_data = np.empty(want.nnz, dtype=m.data.dtype)
    try:
        gather(rows.shape[0], rows, m.indptr, m.indices, m.data, out_indices, out_data)
    except Exception as e:  # noqa: BLE001 - any failure is the dependency's change
        pytest.fail(_broke("scipy", f"csr_row_index's signature ({type(e).__name__}: {e})"))
    assert np.array_equal(out_indices, want.indices) and np.array_equal(out_data, want.data), _broke(
        "scipy", "what csr_row_index copies"
    )


# -- zarrs ------------------------------------------------------------------------------------------
def test_zarrs_loaded():
    pytest.importorskip("zarrs")
    code = (
        "import sys\nfrom annshard import _compat\nbefore = _compat.zarrs_loaded()\nimport zarrs\n"
        "print(before, _compat.zarrs_loaded())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], _broke("zarrs", "the name of its Rust extension (zarrs._internal)")


def test_zarrs_chunk_item():
    pytest.importorskip("zarrs")
    assert _compat.zarrs_chunk_item() is not None, _broke(
        "zarrs", "zarrs._internal.ChunkItem(key=, chunk_subset=, ...)"
    )


def test_zarrs_pipeline_impl(zarrs_array):
    impl = _compat.zarrs_pipeline_impl(zarrs_array)
    assert impl is not None, _broke("zarrs", "array._async_array.codec_pipeline.impl.retrieve_chunks_and_apply_index")
    item = _compat.zarrs_chunk_item()
    encode = _compat.zarr_chunk_key_encoder(zarrs_array)
    out = np.zeros(7, dtype=np.float32)
    # rows 48-54 cross the shard border at 50: two items, decoded by zarrs straight into ``out``
    items = [
        item(key=encode((0,)), chunk_subset=[slice(48, 50)], chunk_shape=[50], subset=[slice(0, 2)], shape=[7]),
        item(key=encode((1,)), chunk_subset=[slice(0, 5)], chunk_shape=[50], subset=[slice(2, 7)], shape=[7]),
    ]
    impl.retrieve_chunks_and_apply_index(items, out)
    assert np.array_equal(out, np.arange(48, 55, dtype=np.float32)), _broke("zarrs", "what ChunkItem reads")


# -- zarr -------------------------------------------------------------------------------------------
def test_zarr_chunk_key_encoder(tmp_path):
    a = zarr.create_array(tmp_path / "k.zarr", shape=(4, 4), chunks=(2, 2), dtype="int8")
    try:
        encode = _compat.zarr_chunk_key_encoder(a)
    except AttributeError as e:
        pytest.fail(_broke("zarr", f"array._async_array.metadata.encode_chunk_key ({e})"))
    assert encode((1, 0)) == "c/1/0", _broke("zarr", "the default chunk key encoding")


def test_zarr_stored_counts(tmp_path):
    from annshard._config import zarr_config
    from annshard._store._spec import StorageSpec

    spec = StorageSpec(counts_dtype="uint16")
    values = np.array([0, 1, 7, 300, 65535, 2, 0, 9] * 25, dtype=np.float32)
    with zarr_config():
        kw = {"shape": values.shape, "chunks": (16,), "shards": (64,), "dtype": "float32"}
        a = zarr.create_array(
            tmp_path / "c.zarr", filters=spec.counts_filters(), compressors=spec.compressors(counts=True), **kw
        )
        a[:] = values
        plain = zarr.create_array(tmp_path / "p.zarr", **kw)
        plain[:] = values
        try:
            stored = _compat.zarr_stored_counts(zarr.open_array(tmp_path / "c.zarr", mode="r"))
        except (AttributeError, KeyError, TypeError) as e:
            pytest.fail(_broke("zarr", f"zarr.AsyncArray(metadata dict, store_path) or array.metadata.to_dict() ({e})"))
        assert stored is not None, _broke("zarr", "the metadata dict of a fixedscaleoffset array")
        assert stored.dtype == np.uint16, _broke("zarr", "AsyncArray built from a metadata dict")
        got = stored[...]
        assert got.dtype == np.uint16 and np.array_equal(got.astype(np.float32), values), _broke(
            "zarr", "what it reads"
        )
        assert _compat.zarr_stored_counts(zarr.open_array(tmp_path / "p.zarr", mode="r")) is None


class _Runs:
    """A custom indexer (the shape of annshard._load._fetch.RunsIndexer): elements 3-5 and 12-13 of a 20-element array."""

    def __init__(self) -> None:
        self.shape = (5,)
        self.drop_axes: tuple[int, ...] = ()

    def __iter__(self):
        yield _compat.zarr_chunk_projection((0,), (slice(3, 6),), (slice(0, 3),), False)
        yield _compat.zarr_chunk_projection((1,), (slice(2, 4),), (slice(3, 5),), False)


def test_zarr_chunk_projection(tmp_path):
    try:
        p = _compat.zarr_chunk_projection((2,), (slice(0, 3),), (slice(1, 4),), True)
    except Exception as e:  # noqa: BLE001 - any failure is the dependency's change
        pytest.fail(_broke("zarr", f"zarr.core.indexing.ChunkProjection ({type(e).__name__}: {e})"))
    assert tuple(p) == ((2,), (slice(0, 3),), (slice(1, 4),), True), _broke("zarr", "ChunkProjection's fields")


def test_zarr_read_selection(tmp_path):
    a = zarr.create_array(tmp_path / "s.zarr", shape=(20,), chunks=(10,), dtype="int32")
    a[:] = np.arange(20, dtype=np.int32)
    out = np.zeros(5, dtype=np.int32)
    try:
        _compat.zarr_sync(_compat.zarr_read_selection(a, _Runs(), out))
    except Exception as e:  # noqa: BLE001 - any failure is the dependency's change
        pytest.fail(_broke("zarr", f"AsyncArray._get_selection(indexer, prototype=, out=) ({type(e).__name__}: {e})"))
    assert out.tolist() == [3, 4, 5, 12, 13], _broke("zarr", "what _get_selection writes into out")


def test_zarr_sync():
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert _compat.zarr_sync(answer()) == 42, _broke("zarr", "zarr.core.sync.sync")


def test_zarr_fallback_pipeline_path(tmp_path):
    path = _compat.zarr_fallback_pipeline_path()
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        pytest.fail(_broke("zarr", f"where its own codec pipeline lives ({path}: {e})"))
    with zarr.config.set({"codec_pipeline.path": path}):
        a = zarr.create_array(tmp_path / "p.zarr", shape=(4,), chunks=(2,), dtype="int8")
    assert isinstance(a._async_array.codec_pipeline, cls), _broke("zarr", "codec_pipeline.path")


def test_reset_zarr_config_lock():
    holder = zarr.config.config_lock
    assert hasattr(holder, "lock"), _broke("donfig", "zarr.config.config_lock.lock (donfig's SerializableLock)")
    original = holder.lock
    original.acquire()  # as a parent's thread inside ``zarr.config.set`` at a fork would hold it
    try:
        assert _compat.reset_zarr_config_lock(), _broke("donfig", "how zarr.config.config_lock is held")
        assert holder.lock is not original
        with zarr.config.set({"array.order": "C"}):  # the fresh lock is free
            pass
    finally:
        original.release()
        holder.lock = original
    assert not _compat.reset_zarr_config_lock()  # not held: left alone
    assert holder.lock is original


# -- anndata ----------------------------------------------------------------------------------------
def test_anndata_io_registry_error(tmp_path):
    import anndata as ad

    try:
        error = _compat.anndata_io_registry_error()
    except ImportError as e:
        pytest.fail(_broke("anndata", f"anndata._io.specs.registry.IORegistryError ({e})"))
    g = zarr.open_group(tmp_path / "e.zarr", mode="w")
    g.create_group("x").attrs.update({"encoding-type": "no-such-encoding", "encoding-version": "0.1.0"})
    with pytest.raises(error):
        ad.io.read_elem(g["x"])


# -- lamindb and lamindb-setup ----------------------------------------------------------------------
def test_lamindb_tracked_run():
    pytest.importorskip("lamindb")
    import lamindb.core._functions as functions

    assert callable(getattr(functions, "get_current_tracked_run", None)), _broke(
        "lamindb", "lamindb.core._functions.get_current_tracked_run"
    )
    assert _compat.lamindb_tracked_run() is None  # outside a flow or step


def test_set_run_status():
    ln = pytest.importorskip("lamindb")
    fields = {f.name for f in ln.Run._meta.get_fields()}
    assert "_status_code" in fields, _broke("lamindb", "the Run._status_code field")

    class Run:
        _status_code = None

    run = Run()
    _compat.set_run_status(run, ok=False)
    assert run._status_code == 1
    _compat.set_run_status(run, ok=True)
    assert run._status_code == 0


def test_instance_settings_file(tmp_path):
    pytest.importorskip("lamindb_setup")
    try:
        path = _compat.instance_settings_file("inst", "owner")
    except (ImportError, TypeError) as e:
        pytest.fail(_broke("lamindb-setup", f"lamindb_setup.core._settings_store.instance_settings_file ({e})"))
    assert "inst" in str(path) and str(path).endswith(".env"), _broke("lamindb-setup", "the instance settings file")


def test_instance_settings_class():
    pytest.importorskip("lamindb_setup")
    cls = _compat.instance_settings_class()
    assert cls is not None, _broke("lamindb-setup", "lamindb_setup.core._settings_instance.InstanceSettings")
    prop = cls.__dict__.get("is_on_hub")
    assert isinstance(prop, property) and prop.fget is not None, _broke("lamindb-setup", "InstanceSettings.is_on_hub")


def test_is_on_hub_cache():
    pytest.importorskip("lamindb_setup")
    cls = _compat.instance_settings_class()
    source = inspect.getsource(inspect.unwrap(cls.__dict__["is_on_hub"].fget))
    # annshard's wrapper relies on the property caching its answer in ``_is_on_hub`` (None until known)
    assert "self._is_on_hub" in source, _broke("lamindb-setup", "InstanceSettings.is_on_hub's cache (_is_on_hub)")
    assert "_is_on_hub" in inspect.getsource(cls.__init__), _broke("lamindb-setup", "InstanceSettings._is_on_hub")

    class Settings:
        _is_on_hub = None

    assert _compat.is_on_hub_cache(Settings()) is None


def test_set_is_on_hub_cache():
    pytest.importorskip("lamindb_setup")
    cls = _compat.instance_settings_class()
    source = inspect.getsource(inspect.unwrap(cls.__dict__["is_on_hub"].fget))
    # a cached answer is returned as it is: setting the cache answers the property without asking the hub
    assert re.search(r"if self\._is_on_hub is (not )?None", source), _broke(
        "lamindb-setup", "how InstanceSettings.is_on_hub uses its cache"
    )
    s = object.__new__(cls)
    _compat.set_is_on_hub_cache(s, False)
    assert s.is_on_hub is False, _broke("lamindb-setup", "InstanceSettings.is_on_hub with a cached answer")


def test_artifact_storage_key():
    pytest.importorskip("lamindb")

    class Artifact:  # the fields auto_storage_key_from_artifact reads
        _real_key = None
        key = "annshard/k/fp.zarr/shard-00000.zarr"
        _key_is_virtual = False
        uid = "a" * 20
        suffix = ".zarr"
        overwrite_versions = True

    try:
        assert _compat.artifact_storage_key(Artifact()) == Artifact.key
        Artifact._key_is_virtual = True
        assert _compat.artifact_storage_key(Artifact()) == ".lamindb/" + "a" * 16 + ".zarr"
    except (ImportError, AttributeError) as e:
        pytest.fail(_broke("lamindb", f"lamindb.core.storage.paths.auto_storage_key_from_artifact ({e})"))
