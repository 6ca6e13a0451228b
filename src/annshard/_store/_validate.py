"""Checking what a collection says about itself before anything trusts it.

Three layers, each cheap and each run before the thing it protects is used:

- :func:`read_json_file` reads a ``zarr.json`` defensively: bounded size, UTF-8, bounded nesting; any failure is a
  :class:`CollectionFormatError` naming the file.
- :func:`validate_manifest_v1` checks a version-1 manifest as a schema (types, ranges, allowed values, unique and
  plain shard names) before :meth:`Manifest.from_dict <annshard.Manifest.from_dict>` builds it. Unknown
  keys are accepted (newer writers may add optional fields; ``extra`` is free-form).
- :func:`check_shard_paths` resolves every shard directory and refuses one outside the collection (a ``..`` name
  is refused by the schema already; this catches symlinks), and :func:`check_shard_metadata` compares a shard's
  own metadata (``X`` shape, ``indptr`` length, obs index length) with the manifest when a Loader opens it;
  :func:`check_indptr` checks the row pointers once they are in memory, and :func:`check_indices` the gene
  indices of every block read, before a CSR matrix or tensor is built from them.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from annshard._errors import CollectionFormatError, CorruptShardError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ._collection import Collection

__all__ = [
    "MAX_JSON_BYTES",
    "check_indices",
    "check_indptr",
    "check_shard_metadata",
    "check_shard_names",
    "check_shard_paths",
    "read_json_file",
    "validate_manifest_v1",
]

MAX_JSON_BYTES = 1 << 30
"""A ``zarr.json`` larger than this (1 GiB) is refused rather than parsed."""
_MAX_DEPTH = 64
_MAX_COUNT = 1 << 48
"""Upper bound of row and value counts (2**48: far beyond any real collection, far below int64 overflow)."""
_MAX_VARS = (1 << 31) - 1
_SHARD_NAME = re.compile(r"^shard-\d{5,}\.zarr$")
_ANNBATCH_NAME = re.compile(r"^dataset_\d+$")
_NUMERIC = {"bool", *(f"{k}{b}" for k in ("int", "uint") for b in (8, 16, 32, 64)), "float16", "float32", "float64"}
_FIX = "the manifest was edited or damaged; rewrite the collection (annshard convert) or restore its zarr.json"


def _fail(where: str, field: str, problem: str) -> CollectionFormatError:
    return CollectionFormatError(f"{where}: manifest field {field!r} {problem}; {_FIX}")


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, iteratively (no recursion), stopping past ``limit``."""
    stack, deepest = [(obj, 1)], 0
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def read_json_file(path: Path, *, what: str = "collection") -> dict[str, Any]:
    """Read a ``zarr.json`` (or any metadata JSON object) without trusting it.

    Raises
    ------
    CollectionFormatError
        If it cannot be read, is too large, is not UTF-8, is not JSON, is nested too deeply or is not an object.
    """
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            msg = f"{path}: {size} bytes, more than any {what} metadata file can be; the {what} is damaged"
            raise CollectionFormatError(msg)
        raw = path.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
    except CollectionFormatError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        # ValueError covers JSONDecodeError and integers longer than Python's digit limit
        msg = f"{path}: cannot be read as JSON ({type(e).__name__}: {str(e)[:200]}); the {what} is damaged, restore or rewrite it"
        raise CollectionFormatError(msg) from e
    if not isinstance(doc, dict):
        msg = f"{path}: holds a JSON {type(doc).__name__}, not an object; the {what} is damaged, restore or rewrite it"
        raise CollectionFormatError(msg)
    if _depth(doc, _MAX_DEPTH) > _MAX_DEPTH:
        msg = f"{path}: JSON nested deeper than {_MAX_DEPTH} levels; the {what} is damaged, restore or rewrite it"
        raise CollectionFormatError(msg)
    return doc


# -- the manifest schema ----------------------------------------------------------------------------------------------
def _int(where: str, field: str, v: Any, lo: int = 0, hi: int = _MAX_COUNT) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(where, field, f"must be an integer, not {type(v).__name__} {str(v)[:40]}")
    if not lo <= v <= hi:
        raise _fail(where, field, f"is {str(v)[:40]}, outside [{lo}, {hi}]")


def _str(where: str, field: str, v: Any, *, optional: bool = False, max_len: int = 4096) -> None:
    if v is None and optional:
        return
    if not isinstance(v, str):
        raise _fail(where, field, f"must be a string{' or null' if optional else ''}, not {type(v).__name__}")
    if len(v) > max_len:
        raise _fail(where, field, f"is {len(v)} characters long (at most {max_len})")


def _choice(where: str, field: str, v: Any, allowed: tuple[Any, ...]) -> None:
    if not any(v is a or (type(v) is type(a) and v == a) for a in allowed):
        raise _fail(where, field, f"is {str(v)[:40]!r}; allowed: {', '.join(map(repr, allowed))}")


def _dict(where: str, field: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(where, field, f"must be an object, not {type(v).__name__}")
    return v


def _list(where: str, field: str, v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise _fail(where, field, f"must be a list, not {type(v).__name__}")
    return v


def _storage(where: str, s: dict[str, Any], prefix: str = "storage") -> None:
    for key, allowed in (
        ("x_format", ("csr", "dense")),
        ("codec", ("lz4", "zstd", "none")),
        ("shuffle", ("shuffle", "bitshuffle", "noshuffle")),
        ("indices_codec", ("none", None)),
        ("values_codec", ("none", None)),
        ("counts_codec", ("none", None)),
    ):
        if key in s:
            _choice(where, f"{prefix}.{key}", s[key], allowed)
    for key in ("data_dtype", "indices_dtype", "counts_dtype"):
        if key in s and not (key == "counts_dtype" and s[key] is None):
            _choice(where, f"{prefix}.{key}", s[key], tuple(sorted(_NUMERIC)))
    if "clevel" in s:
        _int(where, f"{prefix}.clevel", s["clevel"], 0, 9)
    for key in ("chunk_elems", "shard_elems", "dense_chunk_rows", "dense_shard_rows"):
        if key in s:
            _int(where, f"{prefix}.{key}", s[key], 1, 1 << 40)


def _shards(where: str, shards: list[Any]) -> None:
    seen: set[str] = set()
    for i, sh in enumerate(shards):
        f = f"shards[{i}]"
        sh = _dict(where, f, sh)
        name = sh.get("name")
        _str(where, f"{f}.name", name)
        if not _SHARD_NAME.match(name):
            raise _fail(
                where,
                f"{f}.name",
                f"is {name[:80]!r}, not a shard name of this collection (shard-NNNNN.zarr; no '..', separators or absolute paths)",
            )
        if name in seen:
            raise _fail(where, f"{f}.name", f"lists shard {name!r} a second time (rows would be read twice)")
        seen.add(name)
        _int(where, f"{f}.n_obs", sh.get("n_obs"))
        for key in ("nnz", "generation"):
            if key in sh:
                _int(where, f"{f}.{key}", sh[key])


def _sources(where: str, sources: list[Any]) -> None:
    for i, src in enumerate(sources):
        f = f"sources[{i}]"
        src = _dict(where, f, src)
        _str(where, f"{f}.name", src.get("name"))
        _int(where, f"{f}.n_obs", src.get("n_obs"))
        for key in ("path", "uid", "hash"):
            _str(where, f"{f}.{key}", src.get(key), optional=True)
        if "kind" in src:
            _str(where, f"{f}.kind", src["kind"], max_len=64)
        if "generation" in src:
            _int(where, f"{f}.generation", src["generation"])


def _obs_columns(where: str, cols: list[Any]) -> None:
    seen: set[str] = set()
    for i, col in enumerate(cols):
        f = f"obs_columns[{i}]"
        col = _dict(where, f, col)
        name = col.get("name")
        _str(where, f"{f}.name", name)
        if name in seen:
            raise _fail(where, f"{f}.name", f"lists obs column {name!r} a second time")
        seen.add(name)
        _choice(where, f"{f}.kind", col.get("kind"), ("categorical", "numeric", "bool", "string"))
        _str(where, f"{f}.dtype", col.get("dtype"), max_len=64)
        if "ordered" in col and not isinstance(col["ordered"], bool):
            raise _fail(where, f"{f}.ordered", f"must be true or false, not {type(col['ordered']).__name__}")
        cats = col.get("categories")
        if cats is None:
            if col["kind"] == "categorical":
                raise _fail(where, f"{f}.categories", "is missing for a categorical column")
            continue
        cats = _list(where, f"{f}.categories", cats)
        for c in cats:
            if isinstance(c, dict | list) or c is None:
                raise _fail(where, f"{f}.categories", f"holds a {type(c).__name__}; categories are strings or numbers")
        try:
            unique = len(set(cats)) == len(cats)
        except TypeError:
            unique = False
        if not unique:
            raise _fail(where, f"{f}.categories", "holds a category twice")


_MATRIX_ELEMENT = re.compile(r"^(layers|obsm)/[^/\\\x00]+$")


def _matrices(where: str, mats: list[Any], n_vars: int) -> None:
    seen: set[str] = set()
    for i, m in enumerate(mats):
        f = f"matrices[{i}]"
        m = _dict(where, f, m)
        element = m.get("element")
        _str(where, f"{f}.element", element, max_len=1024)
        if not _MATRIX_ELEMENT.match(element) or element.split("/", 1)[1] in (".", ".."):
            raise _fail(where, f"{f}.element", f"is {element[:80]!r}, not 'layers/<name>' or 'obsm/<name>'")
        if element in seen:
            raise _fail(where, f"{f}.element", f"lists {element!r} a second time")
        seen.add(element)
        _int(where, f"{f}.n_cols", m.get("n_cols"), 1, _MAX_VARS)
        if element.startswith("layers/") and m["n_cols"] != n_vars:
            raise _fail(where, f"{f}.n_cols", f"is {m['n_cols']} but a layer has the collection's {n_vars} genes")
        _storage(where, _dict(where, f"{f}.storage", m.get("storage")), f"{f}.storage")


def validate_manifest_v1(d: Any, *, where: str) -> None:
    """Check a version-1 manifest as a schema, before any of it is used.

    Raises
    ------
    CollectionFormatError
        Naming the collection and the first field that is missing, of the wrong type, out of range, not one of
        the allowed values, or not unique; or if the shard rows do not add up to ``n_obs``.
    """
    d = _dict(where, "(manifest)", d)
    for key in ("n_obs", "n_vars", "seed", "join", "storage", "shards", "sources", "obs_columns"):
        if key not in d:
            raise _fail(where, key, "is missing")
    _int(where, "n_obs", d["n_obs"])
    _int(where, "n_vars", d["n_vars"], 0, _MAX_VARS)
    _int(where, "seed", d["seed"], 0, (1 << 64) - 1)
    _choice(where, "join", d["join"], ("inner", "outer"))
    _str(where, "layer", d.get("layer"), optional=True)
    _str(where, "created_by", d.get("created_by", ""))
    _storage(where, _dict(where, "storage", d["storage"]))
    _shards(where, _list(where, "shards", d["shards"]))
    _sources(where, _list(where, "sources", d["sources"]))
    _obs_columns(where, _list(where, "obs_columns", d["obs_columns"]))
    _matrices(where, _list(where, "matrices", d.get("matrices", [])), d["n_vars"])
    for i, a in enumerate(_list(where, "appends", d.get("appends", []))):
        _dict(where, f"appends[{i}]", a)
    _dict(where, "extra", d.get("extra", {}))
    total = sum(s["n_obs"] for s in d["shards"])
    if total != d["n_obs"]:
        raise _fail(where, "n_obs", f"is {d['n_obs']} but the shards hold {total} rows")


# -- the manifest against the disk ------------------------------------------------------------------------------------
def check_shard_names(where: str, names: list[str], *, annbatch: bool = False) -> None:
    """Refuse shard names that are not plain child names (no ``/``, ``..`` or other characters).

    Raises
    ------
    CollectionFormatError
        Naming the collection and the shard.
    """
    pattern = _ANNBATCH_NAME if annbatch else _SHARD_NAME
    for name in names:
        if not pattern.match(name):
            msg = f"{where}: shard name {name[:80]!r} is not a plain shard name of this collection; {_FIX}"
            raise CollectionFormatError(msg)


def check_shard_paths(path: Path, names: list[str], *, annbatch: bool = False) -> None:
    """Refuse shard names that are not plain child names, or whose directory resolves outside ``path``.

    Raises
    ------
    CollectionFormatError
        Naming the collection and the shard.
    """
    pattern = _ANNBATCH_NAME if annbatch else _SHARD_NAME
    root = path.resolve()
    for name in names:
        if not pattern.match(name):
            msg = f"{path}: shard name {name[:80]!r} is not a plain shard name of this collection; {_FIX}"
            raise CollectionFormatError(msg)
        target = (path / name).resolve()
        if target.parent != root:
            msg = (
                f"{path}: shard {name} resolves to {target}, outside the collection (a symbolic link?); "
                "annshard reads only inside the collection: replace the link with the shard's directory"
            )
            raise CollectionFormatError(msg)


def _meta_shape(meta: dict[str, Any], key: str, where: str) -> tuple[int, ...]:
    """``shape`` of an array's metadata, or (``key="attrs"``) the ``shape`` attribute of a group (a CSR matrix)."""
    attrs = meta.get("attributes")
    value = meta.get("shape") if key == "shape" else (attrs.get("shape") if isinstance(attrs, dict) else None)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        msg = f"{where}: its {key!r} is {str(value)[:80]}, not a list of integers; the shard is damaged, rewrite the collection"
        raise CorruptShardError(msg)
    return tuple(value)


def check_shard_metadata(coll: Collection, i: int, element: str = "X") -> None:
    """Compare shard ``i``'s own metadata with the manifest (a few small JSON reads, no data).

    Checks the ``X`` shape (rows and genes), the CSR ``indptr`` length and the obs index length.

    Raises
    ------
    CorruptShardError
        Naming the collection, the shard, the field and what to do.
    """
    info = coll.manifest.shards[i]
    shard = coll.location.child(info.name)
    where = f"collection {coll.path}, shard {info.name}"
    x_key = element

    def meta(key: str) -> dict[str, Any]:
        return shard.read_json(key, what="shard") or {}

    x = meta(f"{x_key}/zarr.json")
    if not x:
        msg = f"{where}: has no {element!r} (no {shard}/{x_key}/zarr.json); the shard is missing or damaged, rewrite the collection"
        raise CorruptShardError(msg)
    if x.get("node_type") == "array":
        shape = _meta_shape(x, "shape", f"{where} {element}")
        if len(shape) != 2:
            msg = f"{where}: {element} has shape {shape}, not 2-D; the shard is damaged, rewrite the collection"
            raise CorruptShardError(msg)
    else:
        shape = _meta_shape(x, "attrs", f"{where} {element}")
        ip = meta(f"{x_key}/indptr/zarr.json")
        ip_shape = _meta_shape(ip, "shape", f"{where} {element}/indptr") if ip else None
        if ip_shape is None or len(shape) != 2 or ip_shape != (shape[0] + 1,):
            msg = (
                f"{where}: {element}/indptr has shape {ip_shape}, but {element} has {shape[0] if shape else '?'} rows "
                "(indptr must have one more); the shard is damaged, rewrite the collection"
            )
            raise CorruptShardError(msg)
        if element == "X":
            for arr in ("data", "indices"):
                m = meta(f"{x_key}/{arr}/zarr.json")
                n = _meta_shape(m, "shape", f"{where} {element}/{arr}") if m else None
                if n is None or n != (info.nnz,):
                    msg = f"{where}: {element}/{arr} has shape {n}, but the manifest says {info.nnz} stored values; {_FIX}"
                    raise CollectionFormatError(msg)
    if shape[0] != info.n_obs:
        msg = f"{where}: {element} has {shape[0]} rows, but the manifest field 'shards[{i}].n_obs' says {info.n_obs} (rows would be lost or invented); {_FIX}"
        raise CollectionFormatError(msg)
    if shape[1] != coll.manifest.n_vars:
        msg = f"{where}: {element} has {shape[1]} genes, but the manifest field 'n_vars' says {coll.manifest.n_vars}; {_FIX}"
        raise CollectionFormatError(msg)
    obs = meta("obs/zarr.json")
    if obs:
        attrs = obs.get("attributes")
        index = attrs.get("_index") if isinstance(attrs, dict) else None
        idx = (
            meta(f"obs/{index}/zarr.json")
            if isinstance(index, str) and "/" not in index and index not in ("", ".", "..")
            else {}
        )
        if idx.get("node_type") == "array":  # a 1-D index (an encoded group, e.g. categorical, is not checked)
            n = _meta_shape(idx, "shape", f"{where} obs index")
            if n != (info.n_obs,):
                msg = f"{where}: obs index has {n[0] if n else '?'} rows, but the manifest field 'shards[{i}].n_obs' says {info.n_obs}; {_FIX}"
                raise CollectionFormatError(msg)


def check_indptr(indptr: np.ndarray, n_values: int, where: str) -> None:
    """Check CSR row pointers read from disk: start at 0, never decrease, end at the number of stored values.

    Raises
    ------
    CorruptShardError
        If they do not.
    """
    if indptr.shape[0] == 0 or indptr[0] != 0 or indptr[-1] != n_values or (np.diff(indptr) < 0).any():
        first = int(indptr[0]) if indptr.shape[0] else None
        last = int(indptr[-1]) if indptr.shape[0] else None
        msg = (
            f"{where}: X/indptr is not valid row pointers (first {first}, last {last}, {n_values} stored values, "
            "must start at 0, never decrease and end at the number of values); the shard is damaged, rewrite the collection"
        )
        raise CorruptShardError(msg)


def check_indices(indices: np.ndarray, n_vars: int, where: str | Callable[[], str]) -> None:
    """Check gene indices read from disk against ``n_vars`` (a max, and a min for signed types).

    ``where`` (or the function returning it, called only on failure) names the shards read.

    Raises
    ------
    CorruptShardError
        If one is negative or ``>= n_vars``.
    """
    if indices.shape[0] == 0:
        return
    hi = int(indices.max())
    lo = int(indices.min()) if indices.dtype.kind == "i" else 0
    if hi >= n_vars or lo < 0:
        bad = hi if hi >= n_vars else lo
        msg = (
            f"{where if isinstance(where, str) else where()}: a stored gene index is {bad}, outside the collection's {n_vars} genes (its manifest's "
            "'n_vars' is wrong or X/indices is damaged); rewrite the collection"
        )
        raise CorruptShardError(msg)
