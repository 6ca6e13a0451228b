"""No lamindb instance configured: a clear message saying how to make one (API and CLI)."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import make_collection, run_python


def _bare_env(tmp_path):
    settings = tmp_path / "settings"
    settings.mkdir()
    return {"LAMIN_SETTINGS_DIR": str(settings)}


def test_no_instance_api(tmp_path):
    coll = make_collection(tmp_path / "c.zarr")
    env = {k: v for k, v in os.environ.items() if k != "LAMIN_CURRENT_INSTANCE"} | _bare_env(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import annshard.lamin\ntry:\n    annshard.lamin.register({str(coll.path)!r}, key='x')\n"
            "except annshard.lamin.NoInstanceError as e:\n    print('ERR', e)",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERR no lamindb instance is configured" in result.stdout
    assert "lamin init --storage ./data" in result.stdout


def test_no_instance_cli(tmp_path):
    coll = make_collection(tmp_path / "c.zarr")
    env = {k: v for k, v in os.environ.items() if k != "LAMIN_CURRENT_INSTANCE"} | _bare_env(tmp_path)
    os_env_backup = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        result = run_python(
            f"from annshard._cli import main\nraise SystemExit(main(['register', {str(coll.path)!r}, '--key', 'x']))",
        )
    finally:
        os.environ.clear()
        os.environ.update(os_env_backup)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "lamin init --storage ./data" in result.stderr


def test_same_name_elsewhere_is_refused_and_free_name_picks_another(tmp_path):
    """An instance name already kept for another directory's storage: a clear error, never that other database."""
    env = {k: v for k, v in os.environ.items() if k != "LAMIN_CURRENT_INSTANCE"} | _bare_env(tmp_path)
    code = (
        "from pathlib import Path\n"
        "from annshard.lamin import ensure_local_instance\n"
        "from annshard.lamin._instance import free_instance_name\n"
        f"a, b = Path({str(tmp_path / 'a')!r}), Path({str(tmp_path / 'b')!r})\n"
        "assert free_instance_name(a, 'demo') == 'demo'\n"
        "first = ensure_local_instance(a, name='demo')\n"
        "assert Path(first.storage.root_as_str) == a.resolve()\n"
        "assert free_instance_name(a, 'demo') == 'demo'  # the same directory: the same instance again\n"
        "try:\n"
        "    ensure_local_instance(b, name='demo')\n"
        "except ValueError as e:\n"
        "    print('ERR', e)\n"
        "other = free_instance_name(b, 'demo')\n"
        "print('NAME', other)\n"
        "second = ensure_local_instance(b, name=other)\n"
        "assert Path(second.storage.root_as_str) == b.resolve(), second.storage.root_as_str\n"
        "assert (b / '.lamindb' / 'lamin.db').is_file()\n"
        "print('OK')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"already exists on this machine with its storage in {(tmp_path / 'a').resolve()}" in result.stdout
    assert "NAME demo-" in result.stdout and "OK" in result.stdout
