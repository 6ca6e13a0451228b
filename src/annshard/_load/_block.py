"""A block of rows as read (:class:`Block`): what the readers hand the gathers, and what a batch is before conversion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Block"]


@dataclass
class Block:
    """Rows of a preload block, in read order.

    Attributes
    ----------
    index
        Global row index of every row.
    indptr
        CSR row pointers (``int64``, ``len(index) + 1``); ``None`` for dense.
    data
        CSR values, or the dense 2-D rows.
    indices
        CSR gene indices as stored (e.g. ``uint16``); ``None`` for dense.
    extras
        The same rows of the layers and obsm arrays read with ``X``, by element
        (``"layers/counts"``), each as a block of its own (its ``index`` is this block's).
    dtype
        The values' dtype in batches when ``data`` holds raw counts as stored (``narrow`` reads); else ``None``.
    indices_checked
        Whether every gene index was checked against ``n_vars`` while it was read (by the raw threads).
    """

    index: NDArray[np.int64]
    indptr: NDArray[np.int64] | None
    data: np.ndarray
    indices: np.ndarray | None
    extras: dict[str, Block] = field(default_factory=dict)
    dtype: np.dtype | None = None
    indices_checked: bool = False

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.index.shape[0])
