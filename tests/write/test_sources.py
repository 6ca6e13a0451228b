from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import annshard
from annshard import SourceError
from annshard._write._sources import open_source, source_names
from annshard.testing import make_adata


@pytest.fixture(scope="module")
def h5ad_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("h5") / "ok.h5ad"
    make_adata(50, 20, nnz_per_cell=5).write_h5ad(p)
    return p


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.h5ad: no such file or directory; check the path"):
        annshard.write_collection([tmp_path / "nope.h5ad"], tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


def test_not_anndata_text_file(tmp_path):
    p = tmp_path / "notes.h5ad"
    p.write_text("hello")
    with pytest.raises(SourceError, match=r"notes\.h5ad: is not an AnnData \.h5ad file \(not HDF5\)"):
        annshard.write_collection([p], tmp_path / "o.zarr")


def test_not_anndata_hdf5(tmp_path):
    import h5py

    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(SourceError, match=r"plain\.h5: obs: is missing: this is not an AnnData file"):
        annshard.write_collection([p], tmp_path / "o.zarr")


def test_not_anndata_directory(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(SourceError, match=r"dir: is not a zarr store"):
        annshard.write_collection([d], tmp_path / "o.zarr")


def test_truncated_h5ad(tmp_path, h5ad_file):
    p = tmp_path / "cut.h5ad"
    data = h5ad_file.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"cut\.h5ad: .*(truncated or corrupt)"):
        annshard.write_collection([p], tmp_path / "o.zarr")
    assert list(tmp_path.iterdir()) == [p]


def test_corrupt_data_block_names_file_and_element(tmp_path):
    import h5py

    p = tmp_path / "bad.h5ad"
    make_adata(50, 20, nnz_per_cell=5).write_h5ad(p)
    with h5py.File(p, "r+") as f:  # indptr pointing past the end of data
        ip = f["X/indptr"][:]
        del f["X/indptr"]
        f["X/indptr"] = ip * 1000
    with pytest.raises(SourceError, match=r"bad\.h5ad"):
        annshard.write_collection([p], tmp_path / "o.zarr")
    assert list(tmp_path.iterdir()) == [p]


def test_zero_rows(tmp_path):
    a = ad.AnnData(X=sp.csr_matrix((0, 10), dtype=np.float32))
    p = tmp_path / "empty.h5ad"
    a.write_h5ad(p)
    with pytest.raises(SourceError, match=r"empty\.h5ad: has 0 rows \(cells\); remove it"):
        annshard.write_collection([p], tmp_path / "o.zarr")
    with pytest.raises(SourceError, match=r"in-memory AnnData 'adata-0': has 0 rows"):
        annshard.write_collection([a], tmp_path / "o.zarr")


def test_missing_layer(tmp_path, h5ad_file):
    with pytest.raises(SourceError, match=r"ok\.h5ad: layers/raw: layer 'raw' not found"):
        annshard.write_collection([h5ad_file], tmp_path / "o.zarr", layer="raw")


def test_wrong_type():
    with pytest.raises(SourceError, match="pass .h5ad paths"):
        open_source(42, "x")


def test_h5ad_zarr_memory_read_the_same(tmp_path):
    a = make_adata(40, 30, nnz_per_cell=6)
    a.obs["note"] = [f"n{i % 3}" for i in range(40)]
    a.write_h5ad(tmp_path / "a.h5ad")
    a.write_zarr(tmp_path / "a.zarr")
    srcs = [open_source(tmp_path / "a.h5ad", "h"), open_source(tmp_path / "a.zarr", "z"), open_source(a, "m")]
    for s in srcs:
        assert s.n_obs == 40 and s.n_vars == 30 and s.x_format == "csr"
        np.testing.assert_array_equal(s.read_x(5, 17).toarray(), a.X[5:17].toarray())
        assert list(s.read_obs_names(3, 6)) == list(a.obs_names[3:6])
        assert list(s.var.index) == list(a.var_names)
        codes = s.read_obs("cell_type", 0, 40)
        cats = np.asarray(s.obs_schema["cell_type"].categories, dtype=object)
        assert list(cats[codes]) == list(a.obs["cell_type"].astype(str))
        np.testing.assert_array_equal(s.read_obs("n_genes", 0, 40), a.obs["n_genes"].to_numpy())
        s.close()


def test_dense_and_csc_blocks(tmp_path):
    a = make_adata(30, 12, nnz_per_cell=4)
    dense = a.copy()
    dense.X = a.X.toarray()
    dense.write_h5ad(tmp_path / "d.h5ad")
    csc = a.copy()
    csc.X = sp.csc_matrix(a.X)
    csc.write_h5ad(tmp_path / "c.h5ad")
    d, c = open_source(tmp_path / "d.h5ad", "d"), open_source(tmp_path / "c.h5ad", "c")
    assert d.x_format == "dense" and c.x_format == "csc"
    np.testing.assert_array_equal(d.read_x(3, 9), a.X[3:9].toarray())
    np.testing.assert_array_equal(c.read_x(3, 9).toarray(), a.X[3:9].toarray())


def test_backed_anndata_reads_from_its_file(h5ad_file):
    a = ad.read_h5ad(h5ad_file, backed="r")
    s = open_source(a, "b")
    assert s.kind == "h5ad" and s.path == h5ad_file
    a.file.close()


def test_source_names(tmp_path):
    a = make_adata(3, 3, nnz_per_cell=1)
    names = [n for n, _ in source_names([tmp_path / "x" / "d.h5ad", tmp_path / "y" / "d.h5ad", a, "e.h5ad"])]
    assert names[0].endswith("x/d.h5ad") and names[1].endswith("y/d.h5ad")
    assert names[2:] == ["adata-2", "e.h5ad"]
    assert [n for n, _ in source_names({"first": a})] == ["first"]


# -- the matrix contract: matrix_keys / matrix_info / read_matrix ---------------------------------------------------
def _contract_adata():
    a = make_adata(40, 12, nnz_per_cell=4, seed=5)
    a.layers["counts"] = sp.csc_matrix(a.X * 2)
    a.layers["dense"] = a.X.toarray().astype(np.float64)
    rng = np.random.default_rng(0)
    a.obsm["X_pca"] = rng.normal(size=(40, 3)).astype(np.float32)
    a.obsm["X_sp"] = sp.random(40, 6, density=0.3, format="csr", random_state=1, dtype=np.float32)
    a.obsm["frame_num"] = pd.DataFrame(
        {"u": np.arange(40, dtype=np.int16), "v": pd.array([*range(39), None], dtype="Int32")}, index=a.obs_names
    )
    a.obsm["frame_str"] = pd.DataFrame({"w": [f"s{i}" for i in range(40)]}, index=a.obs_names)
    return a


@pytest.mark.parametrize("kind", ["memory", "h5ad", "zarr", "backed"])
def test_matrix_contract(tmp_path, kind):
    a = _contract_adata()
    if kind == "h5ad" or kind == "backed":
        a.write_h5ad(tmp_path / "a.h5ad")
        obj = tmp_path / "a.h5ad" if kind == "h5ad" else ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    elif kind == "zarr":
        a.write_zarr(tmp_path / "a.zarr")
        obj = tmp_path / "a.zarr"
    else:
        obj = a
    s = open_source(obj, "s")
    keys = s.matrix_keys()  # X, then layers, then obsm; within a group in the store's order
    assert keys[:3] == ["X", "layers/counts", "layers/dense"]
    assert sorted(keys[3:]) == ["obsm/X_pca", "obsm/X_sp", "obsm/frame_num"]
    expected = {
        "X": ("csr", a.X.dtype, a.X.nnz, a.X.toarray()),
        "layers/counts": ("csc", a.X.dtype, a.X.nnz, (a.X * 2).toarray()),
        "layers/dense": ("dense", np.float64, 40 * 12, a.layers["dense"]),
        "obsm/X_pca": ("dense", np.float32, 40 * 3, a.obsm["X_pca"]),
        "obsm/X_sp": ("csr", np.float32, a.obsm["X_sp"].nnz, a.obsm["X_sp"].toarray()),
        "obsm/frame_num": ("dense", np.float64, 80, a.obsm["frame_num"].to_numpy(dtype=np.float64, na_value=np.nan)),
    }
    for key, (fmt, dtype, nnz, full) in expected.items():
        info = s.matrix_info(key)
        assert (info.format, info.dtype, info.shape, info.nnz) == (fmt, np.dtype(dtype), full.shape, nnz), key
        block = s.read_matrix(key, 7, 19)
        if fmt == "dense":
            assert isinstance(block, np.ndarray) and block.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(block, full[7:19])
        else:
            assert sp.issparse(block) and block.format == "csr" and block.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(block.toarray(), full[7:19])
    np.testing.assert_array_equal(s.read_x(3, 9).toarray(), s.read_matrix("X", 3, 9).toarray())
    for bad in ("obsm/frame_str", "layers/nope", "obsm/nope"):
        with pytest.raises(SourceError, match=rf"{bad}: .*matrices: \["):
            s.matrix_info(bad)
    s.close()
    if kind == "backed":
        obj.file.close()


def test_x_none_with_layer(tmp_path):
    a = make_adata(30, 10, nnz_per_cell=3)
    b = ad.AnnData(obs=a.obs, var=a.var, layers={"counts": a.X})
    b.write_h5ad(tmp_path / "b.h5ad")
    b.write_zarr(tmp_path / "b.zarr")
    for obj in (b, tmp_path / "b.h5ad", tmp_path / "b.zarr"):
        s = open_source(obj, "b", layer="counts")
        assert s.matrix_keys() == ["layers/counts"] and s.element == "layers/counts"
        np.testing.assert_array_equal(s.read_x(0, 30).toarray(), a.X.toarray())
        with pytest.raises(SourceError, match=r"X: X is missing \(None\)"):
            open_source(obj, "b")


# -- errors tell the truth -------------------------------------------------------------------------------------------
def _with_encoding(path, key, enc, ver="9.9.9"):
    if path.suffix == ".h5ad":
        import h5py

        with h5py.File(path, "r+") as f:
            f[key].attrs["encoding-type"], f[key].attrs["encoding-version"] = enc, ver
    else:
        import zarr

        node = zarr.open_group(path, mode="r+", use_consolidated=False)[key]
        node.attrs.update({"encoding-type": enc, "encoding-version": ver})
        with warnings.catch_warnings():  # zarr: consolidated metadata is not in the v3 spec (anndata uses it)
            warnings.simplefilter("ignore", UserWarning)
            zarr.consolidate_metadata(path)  # anndata reads the consolidated metadata


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
@pytest.mark.parametrize("key", ["obs/n_genes", "obs/cell_type", "var", "X"])
def test_unknown_encoding_names_element_and_version(tmp_path, fmt, key):
    a = make_adata(30, 10, nnz_per_cell=3)
    p = tmp_path / f"a.{fmt}"
    a.write_h5ad(p) if fmt == "h5ad" else a.write_zarr(p)
    _with_encoding(p, key, "fancy-array")
    with pytest.raises(SourceError) as info:
        annshard.write_collection([p], tmp_path / "o.zarr")
    msg = str(info.value)
    assert msg.startswith(f"{p}: {key}: has encoding-type 'fancy-array', encoding-version '9.9.9'"), msg
    assert "anndata" in msg and "update anndata" in msg
    assert "corrupt" not in msg and "truncated" not in msg
    assert not (tmp_path / "o.zarr").exists()


def test_unknown_layer_encoding_is_ignored_unless_chosen(tmp_path):
    a = make_adata(30, 10, nnz_per_cell=3)
    a.layers["odd"] = a.X.copy()
    p = tmp_path / "a.h5ad"
    a.write_h5ad(p)
    _with_encoding(p, "layers/odd", "fancy-matrix")
    s = open_source(p, "a")
    assert s.matrix_keys() == ["X"]
    with pytest.raises(SourceError, match=r"a\.h5ad: layers/odd: has encoding-type 'fancy-matrix', encoding-version"):
        open_source(p, "a", layer="odd")


def test_damaged_structure_is_not_called_truncated(tmp_path):
    import h5py

    p = tmp_path / "bad.h5ad"
    make_adata(50, 20, nnz_per_cell=5).write_h5ad(p)
    with h5py.File(p, "r+") as f:  # indptr pointing past the end of data: HDF5 reads every byte fine
        ip = f["X/indptr"][:]
        del f["X/indptr"]
        f["X/indptr"] = ip * 1000
    with pytest.raises(SourceError, match=r"bad\.h5ad: X: rows 0:50 cannot be read .*the file is damaged") as info:
        annshard.write_collection([p], tmp_path / "o.zarr")
    assert "truncated" not in str(info.value)
