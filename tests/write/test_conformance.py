"""Conformance matrix: every AnnData that anndata reads converts exactly.

Each case is written with the locked anndata and pandas' default dtypes, as ``.h5ad`` and as AnnData zarr,
converted alone and mixed with another source, and compared with ``anndata.read_h5ad`` / ``read_zarr`` of the
same file: every row exactly once, X values and dtypes bit-identical after gene reindexing (float16 is stored as
float32), every obs column equal including missing values and category order, var columns kept.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import annshard

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

N_OBS, N_VARS = 80, 20


def _names(prefix: str, n: int, offset: int = 0) -> list[str]:
    return [f"{prefix}{i + offset}" for i in range(n)]


def _var(n: int = N_VARS, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"symbol": _names("SYM", n, offset)}, index=_names("g", n, offset))


def _counts(rng: np.random.Generator, dtype: Any = np.float32, n_obs: int = N_OBS) -> np.ndarray:
    return ((rng.random((n_obs, N_VARS)) < 0.3) * rng.integers(1, 30, size=(n_obs, N_VARS))).astype(dtype)


def _base(seed: int = 0, X: Any = None, obs: pd.DataFrame | None = None) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(index=_names("cell", N_OBS)) if obs is None else obs
    return ad.AnnData(X=sp.csr_matrix(_counts(rng)) if X is None else X, obs=obs, var=_var())


def case_str_index() -> ad.AnnData:
    obs = pd.DataFrame(
        {"label": [f"lab{i % 5}" if i % 7 else None for i in range(N_OBS)], "note": _names("note", N_OBS)},
        index=_names("cell", N_OBS),
    )
    return _base(obs=obs)


def case_nullable() -> ad.AnnData:
    n = N_OBS
    obs = pd.DataFrame(
        {
            "i64": pd.array([None if i % 9 == 0 else i * 1000 for i in range(n)], dtype="Int64"),
            "flag": pd.array([None if i % 4 == 0 else bool(i % 3) for i in range(n)], dtype="boolean"),
            "text": pd.array([None if i % 5 == 0 else f"t{i % 3}" for i in range(n)], dtype="string"),
            "i8_full": pd.array(list(range(n)), dtype="Int8"),
        },
        index=_names("cell", n),
    )
    return _base(obs=obs)


def case_categoricals() -> ad.AnnData:
    n = N_OBS
    cell_type = pd.Categorical(
        [None if i % 6 == 0 else ["T", "B", "NK"][i % 3] for i in range(n)], categories=["NK", "unused", "B", "T"]
    )
    stage = pd.Categorical(
        [["low", "mid", "high"][i % 3] for i in range(n)], categories=["low", "mid", "high", "max"], ordered=True
    )
    ints = pd.Categorical([i % 4 * 10 for i in range(n)], categories=[30, 20, 10, 0, 99])
    obs = pd.DataFrame({"cell_type": cell_type, "stage": stage, "int_cats": ints}, index=_names("cell", n))
    return _base(obs=obs)


def case_bools() -> ad.AnnData:
    n = N_OBS
    obs = pd.DataFrame(
        {
            "is_doublet": np.arange(n) % 3 == 0,
            "n_genes": np.arange(n, dtype=np.int32),
            "pct": np.linspace(0, 1, n),
            "u8": np.arange(n, dtype=np.uint8),
        },
        index=_names("cell", n),
    )
    return _base(obs=obs)


def _x_case(dtype: str, fmt: str) -> Callable[[], ad.AnnData]:
    def make() -> ad.AnnData:
        dt = np.dtype(dtype)
        rng = np.random.default_rng(3)
        if dt.kind == "f":
            X = _counts(rng, np.float64) * rng.random((N_OBS, N_VARS))
            X[0, :3] = [np.finfo(dt).max, np.finfo(dt).tiny, -1.5]
        else:
            X = _counts(rng, np.int64)
            info = np.iinfo(dt)
            X = X.astype(dt)
            X[0, :3] = [info.max, info.min if info.min else 1, info.max - 1]
            X[1, 1] = info.min // 2 if info.min else 0
        X = X.astype(dt)
        M = X if fmt == "dense" else sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
        return _base(X=M, obs=pd.DataFrame({"k": np.arange(N_OBS) % 2 == 0}, index=_names("cell", N_OBS)))

    return make


def case_x_none_layer() -> ad.AnnData:
    rng = np.random.default_rng(4)
    a = _base()
    return ad.AnnData(obs=a.obs, var=a.var, layers={"counts": sp.csr_matrix(_counts(rng, np.int32))})


def case_raw() -> ad.AnnData:
    a = _base(obs=pd.DataFrame({"c": pd.Categorical(["x", "y"] * (N_OBS // 2))}, index=_names("cell", N_OBS)))
    rng = np.random.default_rng(6)
    raw = ad.AnnData(X=sp.csr_matrix(_counts(rng, np.float32, N_OBS)), obs=a.obs, var=_var())
    raw = ad.concat(
        [raw, ad.AnnData(X=sp.csr_matrix(np.ones((N_OBS, 5), np.float32)), obs=a.obs, var=_var(5, 50))], axis=1
    )
    a.raw = raw
    return a


def case_extras() -> ad.AnnData:
    rng = np.random.default_rng(5)
    a = _base()
    a.obsm["X_pca"] = rng.normal(size=(N_OBS, 4)).astype(np.float32)
    a.obsm["meta"] = pd.DataFrame({"s": _names("m", N_OBS)}, index=a.obs_names)
    a.varm["loadings"] = rng.normal(size=(N_VARS, 4))
    a.obsp["distances"] = sp.random(N_OBS, N_OBS, density=0.05, format="csr", random_state=0)
    a.uns["params"] = {"n_pcs": 4, "method": "x", "arr": np.arange(3)}
    a.layers["counts"] = a.X.copy()
    return a


CASES: dict[str, Callable[[], ad.AnnData]] = {
    "str-index-strings": case_str_index,
    "nullable-NA": case_nullable,
    "categoricals": case_categoricals,
    "bool-int-float-columns": case_bools,
    **{
        f"X-{dt}-{fmt}": _x_case(dt, fmt)
        for dt, fmt in zip(
            [
                "float16",  # dense: scipy.sparse has no float16
                "int8",
                "int16",
                "int32",
                "int64",
                "uint8",
                "uint16",
                "uint32",
                "uint64",
                "float32",
                "float64",
            ],
            ["dense", "csr", "csc"] * 4,
            strict=False,
        )
    },
    "X-None-layer": case_x_none_layer,
    "raw": case_raw,
    "obsm-varm-obsp-uns": case_extras,
}
LAYER = {"X-None-layer": "counts"}
LEGACY = ["legacy-compound-obs", "legacy-0.7-categorical-refs"]


def _partner(template: ad.AnnData, layer: str | None) -> ad.AnnData:
    """Another source: shifted genes (outer join), the same value dtype and format family, its own obs columns."""
    M = template.X if layer is None else template.layers[layer]
    dt = np.dtype(M.dtype)
    rng = np.random.default_rng(11)
    X = _counts(rng, dt, 30)
    X = X if isinstance(M, np.ndarray) else sp.csr_matrix(X)
    p = ad.AnnData(obs=pd.DataFrame({"p_label": ["p"] * 30}, index=_names("other", 30)), var=_var(N_VARS, 6))
    if layer is None:
        p.X = X
    else:
        p.layers[layer] = X
    return p


def _read(path: Path) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's OldFormatWarning for the legacy fixtures
        return ad.read_h5ad(path) if path.suffix == ".h5ad" else ad.read_zarr(path)


def _dense(M: Any) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else np.asarray(M)


def _same_values(got: pd.Series, exp: pd.Series, what: str) -> None:
    """Equal labels/values, missing at the same rows."""
    g_na, e_na = got.isna().to_numpy(), exp.isna().to_numpy()
    np.testing.assert_array_equal(g_na, e_na, err_msg=f"{what}: missing values differ")
    g = got.to_numpy(dtype=object)[~g_na]
    e = exp.to_numpy(dtype=object)[~e_na]
    for v, w in zip(g, e, strict=True):
        if isinstance(w, str):
            assert isinstance(v, str) and v == w, f"{what}: {v!r} != {w!r}"
        else:  # numbers and bools: the same value (nullable ints/bools are stored as float64 with NaN)
            assert not isinstance(v, str) and v == w, f"{what}: {v!r} != {w!r}"


def check_conforms(
    coll: annshard.Collection, name: str, expected: ad.AnnData, layer: str | None, read_all: Callable[..., Any]
) -> None:
    """Compare the rows of source ``name`` in ``coll`` with what anndata reads from the same file."""
    X, obs, _ = read_all(coll)
    sel = (obs["source"] == name).to_numpy()
    rows = obs["source_row"].to_numpy()[sel]
    assert sorted(rows.tolist()) == list(range(expected.n_obs)), "every row exactly once"
    assert list(obs.index[sel]) == list(np.asarray(expected.obs_names, dtype=object)[rows])
    M = expected.X if layer is None else expected.layers[layer]
    src_dtype = np.dtype(M.dtype)
    want_dtype = np.dtype(np.float32) if src_dtype == np.float16 else src_dtype
    assert X.dtype == want_dtype, "X dtype kept (float16 stored as float32)"
    var_names = coll.var.index
    pos = var_names.get_indexer(expected.var_names)
    assert (pos >= 0).all()
    want = np.zeros((expected.n_obs, len(var_names)), dtype=want_dtype)
    want[:, pos] = _dense(M).astype(want_dtype)
    got = X[sel]
    assert got.tobytes() == want[rows].tobytes(), "X bit-identical after gene reindexing"
    for col in expected.var.columns:
        _same_values(coll.var[col].iloc[pos].reset_index(drop=True), expected.var[col].reset_index(drop=True), col)
    stored = {c.name: c for c in coll.manifest.obs_columns}
    for col in expected.obs.columns:
        e = expected.obs[col].iloc[rows].reset_index(drop=True)
        g = obs[col][sel].reset_index(drop=True)
        if isinstance(e.dtype, pd.CategoricalDtype):
            assert list(stored[col].categories) == list(e.cat.categories), f"{col}: category order"
            assert stored[col].ordered == e.cat.ordered, f"{col}: ordered"
            assert list(g.cat.categories) == list(e.cat.categories), f"{col}: categories in the shards"
            assert g.cat.ordered == e.cat.ordered
        _same_values(g, e, col)


def _write(tmp_path: Path, a: ad.AnnData, fmt: str, stem: str) -> Path:
    path = tmp_path / f"{stem}.{fmt}"
    a.write_h5ad(path) if fmt == "h5ad" else a.write_zarr(path)
    return path


def _convert(tmp_path: Path, paths: list[Path], layer: str | None, *, partner: bool) -> annshard.Collection:
    sources: dict[str, Any] = {p.name: p for p in paths}
    if partner:  # another source, in memory: shifted genes (outer join), its own obs columns
        sources["partner"] = _partner(_read(paths[0]), layer)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Observation names are not unique", UserWarning)
        return annshard.write_collection(sources, tmp_path / "out.zarr", layer=layer, join="outer", seed=1)


@pytest.mark.parametrize("mode", ["h5ad-alone", "zarr-alone", "h5ad+zarr-mixed"])
@pytest.mark.parametrize("case", list(CASES))
def test_conforms(tmp_path, case, mode, read_collection):
    """Alone: the file is the only source. Mixed: its .h5ad and its zarr together, with a third source."""
    layer = LAYER.get(case)
    a = CASES[case]()
    fmts = ["h5ad", "zarr"] if mode.endswith("mixed") else [mode.split("-")[0]]
    paths = [_write(tmp_path, a, fmt, "case") for fmt in fmts]
    coll = _convert(tmp_path, paths, layer, partner=mode.endswith("mixed"))
    for path in paths:
        check_conforms(coll, path.name, _read(path), layer, read_collection)


@pytest.mark.parametrize("mixed", [False, True], ids=["alone", "mixed"])
@pytest.mark.parametrize("case", LEGACY)
def test_legacy_conforms(tmp_path, case, mixed, legacy_writers, read_collection):
    path = legacy_writers[case](tmp_path / "case.h5ad")
    expected = _read(path)  # anndata reads the fixture
    assert isinstance(expected.obs["cell_type"].dtype, pd.CategoricalDtype)
    coll = _convert(tmp_path, [path], None, partner=mixed)
    check_conforms(coll, path.name, expected, None, read_collection)
    assert coll.manifest.obs_columns[0].kind == "categorical"


@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_float16_is_stored_as_float32_and_every_output_loads(tmp_path, storage):
    a = _x_case("float16", "dense")()
    path = _write(tmp_path, a, "h5ad", "half")
    coll = annshard.write_collection([path], tmp_path / "out.zarr", dense=storage == "dense")
    assert coll.manifest.storage.data_dtype == "float32"
    assert "float16" in coll.manifest.extra["notes"][0]
    want = a.X.astype(np.float32)
    for output in ("scipy", "numpy", "torch"):
        if output == "torch":
            torch = pytest.importorskip("torch")
        loader = annshard.Loader(
            coll.path, batch_size=32, chunk_size=8, preload_nchunks=4, output=output, obs_columns=["source_row"]
        )
        seen = 0
        for batch in loader:
            X = batch.X
            if output == "torch":
                assert X.dtype == torch.float32
                X = (X.to_dense() if X.layout != torch.strided else X).numpy()
            elif sp.issparse(X):
                X = X.toarray()
            assert X.dtype == np.float32, output
            rows = np.asarray(batch.obs["source_row"])
            np.testing.assert_array_equal(X, want[rows])
            seen += X.shape[0]
        assert seen == a.n_obs


def test_float16_storage_dtype_is_refused(tmp_path):
    a = _base()
    with pytest.raises(ValueError, match="storage data_dtype float16 is not supported"):
        annshard.write_collection([a], tmp_path / "o.zarr", storage={"data_dtype": "float16"})
