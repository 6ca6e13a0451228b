"""Remote loading benchmark: the loader over S3 (a local moto server) with injected per-request latency.

A loopback HTTP proxy (a thread per connection) sits between the loader and ``moto_server`` and delays every HTTP request by N ms,
counting requests and response bytes. For each latency the loader reads one epoch with the cache off, and two
epochs with the cache on (a fresh cache directory); the same collection read from local disk is the reference.

    uv run python benchmarks/remote.py --cells 20000 --genes 1000 --latency 0,5,20,50

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
        deadline = time.monotonic() + 30
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


def _epochs(loader: annshard.Loader, n: int) -> list[tuple[float, int]]:
    out = []
    for _ in range(n):
        t0, rows = time.perf_counter(), 0
        for b in loader:
            rows += b.n_obs
        out.append((time.perf_counter() - t0, rows))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=20000)
    p.add_argument("--genes", type=int, default=1000)
    p.add_argument("--nnz", type=int, default=200, help="non-zeros per cell")
    p.add_argument("--latency", default="0,5,20,50", help="injected ms per request, comma-separated")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--preload", type=int, default=64)
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
        coll = annshard.write_collection(files, work / "coll.zarr", seed=0)
        direct = {"endpoint_url": f"http://127.0.0.1:{port}"}
        upload_collection(coll.path, location("s3://bench/coll.zarr", direct), [s.name for s in coll.shards])
        kw = {
            "batch_size": a.batch_size,
            "chunk_size": a.chunk_size,
            "preload_nchunks": a.preload,
            "obs_columns": ["cell_type"],
        }
        rows: list[dict] = []
        ((t, n),) = _epochs(annshard.Loader(coll.path, **kw), 1)
        rows.append(
            {
                "where": "local disk",
                "latency_ms": 0,
                "cache": "-",
                "epoch": 1,
                "cells_s": n / t,
                "req_per_1k": 0,
                "mb_per_1k": 0,
            }
        )
        via = {"endpoint_url": f"http://127.0.0.1:{proxy.port}"}
        for ms in [float(x) for x in a.latency.split(",")]:
            for cache in (False, True):
                cdir = work / f"cache-{ms}" if cache else None
                proxy.reset(ms)
                loader = annshard.Loader("s3://bench/coll.zarr", storage_options=via, cache=cdir, **kw)
                st = proxy.stats()
                setup = {"req": st["requests"], "bytes": st["bytes"]}
                for epoch, (t, n) in enumerate(_epochs(loader, 2 if cache else 1), 1):
                    rows.append({
                        "where": "s3 (moto + proxy)", "latency_ms": ms, "cache": "on" if cache else "off", "epoch": epoch,
                        "cells_s": n / t, "req_per_1k": (proxy.stats()["requests"] - setup["req"]) * 1000 / n,
                        "mb_per_1k": (proxy.stats()["bytes"] - setup["bytes"]) / 1e6 * 1000 / n,
                        "open_requests": setup["req"],
                    })  # fmt: skip
                    st = proxy.stats()
                    setup = {"req": st["requests"], "bytes": st["bytes"]}
                if cdir is not None:
                    shutil.rmtree(cdir, ignore_errors=True)
        print(
            f"\n{a.cells} cells x {a.genes} genes, {a.nnz} nnz/cell, {len(coll.shards)} shards; batch {a.batch_size}, chunk {a.chunk_size}, preload {a.preload}\n"
        )
        print("| where | latency (ms) | cache | epoch | cells/s | requests / 1k cells | MB / 1k cells |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(
                f"| {r['where']} | {r['latency_ms']:g} | {r['cache']} | {r['epoch']} | {r['cells_s']:,.0f} | {r['req_per_1k']:.1f} | {r['mb_per_1k']:.2f} |"
            )
        a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1))
    finally:
        proxy.close()
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
