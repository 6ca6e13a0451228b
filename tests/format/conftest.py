"""A small collection (and a second one beside it, that no read may reach) for the format tests."""

from __future__ import annotations

import pytest

from annshard._write import write_collection
from annshard.testing import make_adata


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """3 shards of 100 rows and 30 genes, from two sources; ``other.zarr`` beside it has 300 genes."""
    d = tmp_path_factory.mktemp("format")
    coll = write_collection(
        {"a": make_adata(200, 30, nnz_per_cell=5, seed=1), "b": make_adata(100, 30, nnz_per_cell=5, seed=2)},
        d / "c.zarr",
        n_obs_per_shard=100,
    )
    write_collection([make_adata(100, 300, nnz_per_cell=50, seed=3)], d / "other.zarr")
    return coll.path
