"""annshard.lamin.register on a real SQLite instance: artifacts, versions, lineage, queries, bad input."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

import annshard
from annshard.lamin import NotAnnshardCollectionError, find_collections, open_registered, register

from .conftest import all_rows, append_to, make_collection

pytestmark = [
    # usage recording is tested in test_usage.py; here loaders are built outside a run on purpose
    pytest.mark.filterwarnings("ignore::annshard.lamin._usage.NoRunWarning"),
]


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_register_in_place(lamin_root, unique_key):
    import lamindb as ln

    coll = make_collection(lamin_root / "in-place" / f"{unique_key}.zarr")
    record = register(coll, key=unique_key, description="three sources")
    assert record.key == unique_key and record.version == "1" and record.description == "three sources"
    arts = list(record.ordered_artifacts.all())
    # one artifact per shard, registered where it lies (no copy), in global row order
    assert [Path(a.path).resolve() for a in arts] == [coll.shard_path(i).resolve() for i in range(len(coll.shards))]
    assert all(a.otype == "AnnData" for a in arts)
    assert not (lamin_root / "annshard" / unique_key).exists()
    # queryable manifest facts on the meta artifact
    values = record.meta_artifact.features.get_values()
    assert (
        values["annshard_seed"] == 0 and values["annshard_format_version"] == annshard._store._manifest.FORMAT_VERSION
    )
    assert values["annshard_join"] == "inner" and values["annshard_n_obs"] == coll.n_obs
    assert values["annshard_layout"].startswith("csr/")
    assert [f["name"] for f in values["annshard_sources"]["files"]] == ["src0", "src1", "src2"]
    # made by a finished run of the annshard transform
    assert record.run.transform.key == "annshard.lamin.register" and record.run.status == "completed"
    assert ln.Collection.get(key=unique_key) == record
    loader = open_registered(record)
    assert loader.n_obs == coll.n_obs and loader.shards == coll.shards


def test_register_outside_storage_copies_once(lamin_root, tmp_path, unique_key):
    coll = make_collection(tmp_path / "outside.zarr", seed=3)
    before = _tree_digest(coll.path)
    record = register(coll.path, key=unique_key)
    arts = list(record.ordered_artifacts.all())
    copy = Path(arts[0].path).parent
    assert copy.is_relative_to(lamin_root / "annshard" / unique_key)
    assert annshard.open_collection(copy).manifest == coll.manifest
    assert _tree_digest(coll.path) == before  # the original is untouched
    # registering the same collection again returns the same version, no new copy
    again = register(coll.path, key=unique_key)
    assert again == record and again.version == "1"
    assert len(list((lamin_root / "annshard" / unique_key).iterdir())) == 1


@pytest.mark.parametrize("where", ["in-place", "outside"])
def test_append_makes_new_version_and_keeps_old(lamin_root, tmp_path, unique_key, where):
    import lamindb as ln

    base = lamin_root / "in-place" if where == "in-place" else tmp_path
    coll = make_collection(base / f"{where}.zarr")
    v1 = register(coll, key=unique_key)
    v1_dirs = [Path(a.path) for a in v1.ordered_artifacts.all()]
    v1_digests = [_tree_digest(d) for d in v1_dirs]
    n1 = coll.n_obs
    coll = append_to(coll, n=70)
    v2 = register(coll, key=unique_key)
    assert v2.version == "2" and v2.is_latest and v2.stem_uid == v1.stem_uid
    v1 = ln.Collection.get(v1.uid)
    assert not v1.is_latest
    assert v2.ordered_artifacts.count() == v1.ordered_artifacts.count() + 1
    # earlier version's files never change
    assert [_tree_digest(d) for d in v1_dirs] == v1_digests
    # each version loads exactly its rows
    old = ln.Collection.get(key=unique_key, version="1").loader(batch_size=50)
    new = ln.Collection.get(key=unique_key).loader(batch_size=50)
    assert sorted(all_rows(old)) == list(range(n1))
    assert sorted(all_rows(new)) == list(range(n1 + 70))
    assert v1.meta_artifact.features.get_values()["annshard_n_obs"] == n1
    assert v2.meta_artifact.features.get_values()["annshard_n_obs"] == n1 + 70
    # and by version= on the loader itself
    assert open_registered(v2).n_obs == n1 + 70
    assert ln.Collection.get(key=unique_key).loader(version="1", batch_size=50).n_obs == n1


def test_same_key_different_content_is_a_new_version(lamin_root, unique_key):
    first = make_collection(lamin_root / "in-place" / f"{unique_key}-a.zarr", seed=0)
    other = make_collection(lamin_root / "in-place" / f"{unique_key}-b.zarr", seed=1, data_seed=10)
    v1 = register(first, key=unique_key)
    v2 = register(other, key=unique_key)
    assert (v1.version, v2.version) == ("1", "2")
    assert open_registered(v1).path == first.path and open_registered(v1).manifest == first.manifest
    assert open_registered(v2).seed == 1


def test_lineage_and_seed_query(lamin_root, tmp_path, unique_key):
    import lamindb as ln

    from annshard.testing import write_h5ads

    paths = write_h5ads(lamin_root / "raw" / unique_key, [80, 60], n_vars=30, nnz_per_cell=6)
    sources = [ln.Artifact(p, description="raw counts").save() for p in paths]
    record = annshard.lamin.write_and_register(sources, key=unique_key, seed=0, n_obs_per_shard=64)
    run = record.run
    assert set(run.input_artifacts.values_list("uid", flat=True)) == {a.uid for a in sources}
    # the manifest on disk knows its sources' uids
    coll = open_registered(record)
    assert sorted(s.uid for s in coll.sources) == sorted(a.uid for a in sources)
    # every collection made with seed 0 from a given artifact: one query
    hits = ln.Collection.filter(meta_artifact__in=ln.Artifact.filter(annshard_seed=0), run__input_artifacts=sources[0])
    assert record in hits.distinct().to_list()
    assert record in find_collections(seed=0, source=sources[0]).to_list()
    assert record not in find_collections(seed=1, source=sources[0]).to_list()
    assert find_collections(seed=0, source=sources[1], key=unique_key).to_list() == [record]


def test_not_a_collection(lamin_root, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(annshard.CollectionFormatError, match="not an annshard collection"):
        register(tmp_path / "empty", key="test/nothing")
    with pytest.raises(FileNotFoundError):
        register(tmp_path / "missing.zarr", key="test/nothing")


def test_loader_on_plain_collections(lamin_root, unique_key):
    import anndata as ad
    import lamindb as ln

    from annshard.testing import make_adata

    # shards of one annshard collection, collected by hand: loads
    coll = make_collection(lamin_root / "in-place" / f"{unique_key}.zarr")
    arts = [ln.Artifact(coll.shard_path(i)).save() for i in (0, 2)]
    manual = ln.Collection(arts, key=f"{unique_key}-manual").save()
    loader = manual.loader(batch_size=40)
    want = coll.shards[0].n_obs + coll.shards[2].n_obs
    assert loader.n_obs == want and len(all_rows(loader)) == want
    # AnnData zarr stores that are not one collection: a clear error
    stores = []
    for i in range(2):
        path = lamin_root / "plain" / unique_key / f"d{i}" / "x.zarr"
        path.parent.mkdir(parents=True)
        ad.AnnData(make_adata(20, 10, nnz_per_cell=3, seed=i)).write_zarr(path)
        stores.append(ln.Artifact(path).save())
    plain = ln.Collection(stores, key=f"{unique_key}-plain").save()
    with pytest.raises(NotAnnshardCollectionError, match=r"mapped\(\)"):
        plain.loader()


def test_missing_shard_files(lamin_root, unique_key):
    coll = make_collection(lamin_root / "in-place" / f"{unique_key}.zarr")
    record = register(coll, key=unique_key)
    moved = coll.path / "moved-away"
    shutil.move(coll.shard_path(1), moved)
    try:
        with pytest.raises(annshard.CorruptShardError, match="missing from storage") as err:
            record.loader()
        assert coll.shards[1].name in str(err.value)
    finally:
        shutil.move(moved, coll.shard_path(1))
    assert record.loader(batch_size=64).n_obs == coll.n_obs


def test_info_key(lamin_root, unique_key):
    import io

    from annshard.lamin._cli import info_key

    coll = make_collection(lamin_root / "in-place" / f"{unique_key}.zarr", seed=5)
    register(coll, key=unique_key)
    coll = append_to(coll, n=30)
    register(coll, key=unique_key)
    out = io.StringIO()
    assert info_key(unique_key, out=out) == 0
    text = out.getvalue()
    assert "(2 versions" in text and "- version 1" in text and "- version 2" in text and "latest" in text
    assert "seed 5" in text and "source src0: 120 cells" in text and "used by 0 runs" in text
    missing = io.StringIO()
    assert info_key(f"{unique_key}-nope", out=missing) == 1
    assert "no lamindb collection with key" in missing.getvalue()
