"""Smoke test of the benchmark harness: ``benchmarks/compare.py`` on tiny data, in a subprocess.

It runs both libraries' conversion, decode and loading jobs (each in its own
process) on both kinds of values (raw counts and log1p(CP10k) float32) and
checks the JSON it writes; the training part is skipped to keep the test short
(it is exercised by ``compare.py --quick``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "benchmarks"))  # appended: its modules must never shadow an installed package

pytest.importorskip("annbatch")

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_compare_quick_writes_all_figures(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "compare.py"),
        "--cells", "2000", "--genes", "300", "--files", "2", "--repeats", "1", "--epochs", "2", "--kind", "both",
        "--batch-size", "256", "--settings", "32,16", "--skip", "train", "--no-plot", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=590, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| data | setting (chunk, preload) | annshard cells/s | annbatch cells/s | ratio |" in " ".join(
        proc.stdout.split()
    )
    assert "log1p(CP10k) float32" in proc.stdout and "B: gather thread" in proc.stdout

    res = json.loads((out / "compare.json").read_text())
    assert {"command", "machine", "data", "params", "runs", "summary"} <= set(res)
    assert res["data"]["cells"] == 2000 and res["data"]["n_files"] == 2
    assert set(res["data"]["kinds"]) == {"counts", "lognorm"}
    runs = res["runs"]
    for kind in ("counts", "lognorm"):
        for key in ("convert/annbatch", "convert/annshard", "decode/annbatch", "decode/annshard"):
            assert len(runs[f"{kind}/{key}"]) == 1, (kind, key)
            assert runs[f"{kind}/{key}"][0]["peak_rss_mb"] > 0
        for lib in ("annbatch", "annshard"):
            load = runs[f"{kind}/load/{lib}/32,16"][0]
            assert load["cells"] == 2 * 2000  # two full epochs, every row once each
            # epochs from constructing the loader: the first epoch holds the first batch, the span holds both epochs
            assert 0 < load["first_batch_s"] <= load["first_epoch_s"]
            assert load["seconds"] == pytest.approx(sum(load["epoch_s"]))
            assert load["first_epoch_s"] >= load["epoch_iter_s"][0]
            assert load["cpu_ms_per_1k_cells"] > 0
            assert load["cpu_ms_per_1k_cells"] == pytest.approx(load["cpu_s"] / load["cells"] * 1e6)
        threads = runs[f"{kind}/load/annshard/32,16"][0]["threads_cpu"]["python_threads_s"]
        assert threads["annshard-read"] > 0 and threads["annshard-gather"] > 0 and threads["MainThread"] > 0

    s = res["summary"]
    for kind in ("counts", "lognorm"):
        for lib in ("annbatch", "annshard"):
            for key in (
                "convert_cells_per_s",
                "load_32_16_cells_per_s",
                "load_32_16_cpu_ms_per_1k_cells",
                "load_32_16_first_over_later_epoch",
                "decode_cells_per_s",
            ):
                assert s[kind][lib][key] > 0 and math.isfinite(s[kind][lib][key]), (kind, lib, key)
        assert s[kind]["ratio"]["load_32_16_cells_per_s"] > 0
        assert set(s[kind]["share_of_decode_limit"]) == {"annbatch/32,16", "annshard/32,16"}
        stages = s[kind]["stages"]["32,16"]
        st = stages["cpu_ms_per_1k_cells"]
        assert st["A"] == pytest.approx(st["A_read"] + st["A_decode"])
        parts = st["A"] + st["B_gather"] + st["consumer"] + st["other"]
        assert parts == pytest.approx(st["all"])  # every CPU second of the process is in one stage
        assert set(stages["ceiling_cells_per_s"]) == {"2", "8", "16"}


def test_lognorm_files_hold_log1p_cp10k_of_the_counts() -> None:
    import anndata as ad
    from data import ensure_dataset

    counts, _ = ensure_dataset(600, 50, nnz=20, cells_per_file=300, verbose=False)
    lognorm, meta = ensure_dataset(600, 50, nnz=20, cells_per_file=300, kind="lognorm", verbose=False)
    assert meta["kind"] == "lognorm" and len(lognorm) == len(counts) == 2
    for c, n in zip(counts, lognorm, strict=True):
        a, b = ad.read_h5ad(c), ad.read_h5ad(n)
        assert b.X.dtype == np.float32
        assert (a.obs_names == b.obs_names).all() and (a.var_names == b.var_names).all()
        assert a.obs.equals(b.obs)
        x = a.X.toarray().astype(np.float64)
        want = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)
        np.testing.assert_allclose(b.X.toarray(), want, rtol=1e-6)
        assert (b.X.data != np.round(b.X.data)).any()  # not whole numbers


def test_stage_ceilings() -> None:
    from compare import ceilings

    st = {"A_read": 1.0, "A_decode": 15.0, "B_gather": 2.0, "consumer": 4.0, "other": 0.0, "all": 22.0}
    c16 = ceilings(st, 16)
    assert c16["A"] == pytest.approx(1e6 / (1 + 15 / 15))  # the read thread waits on 15 decode threads
    assert c16["B_gather"] == pytest.approx(6 * 5e5)  # 6 gather threads for 15 decode threads
    assert c16["consumer"] == pytest.approx(2.5e5)
    assert c16["all"] == pytest.approx(16e6 / 22)
    assert c16["pipeline"] == pytest.approx(2.5e5)  # the single-threaded consumer caps it
    c2 = ceilings(st, 2)
    assert c2["A"] == pytest.approx(1e6 / 16) and c2["pipeline"] == pytest.approx(1e6 / 16)
    raw = ceilings({**st, "A_decode": 0.0, "A_raw": 15.0}, 16)  # raw reads scale with the read threads too
    assert raw["A_raw"] == pytest.approx(1e6) and raw["A"] == pytest.approx(c16["A"])


@pytest.mark.timeout(300)
def test_annbatch_conversion_of_files_with_different_obs_index_encodings(tmp_path: Path) -> None:
    """One file with pandas 3's ``str`` index (``nullable-string-array``), one with an object index (``string-array``).

    annbatch 0.3.1's default loader fails on the pair (dask cannot auto-chunk the in-memory object index);
    ``jobs.convert_annbatch`` reads ``obs`` into memory then, and every row arrives once.
    """
    import anndata as ad
    import h5py
    import zarr

    from annshard.testing import write_h5ads

    paths = write_h5ads(tmp_path / "in", [600, 400], 80, nnz_per_cell=10, seed=4)
    a = ad.read_h5ad(paths[1])
    a.obs.index = a.obs.index.astype(object)
    a.write_h5ad(paths[1])
    encodings = set()
    for p in paths:
        with h5py.File(p, "r") as f:
            encodings.add(f["obs/_index"].attrs["encoding-type"])
    assert encodings == {"string-array", "nullable-string-array"}
    out = tmp_path / "annbatch.zarr"
    params = {"paths": [str(p) for p in paths], "out": str(out), "n_obs": 1000}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "jobs.py"), "convert_annbatch", json.dumps(params)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=290, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["cpu_s"] > 0
    g = zarr.open_group(out, mode="r")
    obs = [ad.io.read_elem(g[k]["obs"]) for k in g.group_keys()]
    src = np.concatenate([o["src_path"].astype(str).to_numpy() for o in obs])
    assert sorted(np.unique(src, return_counts=True)[1].tolist()) == [400, 600]
