"""A Loader copied into a forked process works there, and never hangs.

zarrs' Rust thread pool does not survive a fork; a forked copy of a Loader
that has read (or of any process that loaded zarrs) reads through
zarr-python's own pipeline instead. Each scenario runs in a subprocess with a
timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

_TIMEOUT = 240  # generous on a loaded 2-core machine; a hang never ends


def _run(code: str, *args: object) -> dict:
    """Run ``code`` in a fresh interpreter (its own process group) and return the JSON it prints last."""
    cmd = [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the scenario and every worker it forked
        out, err = proc.communicate()
        pytest.fail(f"the forked scenario hung (no result in {_TIMEOUT} s)\nstdout:\n{out}\nstderr:\n{err[-4000:]}")
    assert proc.returncode == 0, f"scenario failed (rc={proc.returncode})\nstdout:\n{out}\nstderr:\n{err[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])


def _once(rows: list[int], n: int) -> None:
    got = np.asarray(rows)
    assert got.shape[0] == n, f"{got.shape[0]} rows delivered, expected {n}"
    assert np.array_equal(np.sort(got), np.arange(n)), "a row is missing or delivered twice"


_DATALOADER = """
    import json, sys
    import numpy as np
    import torch
    import annshard

    path, output = sys.argv[1], sys.argv[2]
    loader = annshard.Loader(path, batch_size=64, chunk_size=8, preload_nchunks=6, output=output)
    parent = [int(i) for b in loader for i in np.asarray(b.index)]  # a validation pass, a sanity check
    dl = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2, multiprocessing_context="fork")
    epochs = [[int(i) for b in dl for i in np.asarray(b.index)] for _ in range(2)]
    again = [int(i) for b in loader for i in np.asarray(b.index)]  # the parent still reads
    print(json.dumps({"parent": parent, "epochs": epochs, "again": again}))
"""


@pytest.mark.parametrize("which", ["csr", "dense"])
def test_dataloader_fork_workers_after_a_parent_epoch(coll2, dense_coll, which):
    built = coll2 if which == "csr" else dense_coll
    res = _run(_DATALOADER, built.path, "numpy" if which == "dense" else "scipy")
    n = built.adata.n_obs
    _once(res["parent"], n)
    for rows in res["epochs"]:
        _once(rows, n)
    assert res["epochs"][0] != res["epochs"][1]  # the workers still advance their epochs
    _once(res["again"], n)


_MP_FORK = """
    import json, multiprocessing, sys
    import numpy as np
    import annshard
    from annshard import _config

    def child(loader, q):
        rows = [int(i) for b in loader for i in np.asarray(b.index)]
        q.put({"rows": rows, "epoch": loader.state_dict()["epoch"], "zarrs": _config.zarrs_usable()})

    if __name__ == "__main__":
        loader = annshard.Loader(sys.argv[1], batch_size=64, chunk_size=8, preload_nchunks=6)
        first = [int(i) for b in loader for i in np.asarray(b.index)]
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(loader, q))
        p.start()
        got = q.get(timeout=200)
        p.join(timeout=60)
        second = [int(i) for b in loader for i in np.asarray(b.index)]
        print(json.dumps({"first": first, "child": got, "second": second, "rc": p.exitcode,
                          "parent_zarrs": _config.zarrs_usable()}))
"""


def test_multiprocessing_fork_of_a_used_loader(coll2):
    res = _run(_MP_FORK, coll2.path)
    n = coll2.adata.n_obs
    assert res["rc"] == 0
    _once(res["first"], n)
    _once(res["child"]["rows"], n)
    _once(res["second"], n)
    # the child reads epoch 1 (the copy's next epoch), as the parent does: the same rows in the same order
    assert res["child"]["epoch"] == 2
    assert res["child"]["rows"] == res["second"]
    assert res["child"]["zarrs"] is False  # zarrs' pool did not survive the fork: zarr-python's pipeline
    assert res["parent_zarrs"] is True


_HALF = """
    import json, os, sys
    import numpy as np
    import annshard

    path = sys.argv[1]
    reference = [int(i) for b in annshard.Loader(path, batch_size=64, chunk_size=8, preload_nchunks=6)
                 for i in np.asarray(b.index)]
    loader = annshard.Loader(path, batch_size=64, chunk_size=8, preload_nchunks=6)
    it = iter(loader)
    before = [int(i) for _ in range(5) for i in np.asarray(next(it).index)]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the inherited iteration refuses at once; a new one reads a whole epoch
        os.close(r)
        try:
            next(it)
            inherited = "no error"
        except RuntimeError as e:
            inherited = str(e)
        rows = [int(i) for b in loader for i in np.asarray(b.index)]
        with os.fdopen(w, "w") as f:
            json.dump({"inherited": inherited, "rows": rows}, f)
        os._exit(0)
    os.close(w)
    after = [int(i) for b in it for i in np.asarray(b.index)]  # the parent finishes its epoch meanwhile
    with os.fdopen(r) as f:
        child = json.load(f)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"reference": reference, "before": before, "after": after, "child": child,
                      "status": status}))
"""


def test_fork_while_an_epoch_is_half_consumed(coll2):
    res = _run(_HALF, coll2.path)
    n = coll2.adata.n_obs
    assert res["status"] == 0
    # the parent's epoch goes on undisturbed: exactly the batches of an uninterrupted epoch
    assert res["before"] + res["after"] == res["reference"]
    assert "cannot continue in process" in res["child"]["inherited"]
    assert "start a new iteration" in res["child"]["inherited"]
    _once(res["child"]["rows"], n)


_ZARR_CONFIG = """
    import json, os, sys
    import zarr
    from annshard import _config

    seen = {}
    with zarr.config.set({"codec_pipeline.path": _config.ZARRS_PIPELINE}):  # the user's own global choice
        with _config.zarr_config():
            seen["parent"] = zarr.config.get("codec_pipeline.path")
        if sys.argv[1] == "load":
            import zarrs  # noqa: F401  (loads zarrs._internal, as any zarrs read does)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            with _config.zarr_config():
                path = zarr.config.get("codec_pipeline.path")
            os.write(w, path.encode())
            os._exit(0)
        os.close(w)
        seen["child"] = os.read(r, 1000).decode()
        os.waitpid(pid, 0)
    print(json.dumps(seen))
"""


@pytest.mark.parametrize("load", ["load", "no-load"])
def test_zarr_config_after_fork(load):
    pytest.importorskip("zarrs")
    from annshard._config import FALLBACK_PIPELINE, ZARRS_PIPELINE

    res = _run(_ZARR_CONFIG, load)
    assert res["parent"] == ZARRS_PIPELINE
    # forked after zarrs was loaded: zarr-python's pipeline, even though the user's config names zarrs
    assert res["child"] == (FALLBACK_PIPELINE if load == "load" else ZARRS_PIPELINE)


_LIGHTNING = """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    from annshard.lightning import AnnshardDataModule

    dm = AnnshardDataModule(sys.argv[1], num_workers=2, multiprocessing_context="fork", batch_size=64,
                            chunk_size=8, preload_nchunks=6, output="scipy")
    parent = [int(i) for b in dm.train_loader for i in np.asarray(b.index)]  # e.g. a sanity check
    workers = [int(i) for b in dm.train_dataloader() for i in np.asarray(b.index)]
    print(json.dumps({"parent": parent, "workers": workers}))
"""


def test_lightning_datamodule_fork_workers(coll2):
    pytest.importorskip("lightning")
    res = _run(_LIGHTNING, coll2.path)
    n = coll2.adata.n_obs
    _once(res["parent"], n)
    _once(res["workers"], n)


_CONFIG_LOCK = """
    import json, os, threading
    import zarr
    from annshard import _config

    held, done = threading.Event(), threading.Event()

    def hold():  # a parent thread inside zarr.config.set at the moment of the fork
        with zarr.config.config_lock:
            held.set()
            done.wait()

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        with _config.zarr_config():
            os.write(w, zarr.config.get("codec_pipeline.path").encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 1000).decode()
    os.waitpid(pid, 0)
    done.set()
    t.join()
    print(json.dumps({"child": child}))
"""


def test_fork_while_a_thread_holds_zarrs_config_lock():
    res = _run(_CONFIG_LOCK)
    assert res["child"]  # the child set annshard's zarr config instead of waiting forever for the lock
