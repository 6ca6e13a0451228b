"""Peak memory of a write is bounded by the budget plus a fixed overhead, not by the input size."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

BUDGET = 16 * 2**20
# what the process needs beyond the budget and beyond importing annshard+anndata: planning (var, obs schema),
# zarrs' thread pools and codec buffers, h5py's caches for the one open source
FIXED_OVERHEAD = 40 * 2**20

# the peak RSS of the child's own address space: VmHWM (ru_maxrss would carry over the parent's peak across the
# fork/exec that starts it)
_PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) * 1024"

_BASELINE = f"""
import json
import anndata, h5py, zarr, scipy.sparse, annshard, annshard._write
print(json.dumps({{"rss": {_PEAK}}}))
"""

_WRITE = """
import json, sys
import anndata, h5py, zarr, scipy.sparse, annshard, annshard._write
coll = annshard.write_collection(sys.argv[1:-1], sys.argv[-1], memory_budget={budget})
print(json.dumps({{"rss": PEAK, "n_obs": coll.n_obs, "shards": len(coll.shards)}}))
""".replace("PEAK", _PEAK.replace("{", "{{").replace("}", "}}"))


def _run(code: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads VmHWM from /proc")
def test_peak_rss_bounded_by_budget(tmp_path):
    from annshard.testing import write_h5ads

    paths = write_h5ads(tmp_path / "in", [5000] * 3, 3000, nnz_per_cell=600, seed=1)
    input_bytes = sum(p.stat().st_size for p in paths)
    assert input_bytes > 4 * BUDGET  # several times the budget
    base = _run(_BASELINE)["rss"]
    out = _run(_WRITE.format(budget=BUDGET), *map(str, paths), str(tmp_path / "o.zarr"))
    assert out["n_obs"] == 15000 and out["shards"] > 4
    over = out["rss"] - base
    print(f"input {input_bytes / 2**20:.0f} MiB, baseline {base / 2**20:.0f} MiB, over baseline {over / 2**20:.0f} MiB")
    assert over < BUDGET + FIXED_OVERHEAD, (
        f"peak RSS {over / 2**20:.0f} MiB over baseline for {input_bytes / 2**20:.0f} MiB of input"
    )
