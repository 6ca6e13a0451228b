"""One measured benchmark job per process: ``python benchmarks/jobs.py <job> '<json params>'``.

Each job prints one JSON line with its figures, including ``peak_rss_mb``
(this process's peak resident set size) and ``rss_base_mb`` (its RSS after
imports, before the measured work). Run by :mod:`harness` so every job
starts from a fresh interpreter and the two libraries never share a heap.

Jobs
----
convert_annbatch / convert_annshard
    ``.h5ad`` files -> a shuffled collection.
load_annbatch / load_annshard
    ``epochs`` full epochs over a collection (scipy CSR + one categorical obs column), timed from
    constructing the loader (time to first batch included), with the process's CPU (user + sys, all
    threads) over that span and its split by thread (see :class:`ThreadCPU`).
train_annbatch / train_annshard / train_compute
    one epoch of a small torch model over a loader, or over in-memory batches (compute only).
decode
    decode every ``X`` chunk of every shard of a collection (the decode limit).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from typing import Any

import numpy as np

JOBS: dict[str, Any] = {}


def job(fn):
    JOBS[fn.__name__] = fn
    return fn


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """Peak RSS of this process's own address space.

    ``VmHWM`` rather than ``getrusage(...).ru_maxrss``: Linux carries the parent's
    RSS at ``fork`` into the child's ``ru_maxrss``, so a large parent would
    inflate every child's figure.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _zarrs_for_annbatch() -> None:
    import zarr

    zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})


# -- conversion -----------------------------------------------------------------------------------
def _index_encodings(paths: list[str]) -> set[str]:
    """The ``encoding-type`` of each ``.h5ad`` file's ``obs`` index (``string-array`` / ``nullable-string-array``)."""
    import h5py

    out = set()
    for path in paths:
        with h5py.File(path, "r") as f:
            obs = f["obs"]
            out.add(str(obs[obs.attrs.get("_index", "_index")].attrs["encoding-type"]))
    return out


def _obs_in_memory(path: str):
    """annbatch's lazy reading of one file, with ``obs`` read into memory (a user's ``load_adata`` work-around).

    annbatch 0.3.1's default loader reads a ``nullable-string-array`` obs index (pandas 3 ``str``, anndata 0.13)
    into memory but leaves a ``string-array`` (object) one as a dask array; ``anndata.concat`` of the two
    (xarray) then asks dask to auto-chunk the in-memory one and fails with ``NotImplementedError: Can not use auto
    rechunking with object dtype``. Reading ``obs`` (a few columns of 50k rows) into memory makes both alike.
    """
    import anndata as ad

    adata = ad.experimental.read_lazy(path, load_annotation_index=True)
    adata.obs = adata.obs.to_memory()
    return adata


@job
def convert_annbatch(p: dict) -> dict:
    import annbatch
    import anndata as ad  # noqa: F401

    _zarrs_for_annbatch()
    kwargs = dict(p.get("kwargs", {}))
    if len(_index_encodings(p["paths"])) > 1:  # mixed obs index encodings: see _obs_in_memory
        kwargs.setdefault("load_adata", _obs_in_memory)
    base = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    annbatch.DatasetCollection(p["out"]).add_adatas(
        adata_paths=p["paths"], shuffle=True, rng=np.random.default_rng(0), **kwargs
    )
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": dt, "cpu_s": cpu, "cells_per_s": p["n_obs"] / dt, "rss_base_mb": base}


@job
def convert_annshard(p: dict) -> dict:
    import annshard

    # resolve the lazy import (anndata, and with it dask and numba where installed: ~10 s of CPU) before the
    # clock starts, as convert_annbatch imports annbatch and anndata before its clock
    write_collection = annshard.write_collection
    base = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    write_collection(p["paths"], p["out"], seed=0, **p.get("kwargs", {}))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": dt, "cpu_s": cpu, "cells_per_s": p["n_obs"] / dt, "rss_base_mb": base}


# -- loaders --------------------------------------------------------------------------------------
def _annbatch_loader(p: dict):
    """annbatch's shuffling loader over ``p["collection"]`` (a path or an open zarr group), zarrs pipeline."""
    import annbatch
    import anndata as ad

    _zarrs_for_annbatch()

    def load_adata(g):
        obs = ad.io.read_elem(g["obs"])[["cell_type"]]
        return ad.AnnData(X=ad.io.sparse_dataset(g["X"]), obs=obs)

    with ad.settings.override(remove_unused_categories=False):
        loader = annbatch.Loader(
            batch_size=p["batch_size"],
            chunk_size=p["chunk_size"],
            preload_nchunks=p["preload_nchunks"],
            shuffle=True,
            rng=np.random.default_rng(0),
            return_index=p.get("return_index", False),
        )
        loader.use_collection(annbatch.DatasetCollection(p["collection"], mode="r"), load_adata=load_adata)
    return loader


def _annbatch_labels(batch) -> np.ndarray:
    return batch["obs"]["cell_type"].cat.codes.to_numpy()


def _annshard_loader(p: dict):
    import annshard

    return annshard.Loader(
        p["collection"],
        batch_size=p["batch_size"],
        chunk_size=p["chunk_size"],
        preload_nchunks=p["preload_nchunks"],
        obs_columns=["cell_type"],
        output="scipy",
        seed=0,
        **p.get("kwargs", {}),
    )


def _annshard_labels(batch) -> np.ndarray:
    return np.asarray(batch.obs["cell_type"])


_LOADERS = {"annbatch": (_annbatch_loader, _annbatch_labels), "annshard": (_annshard_loader, _annshard_labels)}


def _import(lib: str) -> float:
    """Import a library's loader before the clock starts; returns the import time."""
    t0 = time.perf_counter()
    if lib == "annbatch":
        import annbatch  # noqa: F401

        _zarrs_for_annbatch()
    else:
        import annshard

        annshard.Loader  # noqa: B018 - the lazy import
    return time.perf_counter() - t0


class ThreadCPU:
    """CPU seconds per thread over a span, grouped by thread name; native (non-Python) threads by difference.

    Python threads are told apart by name (annshard's stages: ``annshard-read``,
    ``annshard-gather``; the consumer: ``MainThread``). A thread that ends inside
    the span (the loader starts its stage threads anew each epoch) is counted
    when it ends: :meth:`install` wraps ``threading.Thread.run`` so each thread
    records its own ``time.thread_time()`` as it finishes (two clock reads per
    thread, nothing per batch). Threads alive at the end are read from
    ``psutil.Process().threads()`` (10 ms ticks), those alive at the start minus their CPU
    then; the main thread from its own ``time.thread_time()``.
    Threads that are not Python threads (zarrs' Rust decode threads: absent from
    ``threading.enumerate()``) are what is left of the process's CPU
    (``time.process_time()``, which counts every thread, ended ones included);
    ``native_alive_s`` is the same read directly from the native threads alive at
    the end, a cross-check.
    """

    def __init__(self) -> None:
        self.ended: list[tuple[str, int, float]] = []
        self._lock = threading.Lock()

    def install(self) -> None:
        ledger, run = self, threading.Thread.run

        def counted_run(thread: threading.Thread) -> None:
            try:
                run(thread)
            finally:
                with ledger._lock:
                    ledger.ended.append((thread.name, thread.native_id, time.thread_time()))

        threading.Thread.run = counted_run  # type: ignore[method-assign]

    @staticmethod
    def _threads() -> dict[int, float]:
        import psutil

        return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}

    def start(self) -> None:
        """Start the span; call it, and :meth:`stop`, from the main thread (the consumer)."""
        self._t0 = self._threads()
        self._main0 = time.thread_time()  # ns resolution; psutil's per-thread times tick at 10 ms
        self._cpu0 = time.process_time()
        with self._lock:
            self._n_ended0 = len(self.ended)

    def stop(self) -> dict[str, Any]:
        cpu = time.process_time() - self._cpu0
        main = threading.main_thread()
        by_name: dict[str, float] = {main.name: time.thread_time() - self._main0}
        alive = self._threads()
        alive.pop(main.native_id, None)
        names = {t.native_id: t.name for t in threading.enumerate()}
        with self._lock:
            ended = self.ended[self._n_ended0 :]
        seen = set()
        for name, tid, t in ended:
            seen.add(tid)
            by_name[name] = by_name.get(name, 0.0) + t - self._t0.get(tid, 0.0)
        native_alive = 0.0
        for tid, t in alive.items():
            if tid in seen:
                continue
            dt = t - self._t0.get(tid, 0.0)
            if tid in names:
                by_name[names[tid]] = by_name.get(names[tid], 0.0) + dt
            else:
                native_alive += dt
        return {
            "cpu_s": cpu,
            "python_threads_s": by_name,
            "native_s": max(0.0, cpu - sum(by_name.values())),
            "native_alive_s": native_alive,
        }


_THREAD_CPU = ThreadCPU()


def _load(lib: str, p: dict) -> dict:
    make, labels = _LOADERS[lib]
    _THREAD_CPU.install()
    t_import = _import(lib)
    base = _rss_mb()
    _THREAD_CPU.start()
    t0 = time.perf_counter()
    loader = make(p)
    t_open = time.perf_counter() - t0
    epochs, cells, nnz, first = p.get("epochs", 2), 0, 0, None
    epoch_s, iter_s, ends = [], [], [t0]
    chunk_share: list[float] = []
    for _ in range(epochs):
        te = time.perf_counter()
        for batch in loader:
            if first is None:
                first = time.perf_counter() - t0
            x = batch["X"]
            y = labels(batch)
            assert y.shape[0] == x.shape[0]
            cells += x.shape[0]
            nnz += x.nnz
            if p.get("return_index") and len(chunk_share) < 200:
                chunk_share.append(_same_run_share(np.asarray(batch["index"]), p["chunk_size"]))
        now = time.perf_counter()
        iter_s.append(now - te)
        epoch_s.append(now - ends[-1])  # the first epoch from constructing the loader
        ends.append(now)
    total = ends[-1] - t0
    threads = _THREAD_CPU.stop()
    out = {
        "cells_per_s": cells / total,
        "seconds": total,
        "epoch_s": epoch_s,
        "epoch_iter_s": iter_s,
        "first_epoch_s": epoch_s[0],
        "later_epoch_s": float(np.median(epoch_s[1:])) if len(epoch_s) > 1 else None,
        "first_batch_s": first,
        "open_s": t_open,
        "import_s": t_import,
        "cells": cells,
        "nnz": nnz,
        "cpu_s": threads["cpu_s"],
        "cpu_ms_per_1k_cells": threads["cpu_s"] / cells * 1e6,
        "threads_cpu": threads,
        "rss_base_mb": base,
    }
    if chunk_share:
        out["same_chunk_pair_share"] = float(np.mean(chunk_share))
    return out


def _same_run_share(index: np.ndarray, chunk: int) -> float:
    """Share of the pairs of a batch's rows that are within ``chunk`` rows of each other on disk.

    Rows of one chunk lie within ``chunk`` rows of each other; rows drawn at random
    from ``n`` rows almost never do (``~2 * chunk / n``).
    """
    s = np.sort(index)
    n = s.shape[0]
    # for each row, the rows after it that are closer than `chunk`
    close = np.searchsorted(s, s + chunk, side="left") - np.arange(1, n + 1)
    return float(close.sum() / (n * (n - 1) / 2))


@job
def load_annbatch(p: dict) -> dict:
    return _load("annbatch", p)


@job
def load_annshard(p: dict) -> dict:
    return _load("annshard", p)


# -- end to end -----------------------------------------------------------------------------------
HIDDEN = 64
"""MLP width: 64 makes one step ~19 ms on one CPU thread here, inside the issue's 5-20 ms; 256 made it ~38 ms."""


def _model(n_vars: int, n_classes: int, hidden: int):
    """A small classifier: a frozen sparse random projection of the genes, then a trained MLP.

    The projection is a CSR x dense product (what an embedding of the genes costs
    forward); it is frozen because torch's CPU backward through a sparse CSR
    product is ~50x slower than the forward, which would make the model, not the
    data, the subject of the benchmark.
    """
    import torch

    torch.manual_seed(0)
    proj = torch.randn(n_vars, 16) / np.sqrt(n_vars)
    head = torch.nn.Sequential(
        torch.nn.Linear(16, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, n_classes),
    )
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)

    def step(x, y) -> float:
        # int32 CSR (no copy of the indices) and log1p into a fresh float32 array
        xt = torch.sparse_csr_tensor(
            torch.from_numpy(x.indptr.astype(np.int32)),
            torch.from_numpy(x.indices.astype(np.int32, copy=False)),
            torch.from_numpy(np.log1p(x.data, dtype=np.float32)),
            size=x.shape,
        )
        with torch.no_grad():
            z = xt @ proj
        loss = torch.nn.functional.cross_entropy(head(z), torch.from_numpy(y.astype(np.int64)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss)

    return step


def _torch_setup(p: dict) -> None:
    import warnings

    import torch

    torch.set_num_threads(p.get("torch_threads", 1))
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    warnings.filterwarnings("ignore", message="Sparse invariant checks")


def _train(lib: str, p: dict) -> dict:
    _torch_setup(p)
    make, labels = _LOADERS[lib]
    step = _model(p["n_vars"], p["n_classes"], p.get("hidden", HIDDEN))
    _import(lib)
    base = _rss_mb()
    loader = make(p)
    t0 = time.perf_counter()
    cells, n_batches = 0, 0
    for batch in loader:
        x = batch["X"]
        step(x, labels(batch))
        cells += x.shape[0]
        n_batches += 1
    dt = time.perf_counter() - t0
    return {"epoch_s": dt, "cells_per_s": cells / dt, "batches": n_batches, "rss_base_mb": base}


@job
def train_annbatch(p: dict) -> dict:
    return _train("annbatch", p)


@job
def train_annshard(p: dict) -> dict:
    return _train("annshard", p)


@job
def train_compute(p: dict) -> dict:
    """The model alone: the same number of steps over a few batches held in memory."""
    import anndata as ad

    _torch_setup(p)
    step = _model(p["n_vars"], p["n_classes"], p.get("hidden", HIDDEN))
    a = ad.read_h5ad(p["h5ad"])
    bs = p["batch_size"]
    n_hold = max(1, min(8, a.n_obs // bs))
    held = [
        (a.X[i * bs : (i + 1) * bs].tocsr(), a.obs["cell_type"].cat.codes.to_numpy()[i * bs : (i + 1) * bs])
        for i in range(n_hold)
    ]
    base = _rss_mb()
    n_batches = -(-p["n_obs"] // bs)
    step(*held[0])  # warm-up, not timed
    t0 = time.perf_counter()
    for i in range(n_batches):
        step(*held[i % n_hold])
    dt = time.perf_counter() - t0
    return {"epoch_s": dt, "step_ms": dt / n_batches * 1000, "batches": n_batches, "rss_base_mb": base}


# -- decode limit ---------------------------------------------------------------------------------
@job
def decode(p: dict) -> dict:
    """Read every shard's ``X/data`` and ``X/indices`` whole through the zarrs pipeline (decode, no assembly)."""
    import zarr

    _zarrs_for_annbatch()
    if p.get("threads"):
        zarr.config.set({"threading.max_workers": p["threads"]})
    root = zarr.open_group(p["collection"], mode="r")
    groups = [root[k] for k in sorted(root.group_keys())]
    arrays = [(g["X"]["data"], g["X"]["indices"]) for g in groups]
    n_obs = sum(int(g["X"].attrs["shape"][0]) for g in groups)
    base = _rss_mb()
    times, nbytes = [], 0
    for r in range(p.get("repeats", 3)):
        t0 = time.perf_counter()
        for data, indices in arrays:
            a = data[...]
            b = indices[...]
            if r == 0:
                nbytes += a.nbytes + b.nbytes
            del a, b
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "seconds": best,
        "cells_per_s": n_obs / best,
        "decoded_gb_per_s": nbytes / best / 1e9,
        "decoded_bytes": nbytes,
        "rss_base_mb": base,
    }


def main() -> int:
    name, params = sys.argv[1], json.loads(sys.argv[2])
    if params.get("omp_threads"):
        os.environ["OMP_NUM_THREADS"] = str(params["omp_threads"])
    out = JOBS[name](params)
    out["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
