"""The README's main job, ``annshard demo``, end to end in a subprocess: offline, and re-runnable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# fail (exit 3) on any non-loopback connection attempt, the same audit as tests/conftest.py applies in-process
GUARD = (
    "from annshard.testing import forbid_network\n"
    "forbid_network(exit_code=3)\n"
    "import sys\n"
    "from annshard._cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


@pytest.mark.slow
def test_demo_runs_offline_and_again(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LAMIN_CURRENT_INSTANCE"}
    env["LAMIN_SETTINGS_DIR"] = str(tmp_path / "settings")  # a user with no lamindb settings at all
    args = [sys.executable, "-c", GUARD, "demo", "--cells", "3000", "--genes", "200", "--epochs", "2"]
    first = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert "registered 'demo/synthetic-cells' version 1" in out
    assert out.count("  source    demo/raw/dataset-") == 3
    assert "epoch 2: 3,000 cells" in out and "cells/s" in out
    assert "read by run" in out and "batch_size=2048" in out
    assert (tmp_path / "annshard-demo" / "lamindb" / ".lamindb" / "lamin.db").is_file()
    assert not (tmp_path / ".lamin").exists()  # lamindb's directory marker stays inside the demo directory
    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "reusing collection" in second.stdout
    assert "registered 'demo/synthetic-cells' version 1" in second.stdout  # same content: same version
    assert "read by 2 runs so far" in second.stdout
    # a second checkout on the same machine (the same lamindb settings): its own instance, not the first one's
    elsewhere = tmp_path / "clone2"
    elsewhere.mkdir()
    third = subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "registered 'demo/synthetic-cells' version 1" in third.stdout
    assert (elsewhere / "annshard-demo" / "lamindb" / ".lamindb" / "lamin.db").is_file()
