"""Raw counts stored compactly: decided from the values, lossless, invisible to readers."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import zarr

import annshard
from annshard._errors import SourceError
from annshard._write._counts import ValueStats
from annshard.testing import make_adata


def _codecs(coll) -> list[str]:
    codecs = zarr.open_array(coll.shard_path(0) / "X" / "data").metadata.codecs
    inner = getattr(codecs[0], "codecs", codecs)  # inside the sharding codec, when the array is sharded
    return [type(c).__name__ for c in inner]


def _counts(n_obs: int, seed: int, *, scale: float = 1.0) -> ad.AnnData:
    a = make_adata(n_obs, 40, nnz_per_cell=8, seed=seed, obs_prefix=f"s{seed}-")
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    a.X.data = (a.X.data * scale).astype(np.float32)
    return a


def test_whole_numbers_are_stored_as_uint16_and_read_back_as_float32(tmp_path, roundtrip):
    a = _counts(150, 1)
    a.X.data[:3] = [0.0, 65535.0, 4096.0]  # the edges of uint16, and an explicit zero
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr", n_obs_per_shard=60)
    assert coll.manifest.storage.counts_dtype == "uint16"
    assert "FixedScaleOffset" in _codecs(coll)
    shard = ad.read_zarr(coll.shard_path(0))
    assert shard.X.dtype == np.float32  # readers see the source dtype
    roundtrip(coll, {"a": a})
    loader = annshard.Loader(coll, batch_size=50, chunk_size=5, preload_nchunks=4, sampler="sequential")
    got = sp.vstack([b.X for b in loader])
    assert got.dtype == np.float32
    assert got.sum() == pytest.approx(float(a.X.sum()))


@pytest.mark.parametrize(
    ("change", "why"),
    [(lambda d: d * 0.5, "fractions"), (lambda d: d + 70000, "above uint16"), (lambda d: -d, "negative")],
)
def test_other_values_are_stored_as_they_are(tmp_path, roundtrip, change, why):
    a = _counts(80, 2)
    a.X.data = change(a.X.data).astype(np.float32)
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr")
    assert coll.manifest.storage.counts_dtype is None, why
    assert "FixedScaleOffset" not in _codecs(coll)
    roundtrip(coll, {"a": a})


def test_nan_is_not_a_count(tmp_path):
    a = _counts(50, 3)
    a.X.data[5] = np.nan
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr")
    assert coll.manifest.storage.counts_dtype is None
    assert np.isnan(ad.read_zarr(coll.shard_path(0)).X.data).sum() == 1


def test_opt_out_and_explicit_uint8(tmp_path, roundtrip):
    a = _counts(60, 4)
    off = annshard.write_collection({"a": a}, tmp_path / "off.zarr", storage={"counts_dtype": None})
    assert off.manifest.storage.counts_dtype is None
    small = _counts(60, 5)
    small.X.data = np.minimum(small.X.data, 255).astype(np.float32)
    u8 = annshard.write_collection({"s": small}, tmp_path / "u8.zarr", storage={"counts_dtype": "uint8"})
    assert u8.manifest.storage.counts_dtype == "uint8"
    roundtrip(u8, {"s": small})


def test_explicit_dtype_that_cannot_hold_the_values_names_the_source(tmp_path):
    a = _counts(60, 6)
    a.X.data[0] = 300.0
    with pytest.raises(SourceError, match=r"'big'.*from \d+ to 300.*uint8"):
        annshard.write_collection({"big": a}, tmp_path / "c.zarr", storage={"counts_dtype": "uint8"})
    assert not (tmp_path / "c.zarr").exists()  # nothing half-written


@pytest.mark.parametrize("bad", ["int16", "uint32", "float16", "counts"])
def test_bad_counts_dtype(tmp_path, bad):
    with pytest.raises((ValueError, TypeError), match="counts_dtype|data type"):
        annshard.write_collection({"a": _counts(20, 7)}, tmp_path / "c.zarr", storage={"counts_dtype": bad})


def test_dense_collections_never_store_counts(tmp_path):
    a = _counts(30, 8)
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr", dense=True)
    assert coll.manifest.storage.counts_dtype is None


@pytest.mark.parametrize("dtype", ["int32", "int64", "float64"])
def test_other_dtypes_are_stored_as_counts(tmp_path, roundtrip, dtype):
    a = _counts(70, 9)
    a.X = a.X.astype(dtype)
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr")
    assert coll.manifest.storage.data_dtype == dtype
    assert coll.manifest.storage.counts_dtype == "uint16"
    roundtrip(coll, {"a": a})
    loader = annshard.Loader(coll, batch_size=30, chunk_size=3, preload_nchunks=4)
    assert {b.X.dtype for b in loader} == {np.dtype(dtype)}  # zarrs reads it (a fallback to zarr would warn)


def test_append_to_counts_collection_refuses_non_counts_and_changes_nothing(tmp_path, roundtrip):
    a = _counts(90, 10)
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr", n_obs_per_shard=45)
    before = coll.manifest
    normalised = _counts(40, 11, scale=0.37)
    with pytest.raises(SourceError, match=r"'norm'.*not whole numbers.*counts_dtype"):
        annshard.append_collection(coll, {"norm": normalised})
    again = annshard.open_collection(coll.path)
    assert again.manifest == before
    assert sorted(p.name for p in coll.path.iterdir() if p.name.startswith("shard-")) == [s.name for s in before.shards]
    more = _counts(40, 12)
    coll = annshard.append_collection(coll, {"more": more})
    roundtrip(coll, {"a": a, "more": more})


def test_value_stats():
    st = ValueStats()
    st.update(np.array([0, 3, 7], dtype=np.float32))
    st.update(np.array([], dtype=np.float32))
    assert st.fits(np.dtype(np.uint8)) and (st.lo, st.hi) == (0, 7)
    st.update(np.array([1000], dtype=np.float64))
    assert st.fits(np.dtype(np.uint16)) and not st.fits(np.dtype(np.uint8))
    st.update(np.array([np.inf], dtype=np.float32))
    assert not st.whole and "not whole" in st.describe()
    assert ValueStats().fits(np.dtype(np.uint8))  # no values at all


# -- compact bucket values (annshard._write._compact): counts travel as uint16 through the bucket files ------------
def _record_mixed_parts(monkeypatch) -> list[str]:
    """Record the values files (``<prefix>``) of the buckets the gather loads from a part with both kinds of file."""
    from annshard._write import _gather

    mixed: list[str] = []
    load = _gather.load_values

    def recorded(layout, k, prefix, dtype, nnz):
        for part in layout.workdir.iterdir():
            if (part / f"{k:05d}.{prefix}data.u16").exists() and (part / f"{k:05d}.{prefix}data").exists():
                mixed.append(prefix)
        return load(layout, k, prefix, dtype, nnz)

    monkeypatch.setattr(_gather, "load_values", recorded)
    return mixed


@pytest.mark.parametrize(
    ("change", "why"), [(lambda d: d * 0.5, "fractions"), (lambda d: d + 70000, "above uint16")], ids=["frac", "big"]
)
def test_a_part_whose_later_rows_are_not_counts(tmp_path, roundtrip, monkeypatch, change, why):
    a, b = _counts(200, 4), _counts(200, 5)
    late = b.X.indptr[150]  # rows 150- of b are not counts: b's first blocks were written compact
    b.X.data[late:] = change(b.X.data[late:]).astype(np.float32)
    mixed = _record_mixed_parts(monkeypatch)
    coll = annshard.write_collection({"a": a, "b": b}, tmp_path / "c.zarr", memory_budget=20_000, n_obs_per_shard=90)
    assert set(mixed) == {""}, why  # b's part of X: compact values, then the others
    assert coll.manifest.storage.counts_dtype is None
    roundtrip(coll, {"a": a, "b": b})


def test_compact_counts_layer_beside_normalised_x(tmp_path, roundtrip, monkeypatch):
    a = _counts(120, 6)
    a.layers["counts"] = a.X.copy()
    a.layers["counts"].data[-1] = 0.25  # the layer's last block is not counts
    a.X = a.X.copy()
    a.X.data = np.log1p(a.X.data).astype(np.float32)
    mixed = _record_mixed_parts(monkeypatch)
    coll = annshard.write_collection({"a": a}, tmp_path / "c.zarr", layers=["counts"], memory_budget=20_000)
    assert set(mixed) == {
        "m0."
    }  # X never compact (normalised: its first block is not counts); the layer until its last
    assert coll.manifest.matrices[0].storage.counts_dtype is None and coll.manifest.storage.counts_dtype is None
    roundtrip(coll, {"a": a})
