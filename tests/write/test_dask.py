"""Conversion on dask.distributed: byte-identical to the single-process writer, a small task graph."""

from __future__ import annotations

import shutil

import pytest

import annshard
from annshard._write import _dask
from annshard.testing import assert_identical_collections, make_adata

distributed = pytest.importorskip("distributed")

BUDGET = "3MB"  # several shards, several blocks per source
STORAGE = {"chunk_elems": 2048, "shard_elems": 2**18}


@pytest.fixture
def client2(dask_client):
    """The session's two-worker client (``tests/conftest.py``: one cluster for every dask test file), both workers up."""
    dask_client.wait_for_workers(2, timeout=60)
    return dask_client


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask-sources")
    specs = [(2100, 0, "a"), (1300, 40, "b"), (900, 15, "c")]
    paths = []
    for j, (n, off, prefix) in enumerate(specs):
        a = make_adata(n, 400, nnz_per_cell=60, seed=10 + j, gene_offset=off, obs_prefix=prefix)
        a.write_h5ad(d / f"{prefix}.h5ad")
        paths.append(d / f"{prefix}.h5ad")
    return paths


def _write(paths, out, **kw):
    return annshard.write_collection(paths, out, seed=7, memory_budget=BUDGET, storage=STORAGE, **kw)


@pytest.mark.parametrize("join", ["inner", "outer"])
def test_two_workers_write_the_single_process_collection(sources, tmp_path, client2, join):
    ref = _write(sources, tmp_path / "ref.zarr", join=join)
    got = _write(sources, tmp_path / "dask.zarr", join=join, client=client2)
    assert len(ref.shards) > 2
    assert_identical_collections(ref.path, got.path)
    # the graph: tasks per source range and per group of shards, never per row or chunk
    counts = _dask.last_counts
    assert counts is not None
    assert len(sources) <= counts.scatter <= _dask.TASKS_PER_THREAD * 2 + len(sources)
    assert counts.gather == min(len(ref.shards), _dask.TASKS_PER_THREAD * 2)
    # staging is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dask.zarr", "ref.zarr"]


def test_append_on_dask_is_the_single_process_append(sources, tmp_path, client2):
    base = _write(sources[:2], tmp_path / "base.zarr")
    shutil.copytree(base.path, tmp_path / "a.zarr")
    shutil.copytree(base.path, tmp_path / "b.zarr")
    a = annshard.append_collection(tmp_path / "a.zarr", sources[2:], memory_budget=BUDGET)
    b = annshard.append_collection(tmp_path / "b.zarr", sources[2:], memory_budget=BUDGET, client=client2)
    assert len(b.shards) > len(base.shards)
    assert_identical_collections(a.path, b.path)


def test_the_current_client(sources, tmp_path, client2):
    ref = _write(sources, tmp_path / "ref.zarr")
    with client2.as_current():
        got = _write(sources, tmp_path / "dask.zarr", scheduler="distributed")
    assert_identical_collections(ref.path, got.path)


@pytest.mark.slow  # starts a cluster of its own
def test_cli_convert_on_one_local_worker_and_on_a_scheduler(sources, tmp_path, client2, capsys):
    from annshard._cli import main

    args = [*map(str, sources), "--seed", "7", "--memory-budget", BUDGET, "--quiet", "-o"]
    assert main(["convert", *args, str(tmp_path / "ref.zarr")]) == 0
    assert main(["convert", *args, str(tmp_path / "w1.zarr"), "--workers", "1"]) == 0
    assert main(["convert", *args, str(tmp_path / "s.zarr"), "--scheduler", client2.scheduler.address]) == 0
    assert_identical_collections(tmp_path / "ref.zarr", tmp_path / "w1.zarr")
    assert_identical_collections(tmp_path / "ref.zarr", tmp_path / "s.zarr")
    assert capsys.readouterr().out.count("4300 cells") == 3


def test_partition_does_not_change_the_output(sources, tmp_path):
    """Any cut of the rows into tasks and pieces, run in this process, writes the same collection."""
    from annshard._write import _scatter

    ref = _write(sources, tmp_path / "ref.zarr")
    plan = _scatter.plan_scatter
    try:
        _scatter.plan_scatter = lambda layout, **kw: plan(layout, blocks_per_task=1, piece_rows=[97] * 3)
        got = _write(sources, tmp_path / "cut.zarr")
    finally:
        _scatter.plan_scatter = plan
    assert_identical_collections(ref.path, got.path)


def test_in_memory_sources_and_bad_arguments_are_refused(tmp_path, client2):
    with pytest.raises(ValueError, match="in-memory AnnData"):
        annshard.write_collection([make_adata(50, 30, nnz_per_cell=5)], tmp_path / "x.zarr", client=client2)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="scheduler must be"):
        annshard.write_collection([make_adata(50, 30, nnz_per_cell=5)], tmp_path / "x.zarr", scheduler="threads")
    with pytest.raises(ValueError, match="exceeds a dask worker's memory share"):
        _dask.task_budget(10**9, [{"memory_limit": 2 * 10**9, "nthreads": 4}])


def test_a_source_error_on_a_worker_reaches_the_caller(tmp_path, client2):
    import numpy as np

    from annshard import SourceError

    whole = make_adata(300, 50, nnz_per_cell=8, seed=1, obs_prefix="w")
    half = make_adata(200, 50, nnz_per_cell=8, seed=2, obs_prefix="h")
    half.X = half.X.astype(np.float64)
    half.X.data += 0.5
    whole.write_h5ad(tmp_path / "whole.h5ad")
    half.write_h5ad(tmp_path / "half.h5ad")
    coll = annshard.write_collection([tmp_path / "whole.h5ad"], tmp_path / "c.zarr", storage={"data_dtype": "int32"})
    before = sorted(p.relative_to(coll.path) for p in coll.path.rglob("*"))
    with pytest.raises(SourceError, match="half.h5ad"):
        annshard.append_collection(coll, [tmp_path / "half.h5ad"], client=client2)
    assert sorted(p.relative_to(coll.path) for p in coll.path.rglob("*")) == before
