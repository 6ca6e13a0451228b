"""The store's safety: overwrite replaces only a collection, appends are serialised, an interrupted overwrite is recovered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import annshard
from annshard._cli import main
from annshard._errors import CollectionLockedError, OverwriteRefusedError
from annshard._store._lock import LOCK_NAME
from annshard._write import append_collection, write_collection
from annshard.testing import make_adata


@pytest.fixture(scope="module")
def h5ads(tmp_path_factory):
    """A base source (2,000 rows) and two append sources (6,000 rows each): 14,000 rows in all."""
    d = tmp_path_factory.mktemp("safety")
    paths = []
    for i, n in enumerate((2000, 6000, 6000)):
        p = d / f"s{i}.h5ad"
        make_adata(n, 40, nnz_per_cell=4, seed=i, obs_prefix=f"s{i}-").write_h5ad(p)
        paths.append(p)
    return paths


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# -- 1. overwrite replaces only a collection --------------------------------------------------------------------------
def test_cli_overwrite_of_the_sources_folder_deletes_nothing(tmp_path, h5ads, capsys):
    data = tmp_path / "data"
    data.mkdir()
    src = data / "a.h5ad"
    src.write_bytes(h5ads[0].read_bytes())
    rc = main(["convert", str(src), "-o", str(data), "--overwrite", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "holds the source" in err and str(data) in err
    assert src.read_bytes() == h5ads[0].read_bytes()
    assert sorted(p.name for p in data.iterdir()) == ["a.h5ad"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_overwrite_of_a_source_itself_is_refused_before_reading(tmp_path, h5ads):
    src = tmp_path / "a.h5ad"
    src.write_bytes(h5ads[0].read_bytes())
    link = tmp_path / "link.h5ad"
    link.symlink_to(src)
    for out in (src, link):
        with pytest.raises(OverwriteRefusedError, match="is one of the sources"):
            write_collection([link], out, overwrite=True)
    zarr_src = tmp_path / "x.zarr"
    make_adata(50, 10, nnz_per_cell=2).write_zarr(zarr_src)
    with pytest.raises(OverwriteRefusedError, match="is one of the sources"):
        write_collection([zarr_src], zarr_src, overwrite=True)
    with pytest.raises(OverwriteRefusedError, match="lies inside the source"):
        write_collection([zarr_src], zarr_src / "coll.zarr")
    assert src.read_bytes() == h5ads[0].read_bytes()
    import anndata as ad

    assert ad.read_zarr(zarr_src).n_obs == 50


def test_overwrite_of_a_plain_directory_or_file_is_refused(tmp_path, h5ads):
    plain = tmp_path / "results"
    plain.mkdir()
    (plain / "notes.txt").write_text("keep me")
    with pytest.raises(OverwriteRefusedError, match="non-empty directory that is not an annshard or annbatch"):
        write_collection([h5ads[0]], plain, overwrite=True)
    assert (plain / "notes.txt").read_text() == "keep me"
    f = tmp_path / "file.zarr"
    f.write_text("not a collection")
    with pytest.raises(OverwriteRefusedError, match="is a file"):
        write_collection([h5ads[0]], f, overwrite=True)
    assert f.read_text() == "not a collection"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.zarr", "results"]
    # an empty directory and an existing collection may be replaced
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    assert write_collection([h5ads[0]], empty, overwrite=True).n_obs == 2000
    assert write_collection([h5ads[1]], empty, overwrite=True).n_obs == 6000


def test_append_of_a_source_inside_the_collection_is_refused(tmp_path, h5ads):
    coll = write_collection([h5ads[0]], tmp_path / "c.zarr")
    inside = coll.path / "extra.h5ad"
    inside.write_bytes(h5ads[1].read_bytes())
    with pytest.raises(OverwriteRefusedError, match="lies inside the collection"):
        append_collection(coll.path, [inside])
    assert annshard.open_collection(coll.path).n_obs == 2000


# -- 2. appends are serialised ----------------------------------------------------------------------------------------
_APPEND = "import sys; from annshard._write import append_collection; append_collection(sys.argv[1], [sys.argv[2]], lock_timeout=float(sys.argv[3]))"


def _start_append(coll, src, *, pause: float = 0.0, timeout: float = 120.0) -> subprocess.Popen:
    env = dict(os.environ)
    if pause:
        env["ANNSHARD_TEST_PAUSE_APPEND"] = str(pause)
    return subprocess.Popen(
        [sys.executable, "-c", _APPEND, str(coll), str(src), str(timeout)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_holder(coll, pid: int, proc: subprocess.Popen, limit: float = 120.0) -> None:
    lock = coll / LOCK_NAME
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if lock.is_file() and f"pid {pid} " in lock.read_text():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail("the append never took the lock")


def _rows_by_source(coll) -> dict[str, int]:
    import anndata as ad

    counts: dict[str, int] = {}
    for i in range(len(coll.shards)):
        obs = ad.io.read_elem(coll.shard_group(i)["obs"])
        for name, n in obs["source"].value_counts().items():
            counts[str(name)] = counts.get(str(name), 0) + int(n)
    return counts


def test_two_racing_appends_keep_every_row(tmp_path, h5ads):
    """B reads the manifest and pauses; A starts meanwhile. Old code: A's shards deleted, 12,000 of 14,000 rows."""
    path = write_collection([h5ads[0]], tmp_path / "c.zarr").path
    b = _start_append(path, h5ads[1], pause=4)
    _wait_for_holder(path, b.pid, b)
    a = _start_append(path, h5ads[2])
    # a third writer that does not want to wait is refused at once, naming the holder
    with pytest.raises(CollectionLockedError, match=rf"pid {b.pid} on host .* append since"):
        append_collection(path, [h5ads[2]], lock_timeout=0)
    for p in (b, a):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    coll = annshard.open_collection(path)
    assert coll.n_obs == 14000
    assert _rows_by_source(coll) == {"s0.h5ad": 2000, "s1.h5ad": 6000, "s2.h5ad": 6000}
    assert [s.name for s in coll.sources] == ["s0.h5ad", "s1.h5ad", "s2.h5ad"]
    listed = {s.name for s in coll.shards}
    assert {p.name for p in path.glob("shard-*.zarr")} == listed
    loader = annshard.Loader(coll, batch_size=1000, chunk_size=50, preload_nchunks=8)
    index = np.concatenate([b.index for b in loader])
    assert np.array_equal(np.sort(index), np.arange(14000))


def test_a_killed_holder_releases_the_lock(tmp_path, h5ads):
    path = write_collection([h5ads[0]], tmp_path / "c.zarr").path
    holder = _start_append(path, h5ads[1], pause=60)
    _wait_for_holder(path, holder.pid, holder)
    with pytest.raises(CollectionLockedError, match=rf"pid {holder.pid}"):
        append_collection(path, [h5ads[2]], lock_timeout=0.2)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    coll = append_collection(path, [h5ads[2]], lock_timeout=10)
    assert coll.n_obs == 8000
    assert _rows_by_source(coll) == {"s0.h5ad": 2000, "s2.h5ad": 6000}


def test_leftovers_never_collide_with_the_next_shard(tmp_path, h5ads):
    """Old code: an append dir with a live pid stopped the cleanup, and the rename died with OSError [Errno 39]."""
    path = write_collection([h5ads[0]], tmp_path / "c.zarr").path
    n = len(annshard.open_collection(path).shards)
    busy = path / f".annshard-append-{os.getpid()}-0badc0de"
    busy.mkdir()
    orphan = path / f"shard-{n:05d}.zarr"
    orphan.mkdir()
    (orphan / "zarr.json").write_text("{}")
    coll = append_collection(path, [h5ads[1]])
    assert coll.n_obs == 8000
    assert not busy.exists()
    assert _rows_by_source(coll) == {"s0.h5ad": 2000, "s1.h5ad": 6000}


# -- 5. overwrite is recoverable --------------------------------------------------------------------------------------
def test_open_restores_a_collection_hidden_by_a_killed_overwrite(tmp_path, h5ads):
    path = write_collection([h5ads[0]], tmp_path / "c.zarr").path
    before = annshard.open_collection(path).manifest
    hidden = tmp_path / f".c.zarr.annshard-old-{_dead_pid()}-0123abcd"
    os.rename(path, hidden)  # the state a kill between the two renames of an overwrite leaves
    coll = annshard.open_collection(path)
    assert coll.manifest == before
    assert not hidden.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]


def test_open_says_where_the_hidden_collection_is_while_its_writer_lives(tmp_path, h5ads):
    path = write_collection([h5ads[0]], tmp_path / "c.zarr").path
    hidden = tmp_path / f".c.zarr.annshard-old-{os.getpid()}-0123abcd"
    os.rename(path, hidden)
    with pytest.raises(FileNotFoundError, match=rf"previous collection is at {hidden}.*mv {hidden} {path}"):
        annshard.open_collection(path)
    assert hidden.is_dir()
