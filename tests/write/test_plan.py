from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import annshard
from annshard import SourceError, VarJoinError
from annshard._write._plan import plan_genes, plan_obs
from annshard._write._sources import open_source
from annshard.testing import make_adata


def _src(a, name="s"):
    return open_source(a, name)


def _ad(genes, n=6, **obs):
    a = make_adata(n, len(genes), nnz_per_cell=2)
    a.var_names = genes
    for k, v in obs.items():
        a.obs[k] = v
    return a


def test_inner_and_outer_gene_order():
    s = [_src(_ad(["c", "a", "b"])), _src(_ad(["b", "d", "c", "e"])), _src(_ad(["f", "c", "b", "d"]))]
    inner = plan_genes(s, "inner")
    assert list(inner.var.index) == ["c", "b"]
    outer = plan_genes(s, "outer")
    assert list(outer.var.index) == ["c", "a", "b", "d", "e", "f"]
    np.testing.assert_array_equal(outer.luts[1], [2, 3, 0, 4])
    assert outer.monotone == [True, False, False]
    assert inner.dropping == [True, True, True]
    assert not outer.dropping[0]


def test_var_columns_are_merged():
    a, b = _ad(["g1", "g2"]), _ad(["g2", "g3"])
    a.var["symbol"] = ["A1", "A2"]
    b.var["symbol"] = ["B2", "B3"]
    b.var["chrom"] = ["1", "2"]
    var = plan_genes([_src(a), _src(b)], "outer").var
    assert list(var["symbol"]) == ["A1", "A2", "B3"]
    assert list(var["chrom"].astype(object).where(var["chrom"].notna(), None)) == [None, "1", "2"]


def test_duplicated_var_names(tmp_path):
    a = _ad(["g1", "g2", "g1"])
    with pytest.raises(
        VarJoinError, match=r"var names are not unique \(1 repeated, e.g. 'g1'\).*var_names_make_unique"
    ):
        annshard.write_collection([a], tmp_path / "o.zarr")
    p = tmp_path / "dup.h5ad"
    a.write_h5ad(p)
    with pytest.raises(VarJoinError, match=r"dup\.h5ad: var names are not unique"):
        annshard.write_collection([p], tmp_path / "o.zarr")


def test_no_common_genes(tmp_path):
    with pytest.raises(VarJoinError, match=r"no gene in common under join='inner'.*join='outer'"):
        annshard.write_collection([_ad(["a", "b"]), _ad(["c", "d"])], tmp_path / "o.zarr")
    coll = annshard.write_collection([_ad(["a", "b"]), _ad(["c", "d"])], tmp_path / "o.zarr", join="outer")
    assert coll.n_vars == 4


def test_obs_type_conflict_is_refused_or_coerced(tmp_path):
    a = _ad(["g"], donor=list(range(6)))
    b = _ad(["g"], donor=["x"] * 6)
    b.obs_names = [f"b{i}" for i in range(6)]
    with pytest.raises(
        SourceError, match=r"obs column 'donor' has conflicting types.*numeric.*string.*obs_conflicts='string'"
    ):
        annshard.write_collection([a, b], tmp_path / "o.zarr")
    with pytest.warns(UserWarning, match="numbers are stored as strings"):
        coll = annshard.write_collection([a, b], tmp_path / "o.zarr", obs_conflicts="string")
    assert coll.obs_columns["donor"].kind == "categorical"
    assert set(coll.obs_columns["donor"].categories) == {"0", "1", "2", "3", "4", "5", "x"}


def test_obs_schema_unification():
    a = _ad(["g"], k=pd.Categorical(["p", "q"] * 3), v=np.arange(6, dtype=np.int32), only_a=np.ones(6), flag=[True] * 6)
    b = _ad(["g"], k=pd.Categorical(["r", "p"] * 3), v=np.arange(6, dtype=np.float32), flag=[False] * 6)
    cols = {c.name: c for c in plan_obs([_src(a), _src(b)], None)}
    assert cols["k"].kind == "categorical" and cols["k"].categories == ["p", "q", "r"]
    np.testing.assert_array_equal(cols["k"].code_luts[1], [0, 2, -1])
    assert cols["v"].kind == "numeric" and cols["v"].dtype == np.float64
    assert cols["only_a"].present == [True, False]
    assert cols["flag"].kind == "bool"
    assert list(cols)[:3] == ["cell_type", "donor", "assay"]


def test_missing_int_column_becomes_float_with_nan(tmp_path):
    a = _ad(["g"], n=4, extra=np.arange(4))
    b = _ad(["g"], n=3)
    b.obs_names = ["x", "y", "z"]
    coll = annshard.write_collection({"a": a, "b": b}, tmp_path / "o.zarr")
    assert coll.obs_columns["extra"].dtype == "float64"
    import anndata as ad

    obs = ad.read_zarr(coll.shard_path(0)).obs
    assert obs.loc[["x", "y", "z"], "extra"].isna().all()
    assert sorted(obs.loc[list(a.obs_names), "extra"]) == [0, 1, 2, 3]


def test_obs_columns_errors(tmp_path):
    a = _ad(["g"])
    with pytest.raises(SourceError, match=r"obs column 'nope' is in none of the sources"):
        annshard.write_collection([a], tmp_path / "o.zarr", obs_columns=["nope"])
    with pytest.raises(SourceError, match=r"'source' is reserved"):
        annshard.write_collection([a], tmp_path / "o.zarr", obs_columns=["source"])
    a.obs["source"] = "mine"
    with pytest.warns(UserWarning, match="replaced by annshard's own"):
        coll = annshard.write_collection([a], tmp_path / "o.zarr")
    assert coll.obs_columns["source"].categories == ("adata-0",)
