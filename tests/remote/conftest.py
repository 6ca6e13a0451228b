"""Remote tests: a collection uploaded to the session's local S3 server (``s3_server`` in ``tests/conftest.py``).

The server is one ``moto_server`` subprocess for the whole session, shared with tests/lamin/test_bucket.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("obstore")


@dataclass(frozen=True)
class Uploaded:
    """A collection written on local disk by ``write_collection`` and uploaded to the S3 server."""

    local: Path
    url: str
    options: dict[str, str]


@pytest.fixture(scope="session")
def uploaded(s3_server, tmp_path_factory) -> Uploaded:
    """A 3-shard collection (1200 cells, obs ``cell_type``) on disk and the same bytes at ``s3://cells/ro/coll.zarr``."""
    import annshard
    from annshard._store._location import location
    from annshard._store._upload import upload_collection
    from annshard.testing import write_h5ads

    d = tmp_path_factory.mktemp("remote-src")
    files = write_h5ads(d / "h5", [700, 500], n_vars=120, nnz_per_cell=20, seed=3)
    coll = annshard.write_collection(files, d / "coll.zarr", seed=5, n_obs_per_shard=400, obs_columns=["cell_type"])
    url = s3_server.url("ro/coll.zarr")
    upload_collection(coll.path, location(url, s3_server.options), [s.name for s in coll.shards])
    return Uploaded(local=coll.path, url=url, options=s3_server.options)
