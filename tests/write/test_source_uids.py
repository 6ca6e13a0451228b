"""``source_uids``: the lamindb artifact uid of each source lands in the manifest, in the write itself."""

from __future__ import annotations

import json

import pytest

import annshard
from annshard._write import append_collection
from annshard.testing import make_adata


@pytest.fixture
def adatas():
    return {
        "a": make_adata(60, 40, nnz_per_cell=5, seed=0, obs_prefix="a"),
        "b": make_adata(50, 40, nnz_per_cell=5, seed=1, obs_prefix="b"),
    }


def test_write_records_uids_in_the_manifest(tmp_path, adatas):
    p = tmp_path / "o.zarr"
    coll = annshard.write_collection(adatas, p, source_uids={"b": "uidB0000000000000000"})
    assert [(s.name, s.uid) for s in coll.manifest.sources] == [("a", None), ("b", "uidB0000000000000000")]
    # on disk, in the committed manifest, as written (no later rewrite)
    again = annshard.open_collection(p)
    assert [s.uid for s in again.manifest.sources] == [None, "uidB0000000000000000"]
    assert "uidB0000000000000000" in json.dumps(json.loads((p / "zarr.json").read_text()))


def test_write_without_uids_records_none(tmp_path, adatas):
    coll = annshard.write_collection(adatas, tmp_path / "o.zarr", source_uids=None)
    assert [s.uid for s in coll.manifest.sources] == [None, None]


@pytest.mark.parametrize(
    ("uids", "match"),
    [({"c": "uidC"}, r"\['c'\].*not among the sources \['a', 'b'\]"), ({"a": ""}, "non-empty strings")],
    ids=["unknown-name", "empty-uid"],
)
def test_write_refuses_bad_uids_and_writes_nothing(tmp_path, adatas, uids, match):
    p = tmp_path / "o.zarr"
    with pytest.raises(ValueError, match=match):
        annshard.write_collection(adatas, p, source_uids=uids)
    assert list(tmp_path.iterdir()) == []


def test_append_records_uids_of_the_new_sources(tmp_path, adatas):
    p = tmp_path / "o.zarr"
    annshard.write_collection({"a": adatas["a"]}, p, source_uids={"a": "uidA"})
    # the new source is named "a" too (recorded as "a#1"); its uid is keyed by the name it was given
    coll = append_collection(p, {"a": adatas["b"]}, source_uids={"a": "uidA2"})
    assert [(s.name, s.uid) for s in coll.manifest.sources] == [("a", "uidA"), ("a#1", "uidA2")]
    assert [s.uid for s in annshard.open_collection(p).manifest.sources] == ["uidA", "uidA2"]


def test_append_refuses_an_unknown_name_and_leaves_the_collection(tmp_path, adatas):
    p = tmp_path / "o.zarr"
    before = annshard.write_collection({"a": adatas["a"]}, p).manifest
    with pytest.raises(ValueError, match=r"\['zz'\].*not among the sources \['b'\]"):
        append_collection(p, {"b": adatas["b"]}, source_uids={"zz": "uidZ"})
    assert annshard.open_collection(p).manifest == before
    assert sorted(x.name for x in p.iterdir() if x.name.startswith("shard-")) == [s.name for s in before.shards]
