"""The writer's data flow goes one way: a frozen plan in, each pass returns what it learned."""

from __future__ import annotations

import dataclasses

import pytest

from annshard._store._manifest import ShardInfo
from annshard._write._layout import plan_layout
from annshard._write._matrices import plan_matrices
from annshard._write._passes import run_passes
from annshard._write._plan import plan_genes, plan_obs
from annshard._write._sources import open_sources
from annshard._write._spec import auto_spec
from annshard.testing import make_adata


def _plan(tmp_path, sources):
    srcs = open_sources(sources)
    genes = plan_genes(srcs, "inner")
    columns = plan_obs(srcs, None, max_categories=10_000, obs_conflicts="raise")
    spec = auto_spec(srcs, genes.n_vars, None, None)
    matrices = plan_matrices(srcs, layers=["counts"], obsm=None, n_vars=genes.n_vars, x_spec=spec)
    return plan_layout(
        srcs,
        genes,
        columns,
        spec,
        budget=10**6,
        n_obs_per_shard=40,
        max_shard_rows=None,
        seed=0,
        generation=0,
        source_names=[s.name for s in srcs],
        workdir=tmp_path / "work",
        matrices=matrices,
    )


def test_the_passes_leave_the_plan_as_it_was_and_return_the_settled_storage(tmp_path):
    a = make_adata(70, 30, nnz_per_cell=6, seed=0, obs_prefix="a")  # whole-number counts
    a.layers["counts"] = a.X.copy()
    layout = _plan(tmp_path, {"a": a})
    before = dataclasses.replace(layout)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.spec = layout.spec  # type: ignore[misc]
    written = run_passes(layout, tmp_path / "out", first_shard=3, show_progress=False)
    assert layout == before
    # the plan still says "decide from the values"; what the values allowed comes back from the passes
    assert layout.spec.counts_dtype == "auto" and layout.matrices[0].spec.storage.counts_dtype == "auto"
    assert written.stored.storage.counts_dtype == "uint16"
    assert written.stored.matrices[0].storage.counts_dtype == "uint16"
    assert written.shards == (
        ShardInfo("shard-00003.zarr", 35, written.shards[0].nnz, 0),
        ShardInfo("shard-00004.zarr", 35, written.shards[1].nnz, 0),
    )
    assert sum(s.nnz for s in written.shards) == a.X.nnz
    assert not layout.workdir.exists()


def test_fractional_values_settle_to_no_counts(tmp_path):
    a = make_adata(50, 30, nnz_per_cell=6, seed=1, obs_prefix="a")
    a.X = a.X * 0.5
    a.layers["counts"] = make_adata(50, 30, nnz_per_cell=6, seed=2).X
    written = run_passes(_plan(tmp_path, {"a": a}), tmp_path / "out", first_shard=0, show_progress=False)
    assert written.stored.storage.counts_dtype is None
    assert written.stored.matrices[0].storage.counts_dtype == "uint16"
