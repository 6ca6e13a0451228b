"""Collections written by annbatch open and load."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import zarr

import annshard
from annshard.testing import write_h5ads

annbatch = pytest.importorskip("annbatch")


@pytest.fixture(scope="module")
def ab_collection(tmp_path_factory):
    d = tmp_path_factory.mktemp("annbatch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # annbatch/anndata/dask emit deprecation and performance warnings here
        paths = write_h5ads(d / "in", [600, 500], n_vars=100, nnz_per_cell=20)
        with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
            annbatch.DatasetCollection(d / "ab.zarr").add_adatas(
                paths, shuffle=True, dataset_size=400, shuffle_chunk_size=50, n_obs_per_chunk=16, shard_size=200
            )
        full = ad.concat([ad.read_zarr(d / "ab.zarr" / f"dataset_{i}") for i in range(3)])
    return d / "ab.zarr", full


def test_open_and_load_annbatch_collection(ab_collection):
    path, full = ab_collection
    coll = annshard.open_collection(path)
    assert coll.origin == "annbatch"
    assert coll.n_obs == 1100 and coll.n_vars == 100 and len(coll.shards) == 3
    assert coll.obs_columns["cell_type"].kind == "categorical"
    loader = annshard.Loader(coll, batch_size=128, chunk_size=16, obs_columns=["cell_type", "n_genes"])
    cats = np.asarray(loader.categories["cell_type"], dtype=object)
    seen = []
    for batch in loader:
        assert (batch.X != full.X[batch.index]).nnz == 0
        np.testing.assert_array_equal(cats[batch.obs["cell_type"]], full.obs["cell_type"].to_numpy()[batch.index])
        np.testing.assert_array_equal(batch.obs["n_genes"], full.obs["n_genes"].to_numpy()[batch.index])
        seen.append(batch.index)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(1100))


def test_annbatch_marker_without_datasets(tmp_path):
    zarr.open_group(tmp_path / "e.zarr", mode="w").attrs.update(
        {"encoding-type": "annbatch-preshuffled", "encoding-version": "0.1.0"}
    )
    with pytest.raises(annshard.CollectionFormatError, match="without datasets"):
        annshard.open_collection(tmp_path / "e.zarr")
