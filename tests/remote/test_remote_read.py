"""annshard's own remote reader (``_store/_remote_read.py``): the local batches, each shard index fetched once, damage named.

The collections have small zarr shards (``shard_elems=256``, ``chunk_elems=64``): every block touches many shard
files, and a row run spans several inner chunks.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import annshard
from annshard._errors import CorruptShardError
from annshard._store._location import location
from annshard._store._upload import upload_collection
from annshard.testing import make_adata

pytest.importorskip("obstore")

ROOT = Path(__file__).resolve().parents[2]
_STORAGE = {"chunk_elems": 64, "shard_elems": 256}
_SETTINGS = [
    {"batch_size": 64, "chunk_size": 8, "preload_nchunks": 4},
    {"batch_size": 100, "chunk_size": 32, "preload_nchunks": 16, "drop_last": False},
]


@dataclass(frozen=True)
class Pair:
    local: Path
    url: str


def _write(d: Path, name: str, *, values: bool, counts_codec: str | None = "none") -> Path:
    files = []
    for i, n in enumerate((260, 240)):
        a = make_adata(n, 90, nnz_per_cell=15, seed=20 + i)
        if values:  # normalised, non-integer values: stored as float32, not as counts
            a.X = a.X * np.float32(0.37)
        files.append(d / f"{name}-{i}.h5ad")
        a.write_h5ad(files[-1])
    return annshard.write_collection(
        files,
        d / f"{name}.zarr",
        seed=4,
        n_obs_per_shard=170,
        storage={**_STORAGE, "counts_codec": counts_codec},
        obs_columns=["cell_type"],
    ).path


@pytest.fixture(scope="module")
def pairs(s3_server, tmp_path_factory) -> dict[str, Pair]:
    d = tmp_path_factory.mktemp("remote-read")
    out = {}
    for kind in ("counts", "values", "counts-lz4"):  # counts: uncompressed by default, lz4 on request
        local = _write(d, kind, values=kind == "values", counts_codec=None if kind == "counts-lz4" else "none")
        url = s3_server.url(f"rr/{kind}.zarr")
        names = [s.name for s in annshard.open_collection(local).shards]
        upload_collection(local, location(url, s3_server.options), names)
        out[kind] = Pair(local, url)
    return out


def _batches(loader):
    return [(b.X.toarray(), list(b.obs["cell_type"]), np.asarray(b.index)) for b in loader]


@pytest.mark.parametrize("kind", ["counts", "values", "counts-lz4"])
@pytest.mark.parametrize("setting", range(len(_SETTINGS)))
def test_remote_reader_yields_the_local_batches(pairs, s3_server, kind, setting):
    pair = pairs[kind]
    kw = {**_SETTINGS[setting], "obs_columns": ["cell_type"], "seed": 9}
    local = annshard.Loader(pair.local, **kw)
    remote = annshard.Loader(pair.url, storage_options=s3_server.options, **kw)
    a, b = _batches(local), _batches(remote)
    assert len(a) == len(b) > 4
    for (xa, ca, ia), (xb, cb, ib) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)
        assert ca == cb
    stored = annshard.open_collection(pair.local).shard_group(0)["X/data"]
    assert stored.shards is not None and stored.shards[0] // stored.chunks[0] == 4
    assert bool(stored.filters) == (kind != "values")  # counts are stored as uint16 (numcodecs.fixedscaleoffset)
    assert bool(stored.compressors) == (kind == "counts-lz4")


def test_each_shard_index_is_fetched_once_per_process(pairs, s3_server):
    sys.path.append(str(ROOT / "benchmarks"))  # appended: its modules must never shadow an installed package
    from remote import ProxyProcess

    proxy = ProxyProcess(int(s3_server.endpoint.rsplit(":", 1)[1]))
    try:
        pair = pairs["counts"]
        via = {"endpoint_url": f"http://127.0.0.1:{proxy.port}"}
        loader = annshard.Loader(pair.url, storage_options=via, batch_size=64, chunk_size=8, preload_nchunks=16, seed=2)
        proxy.reset(0)
        n = [sum(b.X.shape[0] for b in loader) for _ in range(2)]  # two epochs
        log = proxy.log()
    finally:
        proxy.close()
    assert n == [500, 500]
    suffix = [path for method, path, rng in log if method == "GET" and rng.startswith("bytes=-")]
    assert suffix, "no shard index was fetched with a suffix range"
    assert len(suffix) == len(set(suffix))  # each shard file's index once, over both epochs
    files = {p.split("/X/", 1)[1].split("/c/")[0] for p in suffix}
    assert files == {"data", "indices"}
    coll = annshard.open_collection(pair.local)
    n_files = sum(len(list((pair.local / s.name / "X" / el / "c").iterdir())) for s in coll.shards for el in files)
    assert len(suffix) == n_files
    assert not [
        p for m, p, _ in log if m == "HEAD" and ("/X/data/" in p or "/X/indices/" in p)
    ]  # no HEAD per shard file


def _damaged(pairs, s3_server, name: str, damage) -> str:
    """A copy of the counts collection at ``rr/<name>.zarr`` with ``damage(bytes)`` applied to one X/data shard file."""
    src = location(pairs["counts"].url, s3_server.options)
    dest = location(s3_server.url(f"rr/{name}.zarr"), s3_server.options)
    target = "shard-00001.zarr/X/data/c/1"
    for key in src.list():
        raw = src.get(key)
        dest.put(key, damage(raw) if key == target else raw)
    return dest.url


@pytest.mark.parametrize(
    ("name", "damage", "why"),
    [
        ("bad-crc", lambda raw: raw[:-1] + bytes([raw[-1] ^ 0xFF]), "CRC32C mismatch"),
        ("truncated", lambda raw: raw[: len(raw) // 2], "truncated|CRC32C"),
    ],
)
def test_damaged_remote_shard_is_named(pairs, s3_server, name, damage, why):
    url = _damaged(pairs, s3_server, name, damage)
    loader = annshard.Loader(url, storage_options=s3_server.options, batch_size=500, chunk_size=500, preload_nchunks=1)
    with pytest.raises(CorruptShardError, match=rf"shard-00001\.zarr.*(?:{why})"):
        for _ in loader:
            pass


def test_unsupported_codec_falls_back_to_zarrs(s3_server, tmp_path):
    """An array whose codecs this reader does not decode is read through zarrs, with the same values."""
    import zarr

    from annshard._config import zarr_config
    from annshard._load._fetch import DirectRuns, _runs_reader
    from annshard._store._remote_read import RemoteRuns

    values = np.arange(1000, dtype=np.float32)
    store = location(s3_server.url("rr/raw.zarr"), s3_server.options).zarr_store(read_only=False)
    with zarr_config():
        arr = zarr.create_array(
            store,
            name="a",
            shape=(1000,),
            dtype="float32",
            chunks=(50,),
            shards=(200,),
            compressors=[zarr.codecs.ZstdCodec()],
            filters=[zarr.codecs.TransposeCodec(order=(0,))],
        )
        arr[...] = values
        reader = _runs_reader(arr)
        assert not isinstance(reader, RemoteRuns) and isinstance(reader, DirectRuns | type(None))
        plain = zarr.create_array(store, name="b", shape=(1000,), dtype="float32", chunks=(50,), shards=(200,))
        plain[...] = values
        ours = _runs_reader(plain)
        assert isinstance(ours, RemoteRuns)
        out = np.empty(230, dtype=np.float32)
        ours.read(np.array([[5, 185], [940, 990]], dtype=np.int64), out)
    np.testing.assert_array_equal(out, np.concatenate([values[5:185], values[940:990]]))


def test_requests_in_flight_setting(monkeypatch):
    from annshard._store._remote_read import DEFAULT_REQUESTS, max_requests

    monkeypatch.delenv("ANNSHARD_REMOTE_REQUESTS", raising=False)
    assert max_requests() == DEFAULT_REQUESTS
    monkeypatch.setenv("ANNSHARD_REMOTE_REQUESTS", "8")
    assert max_requests() == 8
    monkeypatch.setenv("ANNSHARD_REMOTE_REQUESTS", "0")
    with pytest.raises(ValueError, match=r"ANNSHARD_REMOTE_REQUESTS='0': expected a positive integer"):
        max_requests()
