"""Storage choices the writer makes by default, and the ones a caller can override."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import zarr

import annshard
from annshard.testing import make_adata


def _codec_names(coll, array: str) -> list[str]:
    codecs = zarr.open_array(coll.shard_path(0) / "X" / array).metadata.codecs
    inner = getattr(codecs[0], "codecs", codecs)
    return [type(c).__name__ for c in inner]


@pytest.fixture
def adata():
    a = make_adata(120, 50, nnz_per_cell=9, seed=4)
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    return a


def test_default_gene_indices_and_counts_are_uncompressed(tmp_path, adata, roundtrip):
    coll = annshard.write_collection({"a": adata}, tmp_path / "c.zarr")
    assert coll.manifest.storage.indices_codec == "none"
    assert "BloscCodec" not in _codec_names(coll, "indices")
    assert "BloscCodec" not in _codec_names(coll, "data")  # uint16 counts, uncompressed (counts_codec="none")
    roundtrip(coll, {"a": adata})


def test_compressed_gene_indices_on_request(tmp_path, adata, roundtrip):
    coll = annshard.write_collection({"a": adata}, tmp_path / "c.zarr", storage={"indices_codec": None})
    assert coll.manifest.storage.indices_codec is None
    assert "BloscCodec" in _codec_names(coll, "indices")
    roundtrip(coll, {"a": adata})
    loader = annshard.Loader(coll, batch_size=40, chunk_size=4, preload_nchunks=5)
    assert sum(b.n_obs for b in loader) == adata.n_obs


def test_normalised_values_and_counts_uncompressed_either_compressed_on_request(tmp_path, adata, roundtrip):
    norm = adata.copy()
    norm.X = norm.X.copy()
    norm.X.data = np.log1p(norm.X.data * 1.37).astype(np.float32)  # non-integer values
    coll = annshard.write_collection({"a": norm}, tmp_path / "n.zarr")
    assert coll.manifest.storage.values_codec == "none" and coll.manifest.storage.counts_dtype is None
    assert "BloscCodec" not in _codec_names(coll, "data")
    roundtrip(coll, {"a": norm})
    counts = annshard.write_collection({"a": adata}, tmp_path / "k.zarr")
    assert counts.manifest.storage.counts_dtype is not None and "BloscCodec" not in _codec_names(counts, "data")
    lz4 = annshard.write_collection({"a": adata}, tmp_path / "z.zarr", storage={"counts_codec": None})
    assert lz4.manifest.storage.counts_codec is None and "BloscCodec" in _codec_names(lz4, "data")
    roundtrip(lz4, {"a": adata})
    packed = annshard.write_collection({"a": norm}, tmp_path / "p.zarr", storage={"values_codec": None})
    assert packed.manifest.storage.values_codec is None and "BloscCodec" in _codec_names(packed, "data")
    roundtrip(packed, {"a": norm})
    with pytest.raises(ValueError, match="values_codec"):
        annshard.write_collection({"a": norm}, tmp_path / "b.zarr", storage={"values_codec": "zstd"})


def test_bad_indices_codec(tmp_path, adata):
    with pytest.raises(ValueError, match="indices_codec"):
        annshard.write_collection({"a": adata}, tmp_path / "c.zarr", storage={"indices_codec": "zstd"})
