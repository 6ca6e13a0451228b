"""``benchmarks/gpu_check.sh`` on a machine without a GPU (``--cpu-only``): it runs to the end and says what it skipped.

The script's GPU parts (nvidia-smi, the GPU tests, the CUDA modes) run on a GPU machine; here it must still
generate its collection, measure CPU mode and print the table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.timeout(300)
def test_gpu_check_cpu_only(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    cmd = [
        "bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--no-sync", "--cpu-only",
        "--cells", "3000", "--genes", "300", "--nnz", "30", "--files", "2", "--batch-size", "512",
        "--data-dir", str(tmp_path / "data"), "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=290, env={**os.environ})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GPU tests skipped (--cpu-only)" in proc.stdout
    assert "GPU modes skipped (--cpu-only): measuring CPU mode only" in proc.stdout
    assert "| mode | chunk / preload | cells/s | first batch (s) | CPU ms per 1k cells |" in proc.stdout
    rows = json.loads(out.read_text())
    assert [(r["mode"], r["chunk"], r["preload"]) for r in rows] == [("cpu", 32, 256), ("cpu", 256, 32)]
    assert all(r["cells_s"] > 0 and 0 < r["first_s"] and r["cpu_ms_1k"] > 0 for r in rows)
