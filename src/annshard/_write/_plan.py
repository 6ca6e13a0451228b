"""Planning a write: the joint gene space, the unified obs schema, and the storage layout.

Genes
    ``join="inner"`` keeps the genes present in every source, in the first
    source's order; ``join="outer"`` keeps the union: the first source's genes
    in their order, then each later source's new genes in order of appearance
    (never a string sort, so the result is predictable). Each source gets a
    lookup array ``old gene index -> new gene index`` (``-1``: dropped), so
    reindexing a block is one vectorised ``take``. ``var`` columns are merged:
    a gene's value comes from the first source that has it.

obs
    By default every column of every source is kept. Per column, the kinds
    found in the sources decide the stored kind:

    - only categoricals: categorical, with one category list shared by all
      shards (the union, in order of appearance) so codes are stable;
    - strings (with or without categoricals): categorical when the union has
      at most ``max_categories`` distinct values, else a plain string column;
    - only numbers/bools: numeric in the common dtype (``numpy.result_type``),
      bool when all are bool;
    - numbers in one source and strings/categories in another is a conflict:
      ``obs_conflicts="raise"`` (default) refuses with a :class:`SourceError`,
      ``"string"`` converts the numbers to strings with a warning.

    A column absent from some sources is missing there: ``NaN`` for numbers
    (ints and bools then become ``float64``), a missing category or string
    otherwise. ``source`` and ``source_row`` are added to every row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from annshard._errors import SourceError, VarJoinError
from annshard._store._manifest import ObsColumn

if TYPE_CHECKING:
    from ._sources import Source

__all__ = ["ColumnPlan", "GenePlan", "plan_genes", "plan_obs"]

RESERVED = ("source", "source_row")


# -- genes --------------------------------------------------------------------------------------------------------
@dataclass
class GenePlan:
    """The joint gene space and each source's way into it.

    Attributes
    ----------
    var
        The joint var (index: gene names).
    luts
        Per source, ``old index -> new index`` (``-1`` where the gene is dropped).
    monotone
        Per source, whether kept genes keep their relative order (no re-sorting needed).
    dropping
        Per source, whether some genes are dropped.
    """

    var: pd.DataFrame
    luts: list[np.ndarray]
    monotone: list[bool]
    dropping: list[bool]

    @property
    def n_vars(self) -> int:
        """Genes in the joint space."""
        return int(self.var.shape[0])


def check_unique_var(src: Source) -> None:
    """Refuse a source whose var names repeat."""
    idx = src.var.index
    if not idx.is_unique:
        dups = idx[idx.duplicated()].unique()
        examples = ", ".join(map(repr, list(dups[:5])))
        msg = (
            f"{src.label}: var names are not unique ({len(dups)} repeated, e.g. {examples}); "
            "make them unique first (adata.var_names_make_unique()) or aggregate the duplicates"
        )
        raise VarJoinError(msg)


def _luts_for(sources: list[Source], joint: pd.Index) -> tuple[list[np.ndarray], list[bool], list[bool]]:
    luts, monotone, dropping = [], [], []
    for s in sources:
        lut = joint.get_indexer(s.var.index).astype(np.int32 if len(joint) < 2**31 else np.int64)
        kept = lut[lut >= 0]
        luts.append(lut)
        monotone.append(bool(kept.size < 2 or np.all(np.diff(kept) > 0)))
        dropping.append(bool((lut < 0).any()))
    return luts, monotone, dropping


def _merge_var(sources: list[Source], joint: pd.Index) -> pd.DataFrame:
    out = pd.DataFrame(index=joint)
    for s in sources:
        other = s.var.reindex(joint)
        for col in other.columns:
            values = other[col]
            if isinstance(values.dtype, pd.CategoricalDtype):
                values = values.astype(object)
            if col not in out.columns:
                out[col] = values
            else:
                missing = out[col].isna()
                if missing.any():
                    merged = out[col].astype(object)
                    merged[missing] = values[missing].astype(object)
                    out[col] = pd.Series(merged, index=joint).infer_objects()
    out.index.name = sources[0].var.index.name
    return out


def plan_genes(sources: list[Source], join: Literal["inner", "outer"]) -> GenePlan:
    """Build the joint gene space.

    Raises
    ------
    VarJoinError
        On duplicated var names in a source, or when ``join="inner"`` leaves no gene.
    """
    if join not in ("inner", "outer"):
        msg = f"join must be 'inner' or 'outer', not {join!r}"
        raise ValueError(msg)
    for s in sources:
        check_unique_var(s)
    first = sources[0].var.index
    if join == "inner":
        keep = np.ones(len(first), dtype=bool)
        for s in sources[1:]:
            keep &= first.isin(s.var.index)
        joint = first[keep]
        if len(joint) == 0:
            labels = "; ".join(f"{s.label} (e.g. {list(s.var.index[:2])})" for s in sources[:4])
            msg = (
                f"the sources have no gene in common under join='inner': {labels}; "
                "check that they use the same gene identifiers (symbols vs Ensembl ids), or use join='outer'"
            )
            raise VarJoinError(msg)
    else:
        names: dict[str, None] = dict.fromkeys(first)
        for s in sources[1:]:
            names.update(dict.fromkeys(s.var.index))
        joint = pd.Index(list(names), dtype=object)
    joint = pd.Index(joint, dtype=object, name=first.name)
    luts, monotone, dropping = _luts_for(sources, joint)
    return GenePlan(_merge_var(sources, joint), luts, monotone, dropping)


def plan_genes_into(sources: list[Source], var: pd.DataFrame, join: str) -> GenePlan:
    """Map new sources into an existing collection's gene space (for append).

    Genes of a new source that the collection lacks are dropped (a warning says so under ``join="outer"``, since the
    collection cannot grow genes without rewriting its shards). Under ``join="inner"`` a new source must have every
    gene of the collection; under ``"outer"`` its missing genes are structural zeros.
    """
    for s in sources:
        check_unique_var(s)
    joint = pd.Index(var.index, dtype=object)
    luts, monotone, dropping = _luts_for(sources, joint)
    for s, lut in zip(sources, luts, strict=True):
        n_new = int((lut < 0).sum())
        covered = np.zeros(len(joint), dtype=bool)
        covered[lut[lut >= 0]] = True
        n_missing = int((~covered).sum())
        if join == "inner" and n_missing:
            examples = list(joint[~covered][:3])
            msg = (
                f"{s.label}: lacks {n_missing} of the collection's genes (e.g. {examples}), but the collection was "
                "written with join='inner' (every gene measured in every source); append only sources that have "
                "all its genes, or re-write the collection with join='outer'"
            )
            raise VarJoinError(msg)
        if n_missing == len(joint):
            msg = f"{s.label}: has no gene in common with the collection; check its gene identifiers"
            raise VarJoinError(msg)
        if n_new and join == "outer":
            msg = f"{s.label}: {n_new} genes are not in the collection and are dropped (an append cannot add genes)"
            warnings.warn(msg, UserWarning, stacklevel=4)
    return GenePlan(var, luts, monotone, dropping)


# -- obs ----------------------------------------------------------------------------------------------------------
@dataclass
class ColumnPlan:
    """How one obs column is stored in the collection, and how each source maps into it.

    Attributes
    ----------
    name
        Column name.
    kind
        Stored kind.
    dtype
        Values dtype (numeric/bool); ``int32`` codes for categorical; object for string.
    categories
        The shared category list (categorical).
    ordered
        Whether the categorical is ordered.
    code_luts
        Per source: local code -> shared code (categorical sources into a categorical column).
    present
        Per source: whether it has the column.
    coerce
        Per source: whether its values are converted to strings (obs_conflicts="string").
    """

    name: str
    kind: Literal["categorical", "numeric", "bool", "string"]
    dtype: np.dtype
    categories: list[Any] | None = None
    ordered: bool = False
    code_luts: list[np.ndarray | None] = field(default_factory=list)
    present: list[bool] = field(default_factory=list)
    coerce: list[bool] = field(default_factory=list)

    def obs_column(self) -> ObsColumn:
        """Return the manifest entry."""
        if self.kind == "categorical":
            cats = tuple(self.categories or ())
            codes = pd.Categorical.from_codes([], categories=pd.Index(list(cats)) if cats else []).codes.dtype
            return ObsColumn(self.name, "categorical", str(codes), cats, self.ordered)
        if self.kind == "string":
            return ObsColumn(self.name, "string", "str")
        return ObsColumn(self.name, self.kind, str(self.dtype))


def _union(lists: list[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for lst in lists:
        for v in lst:
            seen.setdefault(v, None)
    return list(seen)


def _conflict(name: str, sources: list[Source], kinds: list[str | None]) -> SourceError:
    desc = "; ".join(f"{s.label}: {k}" for s, k in zip(sources, kinds, strict=True) if k is not None)
    msg = (
        f"obs column {name!r} has conflicting types across sources ({desc}); drop it with obs_columns=[...], "
        "fix the sources, or pass obs_conflicts='string' to store it as strings"
    )
    return SourceError(msg)


def plan_column(
    name: str,
    sources: list[Source],
    *,
    max_categories: int,
    obs_conflicts: Literal["raise", "string"],
    existing: ObsColumn | None = None,
) -> ColumnPlan:
    """Unify one obs column over the sources (and, for an append, the collection's existing column)."""
    schemas = [s.obs_schema.get(name) for s in sources]
    kinds = [sc.kind if sc is not None else None for sc in schemas]
    present = [k is not None for k in kinds]
    textual = {k for k in kinds if k in ("categorical", "string")}
    numeric = {k for k in kinds if k in ("numeric", "bool")}
    if existing is not None:
        (textual if existing.kind in ("categorical", "string") else numeric).add(existing.kind)
    coerce = [False] * len(sources)
    if textual and numeric:
        if obs_conflicts != "string" or (existing is not None and existing.kind not in ("categorical", "string")):
            raise _conflict(name, sources, kinds)
        coerce = [k in ("numeric", "bool") for k in kinds]
        msg = f"obs column {name!r} mixes numbers and strings across sources; numbers are stored as strings"
        warnings.warn(msg, UserWarning, stacklevel=4)
        textual.add("string")
    if textual:
        return _plan_textual(name, sources, schemas, present, coerce, textual, max_categories, existing)
    dtypes = [sc.dtype for sc in schemas if sc is not None]
    if existing is not None:
        dtypes.append(np.dtype(existing.dtype))
    if existing is not None:
        dt = np.dtype(existing.dtype)
        if not all(np.can_cast(d, dt, "same_kind") for d in dtypes) or (not all(present) and dt.kind != "f"):
            msg = (
                f"obs column {name!r}: new sources do not fit its stored dtype {dt} (they have "
                f"{sorted({str(d) for d in dtypes})}{' or lack it' if not all(present) else ''}); "
                "append sources with the same obs schema or drop the column with obs_columns=[...]"
            )
            raise SourceError(msg)
        kind = existing.kind
    else:
        nullable = any(sc is not None and sc.nullable for sc in schemas) or not all(present)
        kind = "bool" if numeric == {"bool"} and not nullable else "numeric"
        dt = np.result_type(*dtypes) if kind == "numeric" else np.dtype(bool)
        if dt.kind == "b" and kind == "numeric":
            dt = np.dtype(np.float64) if nullable else np.dtype(np.int64)
        if nullable and dt.kind in "iub":
            dt = np.dtype(np.float64)
    return ColumnPlan(name, kind, dt, present=present, coerce=coerce, code_luts=[None] * len(sources))  # type: ignore[arg-type]


def _plan_textual(
    name: str,
    sources: list[Source],
    schemas: list[Any],
    present: list[bool],
    coerce: list[bool],
    kinds: set[str],
    max_categories: int,
    existing: ObsColumn | None,
) -> ColumnPlan:
    if existing is not None and existing.kind == "string":
        return ColumnPlan(
            name, "string", np.dtype(object), present=present, coerce=coerce, code_luts=[None] * len(sources)
        )
    lists: list[Any] = [list(existing.categories or ())] if existing is not None else []
    categorical = existing is not None or kinds == {"categorical"}
    for s, sc, c in zip(sources, schemas, coerce, strict=True):
        if sc is None:
            continue
        if sc.kind == "categorical":
            lists.append(list(sc.categories))
        else:
            limit = max_categories - len(_union(lists))
            uniq = s.string_uniques(name, max(limit, 0))
            if uniq is None and existing is None:
                return ColumnPlan(
                    name, "string", np.dtype(object), present=present, coerce=coerce, code_luts=[None] * len(sources)
                )
            if uniq is None:
                uniq = s.string_uniques(name, 1 << 62) or []
            lists.append([str(u) for u in uniq] if c else uniq)
    cats = _union(lists)
    if not categorical and len(cats) > max_categories:
        return ColumnPlan(
            name, "string", np.dtype(object), present=present, coerce=coerce, code_luts=[None] * len(sources)
        )
    types = {type(c) for c in cats}
    if types and not (types <= {str} or all(issubclass(t, int | float | np.number) for t in types)):
        labels = [s for s, p in zip(sources, present, strict=True) if p]
        raise _conflict(name, labels, [f"categories of types {sorted(t.__name__ for t in types)}"] * len(labels))
    index = pd.Index(cats, dtype=object)
    luts: list[np.ndarray | None] = []
    for sc in schemas:
        if sc is not None and sc.kind == "categorical":
            lut = index.get_indexer(pd.Index(list(sc.categories), dtype=object)).astype(np.int32)
            luts.append(np.append(lut, np.int32(-1)))  # code -1 (missing) maps to the last slot
        else:
            luts.append(None)
    ordered = existing.ordered if existing is not None else _all_ordered(schemas)
    return ColumnPlan(name, "categorical", np.dtype(np.int32), cats, ordered, luts, present, coerce)


def _all_ordered(schemas: list[Any]) -> bool:
    cat = [sc for sc in schemas if sc is not None]
    return (
        bool(cat)
        and all(sc.kind == "categorical" and sc.ordered for sc in cat)
        and len({sc.categories for sc in cat}) == 1
    )


def plan_obs(
    sources: list[Source],
    obs_columns: list[str] | None,
    *,
    max_categories: int = 10_000,
    obs_conflicts: Literal["raise", "string"] = "raise",
    existing: tuple[ObsColumn, ...] | None = None,
) -> list[ColumnPlan]:
    """Plan every kept obs column (without ``source`` / ``source_row``, which the writer adds).

    Raises
    ------
    SourceError
        If a requested column exists in no source, is reserved, or has conflicting types.
    """
    if existing is not None:
        names = [c.name for c in existing if c.name not in RESERVED]
        old = {c.name: c for c in existing}
        dropped = sorted({n for s in sources for n in s.obs_schema} - set(names) - set(RESERVED))
        if dropped:
            msg = f"obs columns {dropped} of the new sources are not in the collection and are not stored"
            warnings.warn(msg, UserWarning, stacklevel=3)
        return [
            plan_column(n, sources, max_categories=max_categories, obs_conflicts=obs_conflicts, existing=old[n])
            for n in names
        ]
    if obs_columns is None:
        names = _union([list(s.obs_schema) for s in sources])
        clash = [n for n in names if n in RESERVED]
        if clash:
            msg = f"obs columns {clash} of the sources are replaced by annshard's own 'source'/'source_row' columns"
            warnings.warn(msg, UserWarning, stacklevel=3)
            names = [n for n in names if n not in RESERVED]
    else:
        names = list(dict.fromkeys(obs_columns))
        for n in names:
            if n in RESERVED:
                msg = f"obs column {n!r} is reserved: annshard adds 'source' and 'source_row' itself; leave it out"
                raise SourceError(msg)
            if not any(n in s.obs_schema for s in sources):
                avail = _union([list(s.obs_schema) for s in sources])
                msg = f"obs column {n!r} is in none of the sources (available: {avail}); check obs_columns"
                raise SourceError(msg)
    return [plan_column(n, sources, max_categories=max_categories, obs_conflicts=obs_conflicts) for n in names]
