"""``ln.Collection(...).loader()`` with no annshard import, in fresh processes, across ``ln.connect()``."""

from __future__ import annotations

import sys

import pytest

from annshard.lamin import register
from annshard.lamin._plugin import TARGET, install, loader, patch_collection_class

from .conftest import make_collection, run_python


@pytest.fixture(scope="module")
def registered(lamin_root):
    coll = make_collection(lamin_root / "plugin" / "coll.zarr", n_obs_per_shard=64)
    return register(coll, key="test/plugin")


def test_plugin_is_installed_in_this_process(lamin_root):
    import lamindb as ln

    assert ln.Collection.loader is loader
    install()  # idempotent
    assert sum(type(f).__name__ == "_CollectionModuleFinder" for f in sys.meta_path) == 1
    assert TARGET in sys.modules


def test_patch_never_replaces_a_foreign_loader():
    class Other:
        def loader(self):
            return "theirs"

    patch_collection_class(Other)
    assert Other().loader() == "theirs"


def test_fresh_process_without_annshard_import(registered, subprocess_env):
    result = run_python(
        f"""
        import sys
        import lamindb as ln
        assert "annshard._load._loader" not in sys.modules, "annshard's loader imported too early"
        record = ln.Collection.get(key={registered.key!r})
        loader = record.loader(batch_size=50)
        print(type(loader).__module__, loader.n_obs, sum(b.n_obs for b in loader))
        """,
        env=subprocess_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    n = registered.meta_artifact.features.get_values()["annshard_n_obs"]
    assert result.stdout.strip().splitlines()[-1] == f"annshard._load._loader {n} {n}"


def test_loader_survives_connect(registered, subprocess_env, tmp_path):
    """Switch to another instance and back: lamindb re-imports its modules, the plugin patches them again."""
    slug = subprocess_env["LAMIN_CURRENT_INSTANCE"]
    result = run_python(
        f"""
        import os
        import lamindb as ln
        import lamindb_setup as ln_setup
        assert ln.Collection.filter(key={registered.key!r}).count() == 1
        first = id(ln.Collection)  # an id: lamindb rebinds module globals that hold its classes
        os.chdir({str(tmp_path)!r})
        ln_setup.init(storage={str(tmp_path / "other")!r}, name="annshard-other")
        assert ln.setup.settings.instance.name == "annshard-other"
        assert id(ln.Collection) != first, "lamindb did not re-import its models"
        assert hasattr(ln.Collection, "loader")
        assert ln.Collection.filter(key={registered.key!r}).count() == 0
        ln.connect({slug!r})
        loader = ln.Collection.get(key={registered.key!r}).loader(batch_size=64)
        print("rows", sum(b.n_obs for b in loader))
        """,
        env=subprocess_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    n = registered.meta_artifact.features.get_values()["annshard_n_obs"]
    assert result.stdout.strip().splitlines()[-1] == f"rows {n}"
