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
