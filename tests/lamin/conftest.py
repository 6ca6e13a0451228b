"""A real SQLite lamindb instance for the session, and small collections on disk.

The instance lives in a temporary directory; ``tests/conftest.py`` has already
pointed ``LAMIN_SETTINGS_DIR`` at a throwaway directory, so the user's
``~/.lamin`` is never read or changed. ``lamindb_setup.init`` writes a
``.lamin/current_instance`` marker into the working directory, so it runs with
the temporary directory as working directory. Subprocesses connect through
``LAMIN_CURRENT_INSTANCE``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

INSTANCE = "annshard-test"

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
def lamin_root(tmp_path_factory) -> Path:
    """Storage root of the session's SQLite instance (created and connected in this process)."""
    home = tmp_path_factory.mktemp("lamin")
    storage = home / "storage"
    cwd = os.getcwd()
    os.chdir(home)
    try:
        import lamindb_setup as ln_setup

        ln_setup.init(storage=str(storage), name=INSTANCE)
    finally:
        os.chdir(cwd)
    import lamindb as ln

    assert ln.setup.settings.instance.name == INSTANCE
    return storage.resolve()


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
