"""Layers and obsm arrays that travel with the cells: which ones, and how each is stored.

A collection may keep, beside ``X``, some of its sources' layers (matrices
over the same genes, e.g. raw ``counts`` beside normalised ``X``) and obsm
arrays (per-cell embeddings such as ``X_pca``). Each is moved through the
scatter and gather passes with the same row permutation as ``X``, so row ``r``
of every matrix of a shard is the same cell.

Decisions, made here once for a write (or checked against the collection for an
append):

- A requested layer or obsm array must exist in every source; a source that
  lacks it is refused by name (also under ``join="outer"``: a missing matrix is
  not a zero matrix). ``"all"`` takes the ones every source has and warns about
  the others.
- Layers are reindexed into the joint gene space like ``X`` (missing genes of a
  source are zeros under ``join="outer"``). Each layer keeps its own storage: CSR
  unless every source's layer is dense, its own value dtype, and its own counts
  decision (whole numbers in ``[0, 65535]`` are stored as ``uint16`` counts, as for ``X``).
- obsm arrays are always stored dense, chunked along rows; their width must be the
  same in every source.
- An append must supply every layer and obsm array the collection has, with the same
  obsm widths; values their stored dtype would change are refused before the cast (as
  for ``X``); extra ones in the new sources are not stored.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from annshard._errors import SourceError
from annshard._store._manifest import MatrixSpec

from ._counts import AUTO, check_counts_dtype, resolve_counts

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from annshard._store._manifest import StorageSpec

    from ._counts import ValueStats
    from ._sources import Source

__all__ = ["MatrixPlan", "plan_matrices", "plan_matrices_into", "resolve_matrices"]

_OBSM_CHUNK_BYTES = 1 << 15  # target bytes per inner chunk of an obsm array (at least 32 rows)


@dataclass(frozen=True)
class MatrixPlan:
    """One layer or obsm array of a write: how it is planned to be stored.

    Attributes
    ----------
    spec
        Its manifest entry as planned (``storage.counts_dtype`` may still be ``"auto"``, settled by
        :func:`resolve_matrices` from the values the scatter pass saw).
    """

    spec: MatrixSpec

    @property
    def element(self) -> str:
        """``"layers/<k>"`` or ``"obsm/<k>"``."""
        return self.spec.element

    @property
    def is_layer(self) -> bool:
        """Whether it is a layer (reindexed into the collection's genes like ``X``)."""
        return self.spec.group == "layers"


def _requested(
    sources: list[Source], group: str, wanted: Iterable[str] | str | None, *, stacklevel: int = 4
) -> list[str]:
    if wanted is None:
        return []
    keys = [[k.partition("/")[2] for k in s.matrix_keys() if k.partition("/")[0] == group] for s in sources]
    if isinstance(wanted, str):
        if wanted != "all":
            msg = f"{group} must be a list of names or 'all', not {wanted!r} (did you mean {group}=[{wanted!r}]?)"
            raise ValueError(msg)
        common = [k for k in keys[0] if all(k in ks for ks in keys[1:])]
        left = sorted({k for ks in keys for k in ks} - set(common))
        if left:
            msg = f"{group}='all': {left} are not in every source and are not stored; name them to get an error"
            warnings.warn(msg, UserWarning, stacklevel=stacklevel)
        return common
    names = list(dict.fromkeys(wanted))
    for n in names:
        if not isinstance(n, str) or not n or "/" in n:
            msg = f"{group} names must be non-empty strings without '/', not {n!r}"
            raise ValueError(msg)
    for s, ks in zip(sources, keys, strict=True):
        for n in names:
            if n not in ks:
                msg = (
                    f"{s.label}: {group}/{n}: not found ({group} here: {ks or 'none'}); every source must have "
                    f"each requested {group} entry: add it to this source, or leave {n!r} out of {group}=[...]"
                )
                raise SourceError(msg)
    return names


def _info(src: Source, element: str) -> Any:
    info = src.matrix_info(element)
    if len(info.shape) != 2 or info.shape[0] != src.n_obs:
        msg = f"{src.label}: {element}: has shape {tuple(info.shape)}, not ({src.n_obs}, ...) rows like obs; the file is inconsistent"
        raise SourceError(msg)
    if np.dtype(info.dtype).kind not in "biuf":
        msg = f"{src.label}: {element}: has dtype {info.dtype}; annshard stores numeric layers and obsm arrays only, leave it out"
        raise SourceError(msg)
    return info


def _stored_dtype(infos: list[Any]) -> np.dtype:
    """Return the sources' common value dtype; float16 is stored as float32 like ``X`` (exact; scipy.sparse has no float16)."""
    dtype = np.result_type(*(np.dtype(i.dtype) for i in infos))
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _plan_layer(sources: list[Source], name: str, x_spec: StorageSpec, n_vars: int) -> MatrixPlan:
    element = f"layers/{name}"
    infos = [_info(s, element) for s in sources]
    for s, info in zip(sources, infos, strict=True):
        if info.shape[1] != s.n_vars:
            msg = f"{s.label}: {element}: has {info.shape[1]} columns but var has {s.n_vars} genes; the file is inconsistent"
            raise SourceError(msg)
    fmt = "dense" if all(i.format == "dense" for i in infos) else "csr"
    dtype = _stored_dtype(infos)
    storage = replace(x_spec, x_format=fmt, data_dtype=str(dtype))
    storage = replace(storage, counts_dtype=check_counts_dtype(AUTO, storage.data_dtype, fmt))
    return MatrixPlan(MatrixSpec(element, n_vars, storage))


def _obsm_storage(x_spec: StorageSpec, dtype: np.dtype, n_cols: int) -> StorageSpec:
    rows = max(32, _OBSM_CHUNK_BYTES // max(1, n_cols * dtype.itemsize))
    return replace(
        x_spec,
        x_format="dense",
        data_dtype=str(dtype),
        counts_dtype=None,
        dense_chunk_rows=rows,
        dense_shard_rows=max(rows, x_spec.dense_shard_rows // rows * rows),
    )


def _plan_obsm(sources: list[Source], name: str, x_spec: StorageSpec) -> MatrixPlan:
    element = f"obsm/{name}"
    infos = [_info(s, element) for s in sources]
    widths = {int(i.shape[1]) for i in infos}
    if len(widths) > 1:
        desc = "; ".join(f"{s.label}: {i.shape[1]}" for s, i in zip(sources, infos, strict=True))
        msg = f"{element}: has different widths across sources ({desc}); an obsm array must have the same columns in every source, leave {name!r} out of obsm=[...]"
        raise SourceError(msg)
    dtype = _stored_dtype(infos)
    n_cols = widths.pop()
    return MatrixPlan(MatrixSpec(element, n_cols, _obsm_storage(x_spec, dtype, n_cols)))


def plan_matrices(
    sources: list[Source],
    *,
    layers: Iterable[str] | str | None,
    obsm: Iterable[str] | str | None,
    n_vars: int,
    x_spec: StorageSpec,
) -> list[MatrixPlan]:
    """Decide which layers and obsm arrays a new collection keeps, and how each is stored.

    Raises
    ------
    SourceError
        If a requested one is missing from a source, is not numeric, or obsm widths differ.
    """
    plans = [_plan_layer(sources, name, x_spec, n_vars) for name in _requested(sources, "layers", layers)]
    plans += [_plan_obsm(sources, name, x_spec) for name in _requested(sources, "obsm", obsm)]
    return plans


def plan_matrices_into(sources: list[Source], existing: tuple[MatrixSpec, ...]) -> list[MatrixPlan]:
    """Check that new sources supply every layer and obsm array of a collection (for append).

    Raises
    ------
    SourceError
        If a source lacks one or an obsm width differs. (Values that the stored dtype would change are
        refused by the scatter pass, before the cast and before any shard is written.)
    """
    plans = []
    for spec in existing:
        for s in sources:
            keys = s.matrix_keys()
            if spec.element not in keys:
                here = [k for k in keys if k.startswith(f"{spec.group}/")]
                msg = (
                    f"{s.label}: {spec.element}: not found ({spec.group} here: {here or 'none'}), but the collection "
                    f"stores it for every cell; an append must supply every layer and obsm array the collection has "
                    f"({[m.element for m in existing]})"
                )
                raise SourceError(msg)
            info = _info(s, spec.element)
            if spec.group == "obsm" and info.shape[1] != spec.n_cols:
                msg = f"{s.label}: {spec.element}: has {info.shape[1]} columns, the collection's has {spec.n_cols}; append sources with the same embedding"
                raise SourceError(msg)
            if spec.group == "layers" and info.shape[1] != s.n_vars:
                msg = f"{s.label}: {spec.element}: has {info.shape[1]} columns but var has {s.n_vars} genes; the file is inconsistent"
                raise SourceError(msg)
        plans.append(MatrixPlan(spec))
    return plans


def resolve_matrices(
    plans: Sequence[MatrixPlan], sources: Sequence[Source], stats: Sequence[Sequence[ValueStats]]
) -> tuple[MatrixSpec, ...]:
    """Return each matrix's manifest entry with its counts decision settled from the values the scatter pass saw.

    ``stats[j][i]`` describes the values of matrix ``j`` in source ``i``.

    Raises
    ------
    SourceError
        If an explicit counts dtype (an existing collection's) cannot hold a source's values exactly.
    """
    out = []
    for p, st in zip(plans, stats, strict=True):
        storage = resolve_counts(p.spec.storage, sources, st, element=p.element)
        out.append(replace(p.spec, storage=storage))
    return tuple(out)
