"""Shared helpers of the benchmarks: run one measured job in a fresh process, warm the page cache, summarise.

Every measured job runs in its own Python process (``benchmarks/jobs.py``), so
the two libraries never share a heap: the peak RSS a job reports is its own
(``VmHWM`` of its address space, read by the child at its end), and its
``rss_base_mb`` is the RSS after imports, before the measured work.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
JOBS = HERE / "jobs.py"


class JobError(RuntimeError):
    """A benchmark job failed; the message holds the tail of its stderr."""


def run_job(job: str, params: dict[str, Any], *, timeout: float = 3600, env: dict[str, str] | None = None) -> dict:
    """Run ``jobs.py <job> <params>`` in a fresh process and return the JSON it prints last."""
    cmd = [sys.executable, str(JOBS), job, json.dumps(params)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        msg = f"job {job} {params} failed with exit code {proc.returncode}:\n{tail}"
        raise JobError(msg)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1])
    result["process_wall_s"] = wall
    return result


def warm_page_cache(*paths: str | os.PathLike[str]) -> int:
    """Read every file under ``paths`` once so later reads come from the page cache; returns bytes read."""
    total = 0
    for p in map(Path, paths):
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        for f in files:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    total += len(chunk)
    return total


def dir_bytes(path: str | os.PathLike[str]) -> int:
    """Total size of the files under ``path``."""
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def median(values: list[float]) -> float:
    """Median, ``nan`` for no values."""
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    """A description of the machine the benchmark ran on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gb"] = round(int(line.split()[1]) / 1e6, 1)
                break
    except OSError:
        pass
    import importlib.metadata as md

    for pkg in ("annshard", "annbatch", "zarr", "zarrs", "anndata", "numpy", "scipy", "torch"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = None
    return info


def fmt_table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain-text (and markdown-compatible) table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # nan
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)
