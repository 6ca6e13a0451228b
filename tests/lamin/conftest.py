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
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# appended to every subprocess script: fail (exit 3) on any non-loopback connection attempt,
# the same audit as tests/conftest.py applies to this process
GUARD = "from annshard.testing import forbid_network\nforbid_network(exit_code=3)\n"


class Started:
    """A fresh interpreter started by :func:`start_python`, its output going to temporary files."""

    def __init__(self, proc: subprocess.Popen, out, err, timeout: float):
        self.proc, self._out, self._err, self._timeout = proc, out, err, timeout
        self._result: subprocess.CompletedProcess | None = None

    def result(self) -> subprocess.CompletedProcess:
        """Wait for the process (killed past its timeout); its CompletedProcess, as ``subprocess.run`` returns."""
        if self._result is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(self._timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                raise
            self._out.seek(0)
            self._err.seek(0)
            self._result = subprocess.CompletedProcess(
                self.proc.args, self.proc.returncode, self._out.read(), self._err.read()
            )
            self._out.close()
            self._err.close()
        return self._result

    def wait_for(self, marker: str) -> str:
        """Wait until the process printed a line starting with ``marker`` (flushed); the rest of that line.

        Fails with the process's output if it ends first or runs past its timeout.
        """
        deadline = time.monotonic() + self._timeout
        while True:
            self._out.seek(0)
            for line in self._out.read().splitlines():
                if line.startswith(marker):
                    return line[len(marker) :].strip()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                self._err.seek(0)
                self._out.seek(0)
                pytest.fail(f"no {marker!r} line: {self._out.read()[-2000:]}{self._err.read()[-4000:]}", pytrace=False)
            time.sleep(0.1)

    def send(self, line: str) -> None:
        """Write ``line`` to the process's standard input (``start_python(..., stdin=True)``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        """Kill the process if it still runs (fixture teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_python(
    code: str, *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300, stdin: bool = False
):
    """Start ``code`` in a fresh interpreter with the network guard; :meth:`Started.result` waits for it.

    With ``stdin``, the test talks to the process (:meth:`Started.send`, :meth:`Started.wait_for`): one
    interpreter does the work of two that would each import lamindb again.

    Independent fresh-interpreter checks started side by side share the machine's cores: each spends most of
    its ~10 s importing lamindb, and the test process only waits meanwhile.
    """
    full_env = {**os.environ, **(env or {})}
    script = GUARD + "\n" + textwrap.dedent(code)
    out = tempfile.TemporaryFile("w+")
    err = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=full_env,
        cwd=cwd,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        text=True,
    )
    return Started(proc, out, err, timeout)


def run_python(code: str, *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run ``code`` in a fresh interpreter with the network guard; return the CompletedProcess."""
    return start_python(code, env=env, cwd=cwd, timeout=timeout).result()


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


@dataclass(frozen=True)
class Team:
    """The instance ``anonymous/team`` on PostgreSQL, as its admin created it: what a teammate is handed."""

    slug: str
    settings_file: Path  # the instance's settings file (what an admin hands out; LaminHub does this online)
    storage: Path  # its default storage root, a directory every user sees

    def hand_to(self, settings_dir: Path) -> None:
        """Copy the instance's settings file into a user's ``LAMIN_SETTINGS_DIR``."""
        (settings_dir / ".lamin").mkdir(parents=True, exist_ok=True)
        shutil.copy(self.settings_file, settings_dir / ".lamin" / self.settings_file.name)


@pytest.fixture(scope="session")
def team(postgres_server, tmp_path_factory) -> Team:
    """A lamindb instance on the session's PostgreSQL server, created once by its admin in a fresh interpreter.

    Creating it (``lamindb_setup.init``: every migration, on PostgreSQL) is most of a two-user story's time; the
    stories of tests/lamin/test_postgres.py and tests/lamin/test_bucket.py share it, under keys of their own.
    """
    base = tmp_path_factory.mktemp("team")
    admin, storage = base / "admin", base / "shared-storage"
    (admin / "settings").mkdir(parents=True)
    db = postgres_server("team")
    env = {"LAMIN_SETTINGS_DIR": str(admin / "settings"), "LAMIN_CURRENT_INSTANCE": "anonymous/team"}
    created = run_python(
        f"""
        import os
        import lamindb_setup as ln_setup
        os.chdir({str(admin)!r})
        ln_setup.init(storage={str(storage)!r}, db={db!r}, name="team")
        import lamindb as ln
        assert ln.setup.settings.instance.dialect == "postgresql"
        print("CREATED", ln.setup.settings.instance.slug)
        """,
        env=env,
    )
    assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-4000:]
    assert created.stdout.split("CREATED", 1)[1].split() == ["anonymous/team"]
    settings_file = admin / "settings" / ".lamin" / "instance--anonymous--team.env"
    assert settings_file.is_file()
    return Team(slug="anonymous/team", settings_file=settings_file, storage=storage)
