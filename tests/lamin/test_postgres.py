"""Team sharing: a real PostgreSQL server, shared storage, two users in two processes.

The test starts Debian's PostgreSQL (``apt-get install postgresql``) in a temporary
directory on a free loopback port, as the ``postgres`` user when run as root.
The instance on it (with a shared storage directory) is the session's ``team``
(``tests/lamin/conftest.py``: created once by its admin in a fresh interpreter,
shared with tests/lamin/test_bucket.py). Process A, with its own lamindb settings
directory, connects with the instance's settings file (what an admin hands out;
LaminHub does this online) and registers a collection; process B, with its own
settings directory, connects the same way, resolves the collection by key, loads
batches inside a tracked run; A then finds the run in the shared database.
"""

from __future__ import annotations

import pytest

from .conftest import run_python, start_python

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_two_users_share_a_collection(team, tmp_path):
    shared = team.storage
    user_a, user_b = tmp_path / "user-a", tmp_path / "user-b"
    for d in (user_a, user_b):
        (d / "settings").mkdir(parents=True)
    team.hand_to(user_a / "settings")
    env_a = {"LAMIN_SETTINGS_DIR": str(user_a / "settings"), "LAMIN_CURRENT_INSTANCE": "anonymous/team"}
    env_b = {"LAMIN_SETTINGS_DIR": str(user_b / "settings"), "LAMIN_CURRENT_INSTANCE": "anonymous/team"}

    # A stays up while B works, then reads B's run back from the shared database (one interpreter, not two)
    a = start_python(
        f"""
        import lamindb as ln
        ln.connect("anonymous/team")
        import annshard, annshard.lamin
        from annshard.testing import make_adata
        sources = {{f"s{{i}}": make_adata(150, 30, nnz_per_cell=6, seed=i) for i in range(2)}}
        coll = annshard.write_collection(sources, {str(shared / "team" / "cells.zarr")!r}, seed=0, n_obs_per_shard=100)
        record = annshard.lamin.register(coll, key="team/cells")
        assert ln.setup.settings.instance.dialect == "postgresql"
        print("REGISTERED", record.uid, coll.n_obs, flush=True)
        run_uid = input()  # B's run, once B has finished
        run = ln.Collection.get(record.uid).input_of_runs.get(uid=run_uid)
        print("RUN", run.transform.key, run.params["annshard_loader"]["batch_size"], run.finished_at is not None)
        """,
        env=env_a,
        cwd=user_a,
        stdin=True,
    )
    try:
        uid, n_obs = a.wait_for("REGISTERED").split()
        team.hand_to(user_b / "settings")  # the admin hands the settings file to a second teammate

        b = run_python(
            """
            import lamindb as ln
            ln.connect("anonymous/team")
            ln.track(ln.Transform(key="team/train", kind="function").save(), pypackages=False, stream_tracking=False)
            loader = ln.Collection.get(key="team/cells").loader(batch_size=64, obs_columns=["cell_type"])
            rows = sum(batch.n_obs for batch in loader)
            run = ln.context.run
            ln.finish()
            print("LOADED", run.uid, rows, ln.Collection.get(key="team/cells").uid)
            """,
            env=env_b,
            cwd=user_b,
        )
        assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-4000:]
        run_uid, rows, seen_uid = b.stdout.split("LOADED")[1].split()
        assert rows == n_obs and seen_uid == uid

        a.send(run_uid)
        check = a.result()
    finally:
        a.stop()
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-4000:]
    assert check.stdout.rsplit("\nRUN ", 1)[1].split() == ["team/train", "64", "True"]
