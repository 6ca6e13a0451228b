"""A real SQLite lamindb instance for the session, and small collections on disk.

The instance (the ``lamin_root`` fixture) lives in ``tests/conftest.py``, so that
tests/scvi can use it too; it lives in a temporary directory and
``tests/conftest.py`` has already pointed ``LAMIN_SETTINGS_DIR`` at a throwaway
directory, so the user's ``~/.lamin`` is never read or changed. Subprocesses
connect through ``LAMIN_CURRENT_INSTANCE``.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

# appended to every subprocess script: fail (exit 3) on any non-loopback connection attempt,
# the same audit as tests/conftest.py applies to this process
GUARD = "from annshard.testing import forbid_network\nforbid_network(exit_code=3)\n"


def run_python(code: str, *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run ``code`` in a fresh interpreter with the network guard; return the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    script = GUARD + "\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def subprocess_env(lamin_root) -> dict[str, str]:
    """Environment for subprocesses that use the session's instance."""
    import lamindb_setup as ln_setup

    return {"LAMIN_CURRENT_INSTANCE": ln_setup.settings.instance.slug}


def make_collection(path: Path, *, sizes=(120, 90, 60), n_vars=40, seed=0, data_seed=0, n_obs_per_shard=100):
    """A small collection written by annshard from in-memory AnnData."""
    import annshard
    from annshard.testing import make_adata

    sources = {
        f"src{i}": make_adata(n, n_vars, nnz_per_cell=8, seed=data_seed + i, obs_prefix=f"s{data_seed + i}")
        for i, n in enumerate(sizes)
    }
    return annshard.write_collection(sources, path, seed=seed, n_obs_per_shard=n_obs_per_shard)


def append_to(coll, *, n=70, n_vars=40, data_seed=50):
    """Append a small source to ``coll``; return the updated collection."""
    import annshard
    from annshard.testing import make_adata

    adata = make_adata(n, n_vars, nnz_per_cell=8, seed=data_seed, obs_prefix=f"a{data_seed}")
    return annshard.append_collection(coll, {f"extra{data_seed}": adata}, n_obs_per_shard=100)


def all_rows(loader) -> list[int]:
    """Every global row index the loader yields in one epoch, in order."""
    out: list[int] = []
    for batch in loader:
        out.extend(int(i) for i in batch.index)
    return out


_counter = iter(range(10**6))


@pytest.fixture
def unique_key(request) -> str:
    """A collection key no other test uses."""
    return f"test/{request.node.name.replace('[', '-').replace(']', '')}-{next(_counter)}"


# -- one local PostgreSQL server for the session (tests/lamin/test_postgres.py, tests/lamin/test_bucket.py) --------
def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # /usr/local/bin may hold links to a few of the binaries only
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """``createdb(name) -> "postgresql://..."`` of a server on loopback, started once per session; stopped after."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found; install Debian's `postgresql` package")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without `runuser`: cannot start PostgreSQL as a non-root user")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server")
        prefix = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="annshard-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
        os.chown(sock, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def pg(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, check=check, timeout=120)

    def createdb(name: str) -> str:
        try:
            pg(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "lamin", name)
        except subprocess.CalledProcessError as e:
            pytest.fail(f"PostgreSQL createdb {name} failed: {e.stderr}", pytrace=False)
        return f"postgresql://lamin:lamin@127.0.0.1:{port}/{name}"

    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        pg(str(bindir / "initdb"), "-D", str(data), "-U", "lamin", "--auth=trust", "-E", "UTF8")
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "server.log"), "-w", "start")
        yield createdb
    except subprocess.CalledProcessError as e:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        pytest.fail(f"PostgreSQL setup failed: {e.cmd}: {e.stderr}\n{log[-2000:]}")
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def postgres(postgres_server) -> str:
    """``postgresql://...`` of a fresh, empty database on the session's server (one per test: each makes an instance)."""
    return postgres_server(f"annshard{next(_databases)}")
