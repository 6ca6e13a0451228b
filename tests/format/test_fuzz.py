"""Property: a mutated manifest opens and loads with the right rows, or is refused with a format error.

hypothesis mutates a valid manifest (values replaced by arbitrary JSON, keys deleted, numbers nudged, shard
names made hostile, shards swapped or duplicated) and its bytes (UTF-16, a flipped byte, truncation, a BOM).
Each example is a batch of such manifests, loaded one after the other in *one* subprocess, so a segfault or an
abort fails the test without killing pytest, and the import cost is paid once per batch. In the subprocess an
audit hook records every ``open``/``listdir``/``scandir`` of a path in the test's directory outside the
collection (the neighbour ``other.zarr`` is a bait: a shard name leading there would read it). Reads inside zarrs'
Rust codec pipeline are not audited; those are caught by the row check instead (the neighbour has other rows).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

_RUNNER = r"""
import base64, hashlib, json, os, sys, traceback

coll_dir = os.path.realpath(sys.argv[1])
sandbox = os.path.dirname(coll_dir)
violations = []

def audit(event, args):
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    p = args[0]
    if isinstance(p, bytes):
        p = p.decode(errors="replace")
    if not isinstance(p, str | os.PathLike):
        return
    p = os.path.abspath(os.fspath(p))
    inside = p == coll_dir or p.startswith(coll_dir + os.sep)
    if p.startswith(sandbox + os.sep) and not inside:
        violations.append(f"{event} {p}")

sys.addaudithook(audit)

import numpy as np
import annshard
from annshard._errors import CollectionFormatError, CorruptShardError

def digest(rows):
    h = hashlib.sha256()
    for r in sorted(rows):
        h.update(r)
    return h.hexdigest()

cases = json.loads(open(sys.argv[2]).read())
results = []
for i, payload in enumerate(cases):
    with open(os.path.join(coll_dir, "zarr.json"), "wb") as f:
        f.write(base64.b64decode(payload))
    del violations[:]
    output = ("scipy", "numpy")[i % 2]
    try:
        loader = annshard.Loader(coll_dir, batch_size=64, chunk_size=10, preload_nchunks=4, output=output)
        rows = []
        for b in loader:
            x = b.X.toarray() if output == "scipy" else b.X
            rows.extend(np.asarray(r, dtype=np.float64).tobytes() for r in x)
        res = {"status": "ok", "n": len(rows), "digest": digest(rows)}
    except (CollectionFormatError, CorruptShardError) as e:
        res = {"status": "refused", "type": type(e).__name__, "msg": str(e)[:300]}
    except BaseException as e:
        res = {"status": "other", "type": type(e).__name__, "tb": traceback.format_exc()[-2000:]}
    res["violations"] = list(violations[:5])
    results.append(res)
print(json.dumps(results))
"""

_HOSTILE_NAMES = [
    "../other.zarr/shard-00000.zarr",
    "../other.zarr",
    "/etc",
    "shard-00000.zarr/../../other.zarr/shard-00000.zarr",
    "shard-00007.zarr",
    "shard-1.zarr",
    "dataset_0",
    ".",
    "",
    "shard-00000.zarr\x00",
    "shard-00001.zarr",
]

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    """Every (container path, key) of a JSON document."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _parent(doc, path):
    for k in path[:-1]:
        doc = doc[k]
    return doc


@st.composite
def _mutated(draw, base: dict) -> str:
    doc = copy.deepcopy(base)
    man = doc["attributes"]["annshard"]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "delete", "nudge", "name", "swap", "duplicate", "keep"]))
        paths = _paths(man)
        if op == "name" and man.get("shards") and isinstance(man["shards"], list):
            j = draw(st.integers(0, len(man["shards"]) - 1))
            if isinstance(man["shards"][j], dict):
                man["shards"][j]["name"] = draw(st.sampled_from(_HOSTILE_NAMES))
        elif op in ("swap", "duplicate") and isinstance(man.get("shards"), list) and len(man["shards"]) > 1:
            sh = man["shards"]
            i, j = draw(st.integers(0, len(sh) - 1)), draw(st.integers(0, len(sh) - 1))
            if op == "swap":
                sh[i], sh[j] = sh[j], sh[i]
            else:
                sh[i] = copy.deepcopy(sh[j])
        elif op in ("replace", "delete", "nudge") and paths:
            path = draw(st.sampled_from(paths))
            parent = _parent(man, path)
            key = path[-1]
            if op == "replace":
                parent[key] = draw(_json)
            elif op == "delete":
                del parent[key]
            elif isinstance(parent[key], int) and not isinstance(parent[key], bool):
                parent[key] += draw(st.integers(-3, 3))
    text = json.dumps(doc)
    enc = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "flip", "truncate", "bom"]))
    if enc == "utf-16":
        raw = text.encode("utf-16")
    elif enc == "bom":
        raw = b"\xef\xbb\xbf" + text.encode()
    else:
        raw = bytearray(text.encode())
        if enc == "flip":
            raw[draw(st.integers(0, len(raw) - 1))] ^= 0xFF
        elif enc == "truncate":
            raw = raw[: draw(st.integers(0, len(raw) - 1))]
        raw = bytes(raw)
    return base64.b64encode(raw).decode()


def _expected_digest(coll: Path) -> str:
    import anndata as ad
    import scipy.sparse as sp

    rows = []
    for shard in sorted(coll.glob("shard-*.zarr")):
        x = ad.io.read_elem(__import__("zarr").open_group(shard, mode="r")["X"])
        x = x.toarray() if sp.issparse(x) else np.asarray(x)
        rows.extend(np.asarray(r, dtype=np.float64).tobytes() for r in x)
    h = hashlib.sha256()
    for r in sorted(rows):
        h.update(r)
    return h.hexdigest()


@pytest.fixture(scope="module")
def sandbox(built):
    """A copy of the collection and its neighbour in a directory of their own, and the expected rows."""
    d = Path(tempfile.mkdtemp(prefix="annshard-fuzz-"))
    shutil.copytree(built, d / "c.zarr")
    shutil.copytree(built.parent / "other.zarr", d / "other.zarr")
    base = json.loads((built / "zarr.json").read_text())
    yield d, base, _expected_digest(built)
    shutil.rmtree(d, ignore_errors=True)


_BATCH = 16


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    phases=[
        Phase.explicit,
        Phase.reuse,
        Phase.generate,
    ],  # no shrinking: each try is a subprocess; the batch is reported
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_manifests_load_correctly_or_are_refused(sandbox, data):
    d, base, expected = sandbox
    cases = [base64.b64encode(json.dumps(base).encode()).decode()]  # the untouched manifest: the control
    cases += [data.draw(_mutated(base), label=f"case {i}") for i in range(_BATCH)]
    (d / "cases.json").write_text(json.dumps(cases))
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_RUNNER), str(d / "c.zarr"), str(d / "cases.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, f"the loader process died (rc {r.returncode}): {r.stderr[-3000:]}"
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert results[0]["status"] == "ok" and results[0]["digest"] == expected, results[0]
    for payload, res in zip(cases, results, strict=True):
        what = base64.b64decode(payload)[:2000]
        assert not res["violations"], (res["violations"], what)
        assert res["status"] in ("ok", "refused"), (res, what)
        if res["status"] == "ok":
            assert res["n"] == 300 and res["digest"] == expected, (res, what)
