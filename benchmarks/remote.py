"""Remote loading benchmark: the loader over S3 (a local moto server) with injected per-request latency.

A loopback HTTP proxy (a thread per connection) sits between the loader and ``moto_server`` and delays every HTTP request by N ms,
counting requests and response bytes. For each latency the loader reads one epoch with the cache off, and two
epochs with the cache on (a fresh cache directory); the same collection read from local disk is the reference.

    uv run python benchmarks/remote.py --cells 40000 --shard-cells 4000 --latency 0,5,20,50

Rows: annshard's own remote reader (cache off; ``--requests`` sweeps its requests in flight), the cache on
(two epochs), the zarrs path it replaces (``ANNSHARD_REMOTE_READER=zarrs``) and annbatch 0.3.1 over
``zarr.storage.ObjectStore`` with zarrs (annbatch has no local cache), the slow two measured over ``--slow-cells``.

Prints a markdown table (cells/s, requests and MB per 1k cells) and writes ``--out`` JSON.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import annshard
from annshard._store._location import location
from annshard._store._upload import upload_collection
from annshard.testing import write_h5ads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LatencyProxy:
    """An HTTP proxy on 127.0.0.1 (one thread per connection) adding ``delay`` seconds to each request it forwards."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.requests = 0
        self.bytes_down = 0
        self.log: list[list[str]] = []  # [method, path, Range header] of every forwarded request
        self._count = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                if self.path.startswith("/__bench/"):
                    return self._control()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.delay:
                    time.sleep(proxy.delay)
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                with proxy._count:
                    proxy.requests += 1
                    proxy.bytes_down += len(data)
                    proxy.log.append([self.command, self.path.split("?", 1)[0], self.headers.get("Range") or ""])
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                        self.send_header(k, v)
                declared = resp.getheader("Content-Length")
                self.send_header("Content-Length", declared if self.command == "HEAD" and declared else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _control(self) -> None:
                if self.path.startswith("/__bench/reset/"):
                    proxy.reset(float(self.path.rsplit("/", 1)[1]))
                doc: dict = {"requests": proxy.requests, "bytes": proxy.bytes_down}
                if self.path.startswith("/__bench/log"):
                    doc["log"] = proxy.log
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self, delay_ms: float) -> None:
        with self._count:
            self.delay, self.requests, self.bytes_down, self.log = delay_ms / 1000, 0, 0, []

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ProxyProcess:
    """The :class:`LatencyProxy` in its own process: zarrs holds the GIL while it sends a shard-index request, so a
    proxy thread in the loader's process would deadlock it (as an in-process S3 server does)."""

    def __init__(self, target_port: int) -> None:
        self.port = _free_port()
        cmd = [sys.executable, __file__, "--serve-proxy", str(target_port), str(self.port)]
        self._proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.stats()
                break
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise
                time.sleep(0.1)

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def stats(self) -> dict:
        return self._get("/__bench/stats")

    def log(self) -> list[list[str]]:
        """Every request forwarded since the last reset: ``[method, path, Range header]``."""
        return self._get("/__bench/log")["log"]

    def reset(self, delay_ms: float) -> None:
        self._get(f"/__bench/reset/{delay_ms}")

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


def _start_moto() -> tuple[subprocess.Popen, int]:
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/bench", method="PUT"), timeout=5).close()
    return proc, port


def _epochs(loader: Any, n: int, limit: int | None = None, rows_of: Any = None) -> list[tuple[float, int]]:
    """Time ``n`` epochs of ``loader`` (each stopped after ``limit`` cells when given): ``(seconds, cells)``."""
    rows_of = rows_of or (lambda b: b.n_obs)
    out = []
    for _ in range(n):
        t0, rows = time.perf_counter(), 0
        for b in loader:
            rows += rows_of(b)
            if limit is not None and rows >= limit:
                break
        out.append((time.perf_counter() - t0, rows))
    return out


def _annbatch_loader(root: str, via: dict, kw: dict) -> Any:
    """annbatch 0.3.1's loader over ``zarr.storage.ObjectStore`` (zarrs pipeline): ``benchmarks/jobs.py``'s, on the bucket."""
    import zarr
    import zarr.storage
    from jobs import _annbatch_loader as annbatch_loader  # benchmarks/ is on sys.path when this runs as a script

    store = zarr.storage.ObjectStore(location(root, via).obstore(), read_only=True)
    return annbatch_loader({**kw, "collection": zarr.open_group(store, mode="r")})


def _server_mb_s(loc: Any) -> float:
    """MB/s that moto and the proxy serve: every ``X/data`` and ``X/indices`` object fetched whole, 16 at a time."""
    import asyncio

    import obstore

    keys = [k for k in loc.list() if "/X/data/c/" in k or "/X/indices/c/" in k]

    async def fetch() -> int:
        sem = asyncio.Semaphore(16)

        async def one(k: str) -> int:
            async with sem:
                return len(await (await obstore.get_async(loc.obstore(), k)).bytes_async())

        return sum(await asyncio.gather(*(one(k) for k in keys)))

    t0 = time.perf_counter()
    n = asyncio.run(fetch())
    return n / 1e6 / (time.perf_counter() - t0)


def _upload_tree(local: Path, root: str, opts: dict) -> None:
    dest = location(root, opts)
    for f in sorted(local.rglob("*")):
        if f.is_file():
            dest.upload(f.relative_to(local).as_posix(), f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=40000)
    p.add_argument("--genes", type=int, default=1000)
    p.add_argument("--nnz", type=int, default=200, help="non-zeros per cell")
    p.add_argument(
        "--shard-cells", type=int, default=4000, help="cells per annshard shard (several: blocks touch many)"
    )
    p.add_argument("--chunk-elems", type=int, default=None, help="StorageSpec.chunk_elems (default: the library's)")
    p.add_argument("--latency", default="0,5,20,50", help="injected ms per request, comma-separated")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--preload", type=int, default=64)
    p.add_argument(
        "--requests", default="", help="ANNSHARD_REMOTE_REQUESTS values to sweep at each latency (cache off)"
    )
    p.add_argument("--coalesce", default="", help="ANNSHARD_REMOTE_COALESCE values (bytes) to sweep (cache off)")
    p.add_argument("--slow-cells", type=int, default=4000, help="cells measured for the zarrs path and annbatch")
    p.add_argument("--no-annbatch", action="store_true")
    p.add_argument("--no-zarrs", action="store_true", help="skip the zarrs-path rows (ANNSHARD_REMOTE_READER=zarrs)")
    p.add_argument("--out", type=Path, default=Path("remote-bench.json"))
    p.add_argument("--serve-proxy", nargs=2, type=int, metavar=("TARGET_PORT", "PORT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve_proxy:
        LatencyProxy(*a.serve_proxy)._thread.join()
        return
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    work = Path(tempfile.mkdtemp(prefix="annshard-remote-bench-"))
    moto, port = _start_moto()
    proxy = ProxyProcess(port)
    try:
        files = write_h5ads(work / "h5", [a.cells // 2, a.cells - a.cells // 2], n_vars=a.genes, nnz_per_cell=a.nnz)
        storage = {} if a.chunk_elems is None else {"chunk_elems": a.chunk_elems}
        coll = annshard.write_collection(
            files, work / "coll.zarr", seed=0, n_obs_per_shard=a.shard_cells, storage=storage or None
        )
        direct = {"endpoint_url": f"http://127.0.0.1:{port}"}
        upload_collection(coll.path, location("s3://bench/coll.zarr", direct), [s.name for s in coll.shards])
        if not a.no_annbatch:
            import annbatch
            import numpy as np

            annbatch.DatasetCollection(work / "annbatch.zarr").add_adatas(
                adata_paths=files, shuffle=True, rng=np.random.default_rng(0)
            )
            _upload_tree(work / "annbatch.zarr", "s3://bench/annbatch.zarr", direct)
        kw = {"batch_size": a.batch_size, "chunk_size": a.chunk_size, "preload_nchunks": a.preload}
        rows: list[dict] = []

        def measure(
            what: str, ms: float, cache: str, make: Any, epochs: int, limit: int | None, rows_of: Any = None
        ) -> None:
            proxy.reset(ms)
            c0 = time.process_time()
            loader = make()
            st = proxy.stats()
            setup = {"req": st["requests"], "bytes": st["bytes"]}
            for epoch in range(1, epochs + 1):
                ((t, n),) = _epochs(loader, 1, limit, rows_of)
                st = proxy.stats()
                rows.append({
                    "where": what, "latency_ms": ms, "cache": cache, "epoch": epoch, "cells_s": n / t,
                    "req_per_1k": (st["requests"] - setup["req"]) * 1000 / n,
                    "mb_per_1k": (st["bytes"] - setup["bytes"]) / 1e6 * 1000 / n,
                    "open_requests": setup["req"], "cells": n, "cpu_s": time.process_time() - c0,
                })  # fmt: skip
                print(rows[-1], flush=True)
                setup = {"req": st["requests"], "bytes": st["bytes"]}
                c0 = time.process_time()

        measure("local disk", 0, "-", lambda: annshard.Loader(coll.path, **kw), 1, None)
        via = {"endpoint_url": f"http://127.0.0.1:{proxy.port}"}
        ceiling = _server_mb_s(location("s3://bench/coll.zarr", via))
        print(f"server ceiling: {ceiling:.1f} MB/s (whole X/data and X/indices objects, 16 GETs in flight)", flush=True)
        url = "s3://bench/coll.zarr"
        for ms in [float(x) for x in a.latency.split(",")]:
            sweep = [("REQUESTS", x, "requests in flight") for x in a.requests.split(",") if x]
            sweep += [("COALESCE", x, "bytes coalesced") for x in a.coalesce.split(",") if x]
            for var, value, what in sweep or [("", "", "")]:
                if var:
                    os.environ[f"ANNSHARD_REMOTE_{var}"] = value
                label = "s3, annshard" + (f" ({value} {what})" if var else "")
                measure(label, ms, "off", lambda: annshard.Loader(url, storage_options=via, **kw), 1, None)
                os.environ.pop(f"ANNSHARD_REMOTE_{var}", None)
            cdir = work / f"cache-{ms}"
            measure(
                "s3, annshard",
                ms,
                "on",
                lambda cdir=cdir: annshard.Loader(url, storage_options=via, cache=cdir, **kw),
                2,
                None,
            )
            shutil.rmtree(cdir, ignore_errors=True)
            if not a.no_zarrs:
                os.environ["ANNSHARD_REMOTE_READER"] = "zarrs"
                measure(
                    "s3, annshard (zarrs path)",
                    ms,
                    "off",
                    lambda: annshard.Loader(url, storage_options=via, **kw),
                    1,
                    a.slow_cells,
                )
                os.environ.pop("ANNSHARD_REMOTE_READER")
            if not a.no_annbatch:
                measure(
                    "s3, annbatch 0.3.1 (ObjectStore, zarrs)", ms, "off",
                    lambda: _annbatch_loader("s3://bench/annbatch.zarr", via, kw), 1, a.slow_cells,
                    lambda b: b["X"].shape[0],
                )  # fmt: skip
        print(
            f"\n{a.cells} cells x {a.genes} genes, {a.nnz} nnz/cell, {len(coll.shards)} shards; batch {a.batch_size}, chunk {a.chunk_size}, preload {a.preload}\n"
        )
        print(
            "| where | latency (ms) | cache | epoch | cells/s | requests / 1k cells | MB / 1k cells | CPU s / 1k cells |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(
                f"| {r['where']} | {r['latency_ms']:g} | {r['cache']} | {r['epoch']} | {r['cells_s']:,.0f} | {r['req_per_1k']:.1f} | {r['mb_per_1k']:.2f} | {r['cpu_s'] * 1000 / r['cells']:.3f} |"
            )
        print(f"\nmoto + proxy serve {ceiling:.1f} MB/s at 0 ms (whole objects, 16 GETs in flight)")
        a.out.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows, "server_mb_s": ceiling}, indent=1
            )
        )
    finally:
        proxy.close()
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
