"""Session-wide test setup.

The offline guarantee is checked here for every test: an audit hook records
any attempt to open a non-loopback network connection (or resolve a
non-local host name), and the test that made it fails.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from annshard.testing import forbid_network

_violations: list[str] = []
_lock = threading.Lock()


def _record(what: str) -> None:
    with _lock:
        _violations.append(what)


forbid_network(on_violation=_record)

# lamindb/lamin-setup must never try to reach the hub in tests
os.environ.setdefault("LAMIN_TESTING", "true")

# lamindb-setup reads its settings directory once, when it is imported: point it at a throwaway one so that
# tests never read or change the user's ~/.lamin (instances, current user); subprocesses inherit it
_lamin_settings = tempfile.mkdtemp(prefix="annshard-test-lamin-")
os.environ["LAMIN_SETTINGS_DIR"] = _lamin_settings
os.environ.pop("LAMIN_CURRENT_INSTANCE", None)
atexit.register(shutil.rmtree, _lamin_settings, True)


@pytest.fixture(autouse=True)
def _no_network():
    """Fail any test that attempted a network call outside the loopback range."""
    with _lock:
        _violations.clear()
    yield
    with _lock:
        seen = list(_violations)
        _violations.clear()
    if seen:
        pytest.fail("test attempted network access: " + "; ".join(seen[:5]), pytrace=False)


@pytest.fixture
def network_violations() -> list[str]:
    """The live list of network attempts recorded during the current test."""
    return _violations


# -- one SQLite lamindb instance for the session (tests/lamin, tests/scvi/test_lamin.py) ---------------------------
LAMIN_INSTANCE = "annshard-test"


@pytest.fixture(scope="session")
def lamin_root(tmp_path_factory) -> Path:
    """Storage root of the session's SQLite instance (created and connected in this process).

    ``lamindb_setup.init`` writes a ``.lamin/current_instance`` marker into the working directory, so it runs
    with a temporary directory as working directory. Used by tests/lamin and tests/scvi/test_lamin.py.
    """
    home = tmp_path_factory.mktemp("lamin")
    storage = home / "storage"
    cwd = os.getcwd()
    os.chdir(home)
    try:
        import lamindb_setup as ln_setup

        ln_setup.init(storage=str(storage), name=LAMIN_INSTANCE)
    finally:
        os.chdir(cwd)
    import lamindb as ln

    assert ln.setup.settings.instance.name == LAMIN_INSTANCE
    return storage.resolve()


# -- one local S3 server for the session (tests/remote, tests/lamin/test_bucket.py) -----------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _moto_server() -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    return [str(exe)] if exe.exists() else [shutil.which("moto_server") or "moto_server"]


@pytest.fixture(scope="session")
def s3_server():
    """Start ``moto_server`` on 127.0.0.1, create the bucket ``cells``, yield an :class:`S3Server`; stop it after.

    zarrs builds its partial decoders while holding the GIL, so an S3 server in the test process itself (moto's
    ``ThreadedMotoServer``) would deadlock the first remote read: the server runs in its own process, started once
    per session (tests/remote and tests/lamin/test_bucket.py share it) and stopped at teardown. Credentials are
    dummies set in the environment (``AWS_*``), so the code under test also reads them the way it would in
    production.
    """
    pytest.importorskip("obstore")
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


# -- one dask.distributed cluster for the session (tests/write/test_dask.py, tests/write/test_dask_faults.py) --------
@pytest.fixture(scope="session")
def dask_cluster():
    """Two single-threaded worker processes on loopback, started once for every dask test of the session.

    A test that kills a worker waits for the nanny's restart before it ends (``client.wait_for_workers(2)``), so
    the next test finds two workers again.
    """
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # loopback, any free port (None still serves HTTP on 8787)
        worker_dashboard_address=None,
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def dask_client(dask_cluster):
    """A client of :func:`dask_cluster` (never the default client: tests pass it, or make it current, themselves)."""
    import distributed

    with distributed.Client(dask_cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


# -- sources with layers and obsm (tests/write/test_layers.py, tests/load/test_layers.py) --------------------------
def _layer_adata(prefix: str, n: int, var_names: list[str], seed: int, *, counts_dense: bool, pca: int, spliced: bool):
    """An AnnData with pandas' default dtypes: normalised CSR X, a counts layer, a dense layer and two obsm arrays."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    m = len(var_names)
    counts = sp.random(n, m, density=0.2, format="csr", dtype=np.float32, rng=rng)
    counts.data = rng.integers(1, 300, counts.nnz).astype(np.float32)
    X = counts.copy()
    X.data = np.log1p(X.data / 7.0).astype(np.float32)
    obs = pd.DataFrame({"cell_type": rng.choice(["B", "T", "NK"], n)}, index=[f"{prefix}-cell{i}" for i in range(n)])
    a = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=var_names))
    a.layers["counts"] = counts.toarray() if counts_dense else counts
    a.layers["dense_l"] = rng.normal(size=(n, m))
    if spliced:
        a.layers["spliced"] = counts.copy()
    a.obsm["X_pca"] = rng.normal(size=(n, pca)).astype(np.float32)
    a.obsm["X_umap"] = rng.normal(size=(n, 2))
    return a


@pytest.fixture(scope="session")
def layer_sources(tmp_path_factory) -> dict:
    """Files written by anndata (mixed .h5ad and zarr): ``{"a.h5ad": (path, adata as anndata reads it), ...}``.

    ``a.h5ad`` and ``b.zarr`` share 36 of their genes (b's in reverse order, plus 4 of its own); ``a`` has a
    ``spliced`` layer ``b`` lacks; ``c.h5ad`` has a 5-column ``X_pca`` (6 elsewhere); ``d.zarr`` fits ``a``.
    """

    import anndata as ad

    root = tmp_path_factory.mktemp("layer-sources")
    genes = [f"g{i}" for i in range(40)]
    specs = {
        "a.h5ad": _layer_adata("a", 240, genes, 1, counts_dense=False, pca=6, spliced=True),
        "b.zarr": _layer_adata(
            "b", 160, genes[::-1][:36] + [f"h{i}" for i in range(4)], 2, counts_dense=True, pca=6, spliced=False
        ),
        "c.h5ad": _layer_adata("c", 50, genes, 3, counts_dense=False, pca=5, spliced=False),
        "d.zarr": _layer_adata("d", 90, genes, 4, counts_dense=False, pca=6, spliced=True),
    }
    out = {}
    for name, a in specs.items():
        path = root / name
        if name.endswith(".h5ad"):
            a.write_h5ad(path)
            back = ad.read_h5ad(path)
        else:
            a.write_zarr(path)
            back = ad.read_zarr(path)
        out[name] = (path, back)
    return out


@pytest.fixture(scope="session")
def aot_dir(tmp_path_factory):
    """A cache directory holding the ahead-of-time module, built once (by the background build, waited for)."""
    pytest.importorskip("numba")
    import numpy as np

    from annshard import _kernel, _kernel_aot

    path = tmp_path_factory.mktemp("aot-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_kernel_aot.CACHE_ENV, str(path))
        mp.setattr(_kernel, "_aot", {"tried": False, "module": None, "path": None, "build": None})
        mp.setattr(_kernel, "_ready", {})
        mp.setenv(_kernel.GATHER_ENV, "aot")
        key = (np.dtype("uint16"), np.dtype("uint8"), np.dtype("int32"), np.dtype("float32"))
        assert _kernel.fused_kernel(*key) is not None
        assert (built := _kernel_aot.module_path(_kernel._gather)) is not None and built.exists()
    return path


@pytest.fixture
def aot(aot_dir, monkeypatch):
    """``ANNSHARD_GATHER=aot`` with the module of :func:`aot_dir`, loaded afresh in this test."""
    from annshard import _kernel, _kernel_aot

    monkeypatch.setenv(_kernel_aot.CACHE_ENV, str(aot_dir))
    monkeypatch.setattr(_kernel, "_aot", {"tried": False, "module": None, "path": None, "build": None})
    monkeypatch.setattr(_kernel, "_ready", {})
    monkeypatch.setenv(_kernel.GATHER_ENV, "aot")
    return aot_dir
