from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import annshard
from annshard._write._buckets import encode_strings
from annshard._write._gather import decode_strings, take_rows
from annshard._write._memory import parse_bytes, shard_sizes
from annshard._write._scatter import _draw
from annshard.testing import make_adata


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=40))
def test_strings_round_trip(values):
    arr = np.array(values + ["x"], dtype=object)[:-1] if values else np.empty(0, dtype=object)
    blob, lengths = encode_strings(arr)
    assert list(decode_strings(blob, lengths)) == values


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 60), st.integers(1, 30), st.integers(0, 2**31))
def test_take_rows_matches_scipy(n, m, seed):
    rng = np.random.default_rng(seed)
    X = sp.random(n, m, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    rows = rng.permutation(n)
    got = take_rows(X.data, X.indices.astype(np.uint16), X.indptr, rows, m)
    assert got.indices.dtype == np.uint16
    np.testing.assert_array_equal(got.toarray(), X[rows].toarray())


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=12), st.integers(0, 2**31))
def test_hypergeometric_draws_respect_capacities(colors, seed):
    colors = np.asarray(colors, dtype=np.int64)
    n = int(colors.sum()) // 2
    got = _draw(np.random.default_rng(seed), colors, n)
    assert got.sum() == n and np.all(got <= colors) and np.all(got >= 0)


def test_shard_sizes_and_budget_parsing():
    assert shard_sizes(10, 4) == [4, 3, 3]
    assert shard_sizes(5, 100) == [5]
    assert parse_bytes("1GB") == 10**9 and parse_bytes("16MiB") == 16 * 2**20 and parse_bytes(" 2 gib ") == 2 * 2**30
    with pytest.raises(ValueError, match="not understood"):
        parse_bytes("lots")
    with pytest.raises(ValueError, match="positive"):
        parse_bytes(0)


def test_bad_options(tmp_path):
    a = make_adata(10, 5, nnz_per_cell=2)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        annshard.write_collection([a], tmp_path / "o.zarr", seed=-1)
    with pytest.raises(ValueError, match="join must be"):
        annshard.write_collection([a], tmp_path / "o.zarr", join="left")
    with pytest.raises(ValueError, match="storage has unknown keys"):
        annshard.write_collection([a], tmp_path / "o.zarr", storage={"bogus": 1})
    coll = annshard.write_collection([a], tmp_path / "o.zarr", storage={"codec": "zstd", "indices_dtype": "int32"})
    assert coll.manifest.storage.codec == "zstd" and coll.manifest.storage.indices_dtype == "int32"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
