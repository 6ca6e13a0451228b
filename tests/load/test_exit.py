"""Leaving a loop early and exiting the interpreter is clean (no abort from a killed decode thread)."""

from __future__ import annotations

import subprocess
import sys


def test_exit_mid_epoch_is_clean(coll):
    code = f"""
import annshard
loader = annshard.Loader({str(coll.path)!r}, batch_size=64, chunk_size=4, preload_nchunks=8)
it = iter(loader)
next(it)
next(it)
print("left early")
"""
    for _ in range(3):  # the abort it guards against was intermittent
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "left early" in out.stdout
        assert "FATAL" not in out.stderr
