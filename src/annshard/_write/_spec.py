"""The storage defaults of a new collection: how ``X`` is stored unless the caller says otherwise.

By default ``X`` is CSR (dense only when every source is dense), its values keep the
sources' common dtype (float16 becomes float32: exact, and scipy.sparse has no float16),
gene indices are ``uint16`` below 65536 genes and uncompressed, whole-number values
become ``uint16`` counts (uncompressed, ``counts_codec="none"``) when every value fits, other values are stored uncompressed (``counts_dtype="auto"``, settled after the
scatter pass has seen the values). A dict overrides single fields; a full
:class:`~annshard.StorageSpec` replaces the defaults. Either way the result is checked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from annshard._store._manifest import StorageSpec

from ._counts import AUTO, check_counts_dtype

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._sources import Source

__all__ = ["auto_spec"]


def auto_spec(
    sources: list[Source], n_vars: int, dense: bool | None, storage: StorageSpec | Mapping[str, Any] | None
) -> StorageSpec:
    """Return the planned storage of ``X``: the defaults for ``sources``, overridden by ``storage``, checked.

    Raises
    ------
    ValueError
        If ``storage`` has unknown keys, float16 values, an unknown indices or values codec, indices too narrow
        for ``n_vars`` genes, or a counts dtype that cannot hold the values.
    """
    if isinstance(storage, StorageSpec):
        spec = storage
    else:
        if dense is None:
            dense = all(s.x_format == "dense" for s in sources)
        dtypes = {s.x_dtype for s in sources}
        data_dtype = next(iter(dtypes)) if len(dtypes) == 1 else np.result_type(*dtypes)
        if np.dtype(data_dtype) == np.float16:
            data_dtype = np.float32  # scipy.sparse has no float16; float32 holds every float16 value exactly
        spec = StorageSpec(
            x_format="dense" if dense else "csr",
            data_dtype=str(np.dtype(data_dtype)),
            indices_dtype="uint16" if n_vars < 65536 else "int32",
            counts_dtype=AUTO,
            indices_codec="none",
            values_codec="none",  # non-count values uncompressed
            counts_codec="none",  # counts as uncompressed uint16 too (docs/performance.md, issue 15 round 4)
        )
        if storage:
            unknown = set(storage) - set(spec.to_dict())
            if unknown:
                msg = f"storage has unknown keys {sorted(unknown)}; valid keys: {sorted(spec.to_dict())}"
                raise ValueError(msg)
            spec = replace(spec, **dict(storage))
    if np.dtype(spec.data_dtype) == np.float16:
        msg = "storage data_dtype float16 is not supported (scipy.sparse has no float16); use 'float32'"
        raise ValueError(msg)
    spec = replace(spec, counts_dtype=check_counts_dtype(spec.counts_dtype, spec.data_dtype, spec.x_format))
    if spec.values_codec not in (None, "none"):
        msg = f"storage values_codec must be 'none' (non-count values uncompressed) or None (compressed), not {spec.values_codec!r}"
        raise ValueError(msg)
    if spec.counts_codec not in (None, "none"):
        msg = f"storage counts_codec must be 'none' (counts stored uncompressed) or None (compressed, lz4 bitshuffled), not {spec.counts_codec!r}"
        raise ValueError(msg)
    if spec.indices_codec not in (None, "none"):
        msg = f"storage indices_codec must be 'none' (uncompressed) or None (compressed like the values), not {spec.indices_codec!r}"
        raise ValueError(msg)
    idx = np.dtype(spec.indices_dtype)
    if spec.x_format == "csr" and (idx.kind not in "iu" or np.iinfo(idx).max < n_vars - 1):
        msg = f"storage indices_dtype {idx} cannot index {n_vars} genes; use 'int32' (or 'uint16' below 65536 genes)"
        raise ValueError(msg)
    return spec
