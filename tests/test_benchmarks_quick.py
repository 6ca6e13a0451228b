"""Smoke test of the benchmark harness: ``benchmarks/compare.py`` on tiny data, in a subprocess.

It runs both libraries' conversion, decode and loading jobs (each in its own
process) and checks the JSON it writes; the training part is skipped to keep
the test short (it is exercised by ``compare.py --quick``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("annbatch")


@pytest.mark.timeout(240)
def test_compare_quick_writes_all_figures(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "compare.py"),
        "--cells", "2000", "--genes", "300", "--files", "2", "--repeats", "1", "--epochs", "1",
        "--batch-size", "256", "--settings", "32,16", "--skip", "train", "--no-plot", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=230, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "annshard/annbatch" in proc.stdout

    res = json.loads((out / "compare.json").read_text())
    assert {"command", "machine", "data", "params", "runs", "summary"} <= set(res)
    assert res["data"]["cells"] == 2000 and res["data"]["n_files"] == 2
    runs = res["runs"]
    for key in (
        "convert/annbatch",
        "convert/annshard",
        "decode/annbatch",
        "decode/annshard",
        "load/annbatch/32,16",
        "load/annshard/32,16",
    ):
        assert len(runs[key]) == 1, key
        assert runs[key][0]["peak_rss_mb"] > 0
    for lib in ("annbatch", "annshard"):
        load = runs[f"load/{lib}/32,16"][0]
        assert load["cells"] == 2000  # one full epoch, every row once
        assert load["first_batch_s"] > 0
    s = res["summary"]
    for lib in ("annbatch", "annshard"):
        for key in ("convert_cells_per_s", "load_32_16_cells_per_s", "decode_cells_per_s"):
            assert s[lib][key] > 0 and math.isfinite(s[lib][key]), (lib, key)
    assert s["ratio"]["load_32_16_cells_per_s"] > 0
    assert set(s["share_of_decode_limit"]) == {"annbatch/32,16", "annshard/32,16"}
