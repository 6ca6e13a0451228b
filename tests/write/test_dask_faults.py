"""Conversion on dask.distributed under stress: per-worker peak memory, a killed worker, a killed driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import annshard
from annshard.testing import assert_identical_collections, write_h5ads

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

BUDGET = 16 * 2**20
# beyond the budget and the imports: as tests/write/test_memory.py, plus the worker's share of the task's
# arguments (the pickled layout) and dask's own buffers
FIXED_OVERHEAD = 48 * 2**20


def _rss(key: str = "VmHWM") -> int:
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1]) * 1024


def _warm_and_reset() -> int:
    import anndata, h5py, scipy.sparse, zarr  # noqa: E401, F401, I001

    import annshard._write  # noqa: F401

    with open("/proc/self/clear_refs", "w") as f:  # VmHWM := VmRSS from here on
        f.write("5")
    return _rss("VmRSS")


@pytest.fixture
def cluster(dask_cluster):
    """The session's two-worker cluster (``tests/conftest.py``), shared with tests/write/test_dask.py."""
    return dask_cluster


@pytest.fixture
def client(dask_client):
    """The session's client, with both workers up (a test before may have killed one; the nanny restarts it)."""
    dask_client.wait_for_workers(2, timeout=60)
    return dask_client


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask-big")
    paths = write_h5ads(d / "in", [5000] * 3, 3000, nnz_per_cell=600, seed=1)
    ref = annshard.write_collection(paths, d / "ref.zarr", memory_budget=BUDGET, seed=2)
    return paths, ref


def _write(paths, out, client):
    return annshard.write_collection(paths, out, memory_budget=BUDGET, seed=2, client=client)


def test_worker_peak_rss_is_bounded_by_the_budget(data, tmp_path, client):
    paths, ref = data
    assert sum(p.stat().st_size for p in paths) > 4 * BUDGET
    base = client.run(_warm_and_reset)
    got = _write(paths, tmp_path / "o.zarr", client)
    peak = client.run(_rss)
    assert_identical_collections(ref.path, got.path)
    for w, hwm in peak.items():
        over = hwm - base[w]
        print(f"worker {w}: baseline {base[w] / 2**20:.0f} MiB, peak over baseline {over / 2**20:.0f} MiB")
        assert over < BUDGET + FIXED_OVERHEAD, f"worker {w}: peak RSS {over / 2**20:.0f} MiB over its baseline"


def test_a_killed_worker_changes_nothing(data, tmp_path, client):
    paths, ref = data
    out = tmp_path / "o.zarr"
    pids = list(client.run(os.getpid).values())
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["coll"] = _write(paths, out, client)
        except BaseException as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".o.zarr.annshard-tmp-*/.scatter/s*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert t.is_alive(), "the write ended before a worker was killed"
    os.kill(pids[0], signal.SIGKILL)  # mid-scatter: its task is rescheduled on the other worker (or its restart)
    t.join(300)
    assert "error" not in result, result.get("error")
    assert_identical_collections(ref.path, result["coll"].path)  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


_DRIVER = """
import sys, annshard, distributed
client = distributed.Client(sys.argv[1])
annshard.write_collection(sys.argv[2:-1], sys.argv[-1], memory_budget={budget}, seed=2, client=client)
"""


def test_a_killed_driver_leaves_no_collection_and_the_retry_cleans_up(data, tmp_path, cluster, client):
    paths, ref = data
    out = tmp_path / "o.zarr"
    code = _DRIVER.format(budget=BUDGET)
    proc = subprocess.Popen([sys.executable, "-c", code, cluster.scheduler_address, *map(str, paths), str(out)])
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".o.zarr.annshard-tmp-*/.scatter/s*")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the driver ended before it was killed"
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    stale = list(tmp_path.glob(".o.zarr.annshard-tmp-*"))
    assert stale, "the killed driver's staging is left"
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        annshard.open_collection(out)
    # the scheduler forgets the dead client's tasks, and the workers finish the ones they were running (dask
    # cannot stop a running task); then the retry removes the stale staging
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        or any(client.run(lambda dask_worker: len(dask_worker.state.executing)).values())
    ):
        time.sleep(0.1)
    got = _write(paths, out, client)
    assert_identical_collections(ref.path, got.path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]
