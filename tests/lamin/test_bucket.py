"""Team sharing on a bucket: lamindb storage locations on the local S3 server (``moto_server`` in a subprocess).

The quick test uses the session's SQLite instance with an extra storage location on the bucket; the slow one
is the two-user story on the local PostgreSQL server (the session's ``team`` instance, shared with
tests/lamin/test_postgres.py): process A connects with the admin's settings file, adds the bucket as a storage
location, writes, registers (shards uploaded by annshard, registered in place), appends and registers a second
version; its local files are deleted; process B, with its own lamindb settings and cache directory, connects,
loads each version over S3 and trains inside a tracked run; A then finds the run in the shared database.

lamindb's S3 session (built by lamindb itself when it saves a storage location or an artifact on a bucket)
probes AWS's public bucket ``lamindata`` once per process when AWS credentials are set; ``AWS_ENDPOINT_URL``
keeps that probe on the local server. The reading process B does not set it: annshard reads registered shards
through its own obstore store, never through lamindb's S3 session, and the network guard would end B at once
(exit code 3) if anything left loopback.
"""

from __future__ import annotations

import json
import shutil
import textwrap
import uuid

import pytest

from .conftest import all_rows, make_collection, run_python, start_python

pytest.importorskip("obstore")
pytestmark = pytest.mark.filterwarnings("ignore::annshard.lamin._usage.NoRunWarning")


def _root(s3_server, prefix: str) -> str:
    return f"s3://{s3_server.bucket}/{prefix}?endpoint_url={s3_server.endpoint}"


@pytest.fixture(scope="module")
def bucket_root(lamin_root, s3_server):
    """A storage location of the session's SQLite instance on the S3 server; ``AWS_ENDPOINT_URL`` set meanwhile."""
    import lamindb as ln

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)  # lamindb's own S3 session (see the module docstring)
        root = _root(s3_server, f"sqlite-{uuid.uuid4().hex[:8]}")
        ln.Storage(root=root).save()
        yield root


def _objects(s3_server, root: str, prefix: str) -> list[str]:
    from annshard._store._location import location

    return sorted(location(root.split("?", 1)[0], s3_server.options).list(prefix))


def test_register_on_a_bucket_and_load_back(bucket_root, s3_server, tmp_path, unique_key, monkeypatch):
    import lamindb as ln

    import annshard.lamin

    monkeypatch.setenv("LAMIN_CACHE_DIR", str(tmp_path / "lamin-cache"))
    storage = ln.Storage.get(root=bucket_root)
    coll = make_collection(tmp_path / "c.zarr")
    expected = all_rows(annshard.Loader(coll, batch_size=50, seed=3))

    record = annshard.lamin.register(coll, key=unique_key, storage=bucket_root)
    shards = list(record.ordered_artifacts.all())
    assert len(shards) == len(coll.shards)
    assert {a.storage.uid for a in shards} == {storage.uid}  # in place on the bucket: lamindb uploaded nothing
    assert all(a.key.startswith(f"annshard/{unique_key}/") and a.key.endswith(".zarr") for a in shards)
    assert record.meta_artifact.storage.uid == storage.uid
    objects = _objects(s3_server, bucket_root, shards[0].key.rsplit("/", 1)[0] + "/")
    assert any(k.endswith(".zarr/zarr.json") for k in objects)
    assert all(any(f"/{s.name}/" in k for k in objects) for s in coll.shards)
    # the same collection again: the same version, nothing put twice
    assert annshard.lamin.register(coll, key=unique_key, storage=bucket_root) == record
    assert _objects(s3_server, bucket_root, shards[0].key.rsplit("/", 1)[0] + "/") == objects

    shutil.rmtree(coll.path)  # from now on everything is on the bucket
    loader = ln.Collection.get(key=unique_key).loader(batch_size=50, seed=3)
    assert loader.n_obs == coll.n_obs
    assert all_rows(loader) == expected
    cached = list((tmp_path / "lamin-cache" / "annshard").rglob("*"))
    assert any(p.is_file() for p in cached)  # the default cache of a registered remote collection


def test_write_and_register_writes_on_the_bucket(bucket_root, s3_server, tmp_path, unique_key, monkeypatch):
    import lamindb as ln

    import annshard.lamin
    from annshard.testing import make_adata

    monkeypatch.setenv("LAMIN_CACHE_DIR", str(tmp_path / "lamin-cache"))
    adata = make_adata(130, 40, nnz_per_cell=8, seed=4)
    record = annshard.lamin.write_and_register([adata], key=unique_key, storage=bucket_root, n_obs_per_shard=50)
    shards = list(record.ordered_artifacts.all())
    assert len(shards) == 3 and all(a.key.startswith(f"annshard/{unique_key}.zarr/shard-") for a in shards)
    assert f"annshard/{unique_key}.zarr/zarr.json" in _objects(s3_server, bucket_root, f"annshard/{unique_key}.zarr/")
    assert sum(b.n_obs for b in ln.Collection.get(key=unique_key).loader(batch_size=64, cache=None)) == 130


def test_failed_registration_on_a_bucket_deletes_what_it_put(bucket_root, s3_server, tmp_path, unique_key, monkeypatch):
    import lamindb as ln

    import annshard.lamin

    coll = make_collection(tmp_path / "c.zarr", sizes=(60, 50))
    before = _objects(s3_server, bucket_root, "annshard/")
    n_art = ln.Artifact.filter().count()

    def save(self, *args, **kwargs):
        msg = "database is locked"
        raise RuntimeError(msg)

    monkeypatch.setattr(ln.Collection, "save", save)
    with pytest.raises(RuntimeError, match="database is locked"):
        annshard.lamin.register(coll, key=unique_key, storage=bucket_root)
    monkeypatch.undo()
    assert _objects(s3_server, bucket_root, "annshard/") == before  # shards, manifest and snapshot deleted again
    assert ln.Artifact.filter().count() == n_art
    record = annshard.lamin.register(coll, key=unique_key, storage=bucket_root)  # and it works once the instance does
    assert annshard.lamin.open_registered(record).n_obs == coll.n_obs


def test_bucket_storage_must_be_a_storage_location(bucket_root, s3_server, tmp_path, unique_key):
    import annshard.lamin
    from annshard import AnnshardError

    coll = make_collection(tmp_path / "c.zarr", sizes=(50,))
    root = _root(s3_server, "never-created")
    with pytest.raises(AnnshardError, match=r"not a storage location of the lamindb instance.*ln\.Storage\(root="):
        annshard.lamin.register(coll, key=unique_key, storage=root)


_DIGEST = """
import hashlib
def digest(loader):
    out = []
    for b in loader:
        h = hashlib.sha256(",".join(map(str, b.index)).encode())
        for part in (b.X.indptr, b.X.indices, b.X.data):
            h.update(part.tobytes())
        out.append(h.hexdigest()[:16])
    return out
"""


@pytest.mark.postgres
@pytest.mark.slow
def test_two_users_share_a_collection_on_a_bucket(team, s3_server, tmp_path):
    root = _root(s3_server, f"team-{uuid.uuid4().hex[:8]}")
    user_a, user_b = tmp_path / "user-a", tmp_path / "user-b"
    for d in (user_a, user_b):
        (d / "settings").mkdir(parents=True)
    team.hand_to(user_a / "settings")
    common = {"LAMIN_CURRENT_INSTANCE": "anonymous/team"}
    env_a = {
        **common,
        "LAMIN_SETTINGS_DIR": str(user_a / "settings"),
        "LAMIN_CACHE_DIR": str(user_a / "cache"),
        "AWS_ENDPOINT_URL": s3_server.endpoint,  # lamindb's own S3 session (see the module docstring)
    }
    env_b = {**common, "LAMIN_SETTINGS_DIR": str(user_b / "settings"), "LAMIN_CACHE_DIR": str(user_b / "cache")}
    # A stays up while B works, then reads B's run back from the shared database (one interpreter, not two)
    a = start_python(
        _DIGEST
        + textwrap.dedent(f"""
        import json
        import lamindb as ln
        ln.connect("anonymous/team")
        import annshard, annshard.lamin
        from annshard.testing import make_adata
        ln.Storage(root={root!r}).save()
        sources = {{f"s{{i}}": make_adata(150, 30, nnz_per_cell=6, seed=i) for i in range(2)}}
        coll = annshard.write_collection(sources, {str(user_a / "staging" / "cells.zarr")!r}, seed=0, n_obs_per_shard=100)
        v1 = annshard.lamin.register(coll, key="team/bucket-cells", storage={root!r})
        ref1 = digest(annshard.Loader(coll, batch_size=64, seed=7))
        coll2 = annshard.append_collection(coll, {{"extra": make_adata(70, 30, nnz_per_cell=6, seed=9)}}, n_obs_per_shard=100)
        v2 = annshard.lamin.register(coll2, key="team/bucket-cells", storage={root!r})
        ref2 = digest(annshard.Loader(coll2, batch_size=64, seed=7))
        assert ln.setup.settings.instance.dialect == "postgresql"
        print("REGISTERED", json.dumps([v1.uid, v2.uid, v2.version, coll.n_obs, coll2.n_obs, ref1, ref2]), flush=True)
        run_uid = input()  # B's run, once B has finished
        run = ln.Run.get(uid=run_uid)
        used = sorted(c.uid for c in run.input_collections.all())
        print("RUN", run.transform.key, run.params["annshard_loader"]["batch_size"], used == sorted([v1.uid, v2.uid]))
        """),
        env=env_a,
        cwd=user_a,
        stdin=True,
    )
    try:
        uid1, uid2, version2, n1, n2, ref1, ref2 = json.loads(a.wait_for("REGISTERED"))
        assert version2 == "2" and n2 == n1 + 70
        # the admin hands the settings file to a second teammate; nothing of A's disk is left but its settings
        team.hand_to(user_b / "settings")
        for d in ("staging", "cache"):
            shutil.rmtree(user_a / d, ignore_errors=True)

        b = run_python(
            _DIGEST
            + textwrap.dedent("""
            import json
            import lamindb as ln
            ln.connect("anonymous/team")
            ln.track(ln.Transform(key="team/train-bucket", kind="function").save(), pypackages=False, stream_tracking=False)
            v1 = ln.Collection.get(key="team/bucket-cells", version="1")
            loader = v1.loader(batch_size=64, seed=7)
            reader = loader._union.collections[0]
            where = [str(reader.path), type(reader.location.zarr_store()).__name__, str(reader.cache.path)]
            got1 = digest(loader)
            got2 = digest(ln.Collection.get(key="team/bucket-cells").loader(batch_size=64, seed=7))
            run = ln.context.run
            ln.finish()
            print("LOADED", json.dumps([run.uid, v1.uid, where, got1, got2]))
            """),
            env=env_b,
            cwd=user_b,
        )
        assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-4000:]
        run_uid, seen1, where, got1, got2 = json.loads(b.stdout.split("LOADED", 1)[1])
        assert seen1 == uid1
        assert where[0].startswith(f"s3://{s3_server.bucket}/") and where[1] == "ObjectStore"
        assert where[2].startswith(str(user_b / "cache"))
        assert got1 == ref1 and got2 == ref2  # each version its own shards, the batches of A's local loader

        a.send(run_uid)
        check = a.result()
    finally:
        a.stop()
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-4000:]
    assert check.stdout.rsplit("\nRUN ", 1)[1].split() == ["team/train-bucket", "64", "True"]
