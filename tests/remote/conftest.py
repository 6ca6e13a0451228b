"""A local S3 server for the remote tests: ``moto_server`` in a subprocess on a free loopback port.

zarrs builds its partial decoders while holding the GIL, so an S3 server in the test process itself (moto's
``ThreadedMotoServer``) would deadlock the first remote read: the server runs in its own process, started once
per session and stopped at teardown. Credentials are dummies set in the environment (``AWS_*``), so the code
under test also reads them the way it would in production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("obstore")


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server."""

    endpoint: str
    bucket: str

    @property
    def options(self) -> dict[str, str]:
        """Storage options (fsspec spelling) that reach the server."""
        return {"endpoint_url": self.endpoint}

    def url(self, key: str) -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket}/{key}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _moto_server() -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    return [str(exe)] if exe.exists() else [shutil.which("moto_server") or "moto_server"]


@pytest.fixture(scope="session")
def s3_server():
    """Start ``moto_server`` on 127.0.0.1, create the bucket ``cells``, yield an :class:`S3Server`; stop it after."""
    import obstore
    from obstore.store import S3Store

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen(
        [*_moto_server(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    msg = f"moto_server did not start on {endpoint} (exit code {proc.poll()})"
                    raise RuntimeError(msg) from None
                time.sleep(0.1)
        # creating a bucket is a PUT on its name (obstore has no bucket API)
        req = urllib.request.Request(f"{endpoint}/cells", method="PUT")
        urllib.request.urlopen(req, timeout=5).close()
        store = S3Store("cells", endpoint=endpoint, region="us-east-1", client_options={"allow_http": True})
        obstore.put(store, "probe", b"ok")
        yield S3Server(endpoint=endpoint, bucket="cells")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
