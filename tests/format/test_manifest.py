"""The manifest's dispatch and schema check, and the hostile edits of issue 14, each with its clear error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import annshard
from annshard._errors import CollectionFormatError, CorruptShardError
from annshard._store._manifest import FORMAT_NAME, Manifest


@pytest.fixture
def coll(built, tmp_path):
    """A fresh copy of the collection (and its neighbour), to edit."""
    shutil.copytree(built, tmp_path / "c.zarr")
    shutil.copytree(built.parent / "other.zarr", tmp_path / "other.zarr")
    return tmp_path / "c.zarr"


def _edit(path, change) -> None:
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    change(doc["attributes"]["annshard"])
    meta.write_text(json.dumps(doc))


def _load(path) -> int:
    loader = annshard.Loader(path, batch_size=64, chunk_size=10, preload_nchunks=4)
    return sum(b.X.toarray().shape[0] for b in loader)


def _valid(built) -> dict:
    return json.loads((built / "zarr.json").read_text())["attributes"]["annshard"]


# -- dispatch ---------------------------------------------------------------------------------------------------------
def test_dispatch_reads_v1_and_refuses_unknown(built):
    d = _valid(built)
    m = Manifest.from_dict(d, where="c")
    assert Manifest.from_dict(m.to_dict(), where="c") == m
    with pytest.raises(CollectionFormatError, match="format version 2 is not supported.*upgrade annshard"):
        Manifest.from_dict({**d, "format_version": 2}, where="c")
    with pytest.raises(CollectionFormatError, match="expected 'annshard-collection'"):
        Manifest.from_dict({**d, "format": "other"}, where="c")
    for version in ([1], {"a": 1}, True, 1.0, "1"):
        with pytest.raises(CollectionFormatError, match="format version"):
            Manifest.from_dict({**d, "format_version": version}, where="c")
    with pytest.raises(CollectionFormatError, match="a list, not an object"):
        Manifest.from_dict([d], where="c")  # type: ignore[arg-type]


def test_unknown_optional_fields_are_accepted(built):
    d = _valid(built)
    d["layers_info"] = {"counts": {"dtype": "float32"}}
    d["shards"][0]["checksum"] = "abc"
    d["extra"]["anything"] = [1, {"x": 2}]
    assert Manifest.from_dict(d, where="c").n_obs == 300


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(n_obs="300"), "n_obs"),
        (lambda d: d.update(n_obs=10**400), "n_obs"),
        (lambda d: d.update(n_vars=-1), "n_vars"),
        (lambda d: d.update(n_vars=True), "n_vars"),
        (lambda d: d.update(seed=1.5), "seed"),
        (lambda d: d.update(join="left"), "join"),
        (lambda d: d.update(storage=[1, 2]), "storage"),
        (lambda d: d["storage"].update(x_format="coo"), "storage.x_format"),
        (lambda d: d["storage"].update(indices_dtype="V1000000000"), "storage.indices_dtype"),
        (lambda d: d.update(shards={"name": "shard-00000.zarr"}), "shards"),
        (lambda d: d["shards"].__setitem__(0, "shard-00000.zarr"), "shards[0]"),
        (lambda d: d["shards"][0].update(name=["x"]), "shards[0].name"),
        (lambda d: d["shards"][0].update(n_obs=None), "shards[0].n_obs"),
        (lambda d: d["shards"][1].update(name="../other.zarr/shard-00000.zarr"), "shards[1].name"),
        (lambda d: d["shards"][1].update(name="/etc/passwd"), "shards[1].name"),
        (lambda d: d["shards"][1].update(name=d["shards"][0]["name"]), "shards[1].name"),
        (lambda d: d["sources"][0].update(path=3), "sources[0].path"),
        (lambda d: d["obs_columns"][0].update(kind="float"), "obs_columns[0].kind"),
        (lambda d: d["obs_columns"].append(dict(d["obs_columns"][0])), "obs_columns"),
        (lambda d: d.update(appends=[[1]]), "appends[0]"),
        (lambda d: d.update(extra="x"), "extra"),
        (lambda d: d.pop("shards"), "shards"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_schema_errors_name_the_field(built, change, field):
    d = _valid(built)
    change(d)
    with pytest.raises(
        CollectionFormatError, match=rf"^c: manifest field '{re.escape(field)}.*(rewrite the collection|n_obs)"
    ):
        Manifest.from_dict(d, where="c")


# -- hostile edits on disk --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe{not utf-8",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"attributes": {"annshard": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}}",
        b'{"attributes": []}',
        b"[]",
        b'{"attributes": {"annshard": {"format": "annshard-collection", "format_version": 1, "n_obs": '
        + b"9" * 5000
        + b"}}}",
    ],
    ids=["non-utf8", "deep-list", "deep-dict", "attrs-list", "root-list", "huge-int"],
)
def test_malformed_zarr_json_is_a_format_error(coll, payload):
    (coll / "zarr.json").write_bytes(payload)
    with pytest.raises(CollectionFormatError, match=r"c\.zarr"):
        annshard.open_collection(coll)


def test_shard_name_escaping_the_collection_is_refused(coll):
    _edit(coll, lambda d: d["shards"][1].update(name="../other.zarr/shard-00000.zarr"))
    with pytest.raises(CollectionFormatError, match=r"shards\[1\]\.name.*no '\.\.'"):
        annshard.open_collection(coll)


def test_symlinked_shard_leading_outside_is_refused(coll):
    target = coll / "shard-00001.zarr"
    shutil.rmtree(target)
    target.symlink_to(coll.parent / "other.zarr" / "shard-00000.zarr")
    with pytest.raises(CollectionFormatError, match="outside the collection"):
        annshard.open_collection(coll)


def test_shard_listed_twice_is_refused(coll):
    def twice(d):
        d["shards"][2] = dict(d["shards"][0])
        d["n_obs"] = sum(s["n_obs"] for s in d["shards"])

    _edit(coll, twice)
    with pytest.raises(CollectionFormatError, match="a second time"):
        annshard.open_collection(coll)


def test_shard_n_obs_smaller_than_real_is_refused_on_loader_open(coll):
    def fewer(d):
        d["shards"][0]["n_obs"] -= 10
        d["n_obs"] -= 10

    _edit(coll, fewer)
    annshard.open_collection(coll)  # the schema is fine; the shard disagrees
    with pytest.raises(CollectionFormatError, match=r"shard-00000\.zarr: X has 100 rows.*shards\[0\]\.n_obs' says 90"):
        _load(coll)


def test_totals_that_do_not_add_up_are_refused(coll):
    _edit(coll, lambda d: d.update(n_obs=d["n_obs"] + 1))
    with pytest.raises(CollectionFormatError, match="'n_obs' is 301 but the shards hold 300"):
        annshard.open_collection(coll)


def test_n_vars_smaller_than_real_is_refused(coll):
    _edit(coll, lambda d: d.update(n_vars=5))
    with pytest.raises(CollectionFormatError, match="X has 30 genes, but the manifest field 'n_vars' says 5"):
        _load(coll)


_CRAFTED = """
import json, sys
from pathlib import Path
import annshard
from annshard._errors import CorruptShardError
root = Path(sys.argv[1])
def edit(p, change):
    doc = json.loads(p.read_text()); change(doc); p.write_text(json.dumps(doc))
edit(root / "zarr.json", lambda d: d["attributes"]["annshard"].update(n_vars=5))
for s in sorted(root.glob("shard-*.zarr")):  # the shards' own shape attributes lie too
    edit(s / "X" / "zarr.json", lambda d: d["attributes"].update(shape=[d["attributes"]["shape"][0], 5]))
for output in ("numpy", "scipy", "torch"):
    try:
        for b in annshard.Loader(root, batch_size=64, chunk_size=10, output=output):
            b.X.toarray() if output == "scipy" else None
    except CorruptShardError as e:
        assert "outside the collection's 5 genes" in str(e), e
        print("refused", output)
"""


def test_crafted_n_vars_never_crashes(coll):
    """Manifest and shard attributes both claim 5 genes; indices go to 29. Old code: numpy output segfaults."""
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CRAFTED), str(coll)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["refused numpy", "refused scipy", "refused torch"]


def test_damaged_indptr_is_a_corrupt_shard_error(coll):
    import zarr

    arr = zarr.open_array(coll / "shard-00001.zarr" / "X" / "indptr", mode="r+")
    ip = arr[...]
    ip[50] = ip[49] - 1
    arr[...] = ip
    with pytest.raises(CorruptShardError, match=r"shard-00001\.zarr: X/indptr is not valid row pointers"):
        _load(coll)


def test_an_untouched_collection_loads_every_row(coll):
    assert _load(coll) == 300
    m = annshard.open_collection(coll).manifest
    assert m.format == FORMAT_NAME
    assert np.sum([s.n_obs for s in m.shards]) == 300


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(matrices={"element": "layers/counts"}), "matrices"),
        (lambda d: d.update(matrices=[{"element": "layers/..", "n_cols": d["n_vars"], "storage": {}}]), "element"),
        (lambda d: d.update(matrices=[{"element": "raw/X", "n_cols": d["n_vars"], "storage": {}}]), "element"),
        (lambda d: d.update(matrices=[{"element": "layers/c", "n_cols": d["n_vars"] + 1, "storage": {}}]), "n_cols"),
        (lambda d: d.update(matrices=[{"element": "obsm/p", "n_cols": "2", "storage": {}}]), "n_cols"),
        (lambda d: d.update(matrices=[{"element": "obsm/p", "n_cols": 2, "storage": {"codec": "gzip"}}]), "codec"),
    ],
    ids=["not-a-list", "dotdot-name", "unknown-group", "layer-width", "string-width", "bad-codec"],
)
def test_matrices_field_is_validated(built, mutate, field):
    d = _valid(built)
    mutate(d)
    with pytest.raises(CollectionFormatError, match=rf"field 'matrices[^']*{field}|field '{field}'"):
        Manifest.from_dict(d, where="c")
