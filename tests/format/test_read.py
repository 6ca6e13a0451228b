"""Which reader a directory goes to: the dispatch on what its root ``zarr.json`` declares (format and version)."""

from __future__ import annotations

import json
import shutil

import pytest
import zarr

import annshard
from annshard._errors import CollectionFormatError
from annshard._store._manifest import FORMAT_NAME, FORMAT_VERSION
from annshard._store._read import is_collection, read_manifest
from annshard.testing import make_adata


@pytest.fixture
def coll(built, tmp_path):
    shutil.copytree(built, tmp_path / "c.zarr")
    return tmp_path / "c.zarr"


def _set(path, **fields) -> None:
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["annshard"].update(fields)
    meta.write_text(json.dumps(doc))


def test_an_annshard_manifest_goes_to_its_version_reader(coll):
    m = read_manifest(coll)
    assert (m.format, m.format_version) == (FORMAT_NAME, FORMAT_VERSION) == ("annshard-collection", 1)
    assert m.n_obs == 300 and [s.name for s in m.shards] == ["shard-00000.zarr", "shard-00001.zarr", "shard-00002.zarr"]
    assert m.extra.get("origin", "annshard") == "annshard"
    assert is_collection(coll)
    assert annshard.open_collection(coll).manifest == m


@pytest.mark.parametrize("version", [2, 0, 99])
def test_a_version_this_annshard_cannot_read_is_refused_naming_the_fix(coll, version):
    _set(coll, format_version=version)
    match = rf"{coll}: collection format version {version} is not supported by this annshard \(it reads versions \[1\]\); upgrade annshard"
    with pytest.raises(CollectionFormatError, match=match):
        read_manifest(coll)
    with pytest.raises(CollectionFormatError, match=match):
        annshard.open_collection(coll)
    assert is_collection(coll), "still marked as an annshard collection (its format name is ours)"


def test_an_unknown_format_name_is_refused(coll):
    _set(coll, format="someone-elses-collection")
    match = r"manifest format is 'someone-elses-collection', expected 'annshard-collection'"
    with pytest.raises(CollectionFormatError, match=match):
        read_manifest(coll)
    with pytest.raises(CollectionFormatError, match=match):
        annshard.open_collection(coll)
    assert not is_collection(coll)


def _annbatch_dir(path, sizes=(40, 30)):
    """The layout annbatch's ``DatasetCollection`` writes: a marked group of AnnData zarr children ``dataset_N``."""
    zarr.open_group(path, mode="w").attrs.update({"encoding-type": "annbatch-preshuffled", "encoding-version": "0.1.0"})
    for i, n in enumerate(sizes):
        make_adata(n, 25, nnz_per_cell=4, seed=i).write_zarr(path / f"dataset_{i}")
    return path


def test_the_annbatch_format_goes_to_annbatchs_reader(tmp_path):
    path = _annbatch_dir(tmp_path / "ab.zarr")
    assert is_collection(path)
    m = read_manifest(path)
    assert m.extra == {"origin": "annbatch"} and m.created_by == "annbatch"
    assert [(s.name, s.n_obs) for s in m.shards] == [("dataset_0", 40), ("dataset_1", 30)]
    assert (m.n_obs, m.n_vars) == (70, 25)
    assert annshard.open_collection(path).origin == "annbatch"


def test_an_annbatch_dataset_linked_from_outside_is_refused(tmp_path):
    path = _annbatch_dir(tmp_path / "ab.zarr", sizes=(40,))
    outside = tmp_path / "elsewhere"
    (path / "dataset_0").rename(outside)
    (path / "dataset_0").symlink_to(outside)
    with pytest.raises(CollectionFormatError, match=r"dataset_0 resolves to .*outside the collection"):
        read_manifest(path)


def test_a_directory_that_declares_neither_format_is_not_a_collection(tmp_path):
    zarr.open_group(tmp_path / "plain.zarr", mode="w").attrs.update({"something": 1})
    assert not is_collection(tmp_path / "plain.zarr")
    with pytest.raises(CollectionFormatError, match=r"not an annshard collection .* and not an annbatch collection"):
        read_manifest(tmp_path / "plain.zarr")
