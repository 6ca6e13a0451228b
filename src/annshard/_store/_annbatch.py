"""Opening collections written by annbatch (``DatasetCollection.add_adatas``).

Such a collection is a zarr group marked ``encoding-type: annbatch-preshuffled``
whose children ``dataset_0``, ``dataset_1``, ... are AnnData zarr stores; it
carries no annshard manifest. We synthesise a :class:`Manifest` from the
children's metadata (shapes, dtypes, obs schema and category lists; no data is
read), so the rest of annshard, the :class:`~annshard.Loader` included, sees
one model of a collection. ``Collection.origin`` is ``"annbatch"`` for them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from annshard._errors import CollectionFormatError

from ._manifest import Manifest, ObsColumn, ShardInfo, SourceInfo, StorageSpec

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ANNBATCH_ENCODING", "manifest_from_annbatch"]

ANNBATCH_ENCODING = "annbatch-preshuffled"
_CHILD = re.compile(r"^dataset_(\d+)$")


def _meta(path: Path) -> dict[str, Any]:
    from ._validate import read_json_file

    return read_json_file(path / "zarr.json", what="annbatch collection")


def _categories(col: Path) -> tuple[Any, ...]:
    import anndata as ad
    import zarr

    from annshard._config import zarr_config

    with zarr_config():
        values = ad.io.read_elem(zarr.open_group(col, mode="r")["categories"])
    return tuple(values.tolist() if hasattr(values, "tolist") else values)


def _obs_columns(children: list[Path]) -> tuple[ObsColumn, ...]:
    first = children[0] / "obs"
    order = _meta(first).get("attributes", {}).get("column-order", [])
    cols = []
    for name in order:
        attrs = _meta(first / name)
        enc = attrs.get("attributes", {}).get("encoding-type", "")
        if enc == "categorical":
            union: list[Any] = []
            for child in children:
                for c in _categories(child / "obs" / name):
                    if c not in union:
                        union.append(c)
            cols.append(ObsColumn(name, "categorical", "int32", tuple(union)))
        elif enc in ("string-array", "nullable-string-array"):
            cols.append(ObsColumn(name, "string", "object"))
        else:
            dtype = str(attrs.get("data_type", "float64"))
            kind = "bool" if dtype == "bool" or enc == "nullable-boolean" else "numeric"
            cols.append(ObsColumn(name, kind, dtype))
    return tuple(cols)


def manifest_from_annbatch(path: Path) -> Manifest | None:
    """Return a manifest describing the annbatch collection at ``path``, or ``None`` if it is not one.

    Raises
    ------
    CollectionFormatError
        If it is marked as an annbatch collection but its datasets are missing or inconsistent.
    """
    if not (path / "zarr.json").is_file():
        return None
    root = _meta(path)
    if root.get("attributes", {}).get("encoding-type") != ANNBATCH_ENCODING:
        return None
    children = sorted(
        (p for p in path.iterdir() if _CHILD.match(p.name) and (p / "zarr.json").is_file()),
        key=lambda p: int(_CHILD.match(p.name).group(1)),  # type: ignore[union-attr]
    )
    if not children:
        msg = f"{path}: an annbatch collection without datasets (no dataset_N children); add data with annbatch first"
        raise CollectionFormatError(msg)
    shards, n_vars, spec = [], None, None
    for child in children:
        x = _meta(child / "X")
        attrs = x.get("attributes", {})
        if x.get("node_type") == "array":
            n_obs, nv = (int(s) for s in x["shape"])
            nnz = n_obs * nv
            spec = spec or StorageSpec(x_format="dense", data_dtype=str(x.get("data_type")))
        else:
            if attrs.get("encoding-type") != "csr_matrix":
                msg = f"{child / 'X'}: encoding {attrs.get('encoding-type')!r}; annshard reads CSR or dense X"
                raise CollectionFormatError(msg)
            n_obs, nv = (int(s) for s in attrs["shape"])
            data = _meta(child / "X" / "data")
            nnz = int(data["shape"][0])
            spec = spec or StorageSpec(
                data_dtype=str(data.get("data_type")),
                indices_dtype=str(_meta(child / "X" / "indices").get("data_type")),
            )
        if n_vars is not None and nv != n_vars:
            msg = f"{child}: {nv} genes, but earlier datasets of {path} have {n_vars}; the annbatch collection is inconsistent"
            raise CollectionFormatError(msg)
        n_vars = nv
        shards.append(ShardInfo(name=child.name, n_obs=n_obs, nnz=nnz))
    total = sum(s.n_obs for s in shards)
    assert n_vars is not None and spec is not None
    return Manifest(
        n_obs=total,
        n_vars=n_vars,
        seed=0,
        join="outer",
        storage=spec,
        shards=tuple(shards),
        sources=(SourceInfo(name=path.name, n_obs=total, path=str(path), kind="annbatch"),),
        obs_columns=_obs_columns(children),
        created_by="annbatch",
        extra={"origin": "annbatch"},
    )
