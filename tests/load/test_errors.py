"""Bad input and damaged collections: clear errors, never a hang or silently skipped rows."""

from __future__ import annotations

import shutil

import pytest

import annshard
from annshard import CollectionFormatError, CorruptShardError
from annshard._load._fetch import BlockReader

from .conftest import build_collection

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sizes(coll2, bad):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        annshard.Loader(coll2.path, batch_size=bad)
    with pytest.raises(ValueError, match="chunk_size"):
        annshard.Loader(coll2.path, chunk_size=bad)


def test_bad_choices(coll2):
    with pytest.raises(ValueError, match="output"):
        annshard.Loader(coll2.path, output="pandas")
    with pytest.raises(ValueError, match="unknown sampler 'shuffled'"):
        annshard.Loader(coll2.path, sampler="shuffled")
    with pytest.raises(ValueError, match="WeightedSampler"):
        annshard.Loader(coll2.path, sampler="weighted")
    with pytest.raises(ValueError, match="device"):
        annshard.Loader(coll2.path, device="cuda")


def test_unknown_obs_column(coll2):
    with pytest.raises(KeyError, match=r"'celltype' is not in collection .*c2.zarr; available columns: .*cell_type"):
        annshard.Loader(coll2.path, obs_columns=["celltype"])


def test_unknown_layer(coll2):
    with pytest.raises(
        KeyError, match=r"layer 'counts' is not in collection .*shard-00000.zarr.*available layers: none"
    ):
        annshard.Loader(coll2.path, layer="counts")


def test_not_a_collection(tmp_path):
    with pytest.raises(FileNotFoundError):
        annshard.Loader(tmp_path / "nope.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CollectionFormatError, match="not an annshard collection"):
        annshard.Loader(tmp_path / "empty")


def test_different_genes(coll2, tmp_path):
    other = build_collection(tmp_path / "o.zarr", n_obs=100, n_vars=20, n_shards=1)
    with pytest.raises(ValueError, match="different genes"):
        annshard.Loader([coll2.path, other.path])


def test_missing_shard(tmp_path):
    built = build_collection(tmp_path / "m.zarr", n_obs=200, n_shards=2)
    shutil.rmtree(built.path / "shard-00001.zarr")
    with pytest.raises(CorruptShardError, match=r"m.zarr: shard shard-00001.zarr \(rows 100-199\) is missing"):
        annshard.Loader(built.path)


def test_damaged_obs_column_names_its_shard(tmp_path):
    # the shards' obs columns are read concurrently: the error still names the damaged shard
    built = build_collection(tmp_path / "o.zarr", n_obs=400, n_shards=4)
    shutil.rmtree(built.path / "shard-00002.zarr" / "obs" / "cell_type" / "codes")
    with pytest.raises(CorruptShardError, match=r"o.zarr, shard shard-00002.zarr: cannot read obs column 'cell_type'"):
        annshard.Loader(built.path, obs_columns=["cell_type"])
    loader = annshard.Loader(built.path, obs_columns=["donor"])  # the other columns still load
    assert sum(len(b.obs["donor"]) for b in loader) == 400


@pytest.mark.parametrize(
    ("array", "kwargs"),
    [("data", {}), ("indices", {"indices_codec": "none"})],  # decoded by zarrs; read raw by os.preadv (_store/_raw.py)
)
def test_truncated_chunk_file(tmp_path, array, kwargs):
    built = build_collection(tmp_path / "t.zarr", n_obs=400, n_shards=2, nnz_per_cell=60, **kwargs)
    files = sorted((built.path / "shard-00001.zarr" / "X" / array).rglob("c/*"))
    assert files
    for f in files:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    loader = annshard.Loader(built.path, batch_size=50)
    with pytest.raises(CorruptShardError, match=r"t.zarr, shard shard-00001.zarr rows \d+-\d+.*rewrite the collection"):
        list(loader)


def test_reader_error_reaches_consumer(coll2, monkeypatch):
    calls = {"n": 0}
    original = BlockReader.read

    def flaky(self, chunks, pool=None, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk on fire")
        return original(self, chunks, pool, **kw)

    monkeypatch.setattr(BlockReader, "read", flaky)
    loader = annshard.Loader(coll2.path, batch_size=50, chunk_size=10, preload_nchunks=10)
    with pytest.raises(OSError, match="disk on fire"):
        list(loader)


def test_breaking_early_stops_the_thread(coll2):
    import threading

    loader = annshard.Loader(coll2.path, batch_size=10, chunk_size=5, preload_nchunks=2)
    for _ in range(5):
        it = iter(loader)
        next(it)
        it.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("annshard-")]
