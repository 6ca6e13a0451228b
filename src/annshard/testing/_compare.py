"""Byte-for-byte comparison of two collections (the engine-independence check)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

__all__ = ["CREATION_KEYS", "assert_identical_collections"]

CREATION_KEYS = ("created_by",)
"""Manifest keys that record how a collection was made, not what it holds: ignored by the comparison."""


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _strip(obj: Any, keys: frozenset[str]) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_strip(v, keys) for v in obj]
    return obj


def assert_identical_collections(
    a: str | os.PathLike[str], b: str | os.PathLike[str], *, ignore: Iterable[str] = CREATION_KEYS
) -> None:
    """Assert that two collection directories hold the same files with the same bytes.

    Every file is compared byte for byte, except the collection's root ``zarr.json``, whose
    JSON is compared with the manifest keys in ``ignore`` removed at every depth (by default
    only ``created_by``, the annshard version that wrote it and each append). Shard files,
    their zarr metadata, obs, var and the rest of the manifest (shards, sources with their
    paths and hashes, storage, seed) must be identical.

    Parameters
    ----------
    a, b
        The two collection directories.
    ignore
        Manifest keys to leave out of the comparison.

    Raises
    ------
    AssertionError
        Naming the files present in only one collection, or the first ones whose bytes differ.
    """
    ra, rb = Path(a), Path(b)
    fa, fb = _files(ra), _files(rb)
    if fa.keys() != fb.keys():
        only_a, only_b = sorted(fa.keys() - fb.keys()), sorted(fb.keys() - fa.keys())
        msg = f"{ra} and {rb} hold different files: only in the first {only_a[:10]}, only in the second {only_b[:10]}"
        raise AssertionError(msg)
    keys = frozenset(ignore)
    differ = []
    for rel, pa in fa.items():
        ba, bb = pa.read_bytes(), fb[rel].read_bytes()
        if rel == "zarr.json":
            if _strip(json.loads(ba), keys) != _strip(json.loads(bb), keys):
                differ.append(rel)
        elif ba != bb:
            differ.append(rel)
    if differ:
        msg = f"{ra} and {rb} differ in {len(differ)} file(s): {differ[:10]}"
        raise AssertionError(msg)
