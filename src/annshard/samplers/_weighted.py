"""Weighted: draw chunks with replacement, with probability set by row weights.

Use it to balance classes (``WeightedSampler("cell_type")`` gives every cell
type the same expected share of an epoch) or with any per-row weight array.

How weighting interacts with chunked reads
------------------------------------------
Reading stays chunked: the sampler draws whole runs of ``chunk_size``
contiguous rows, each with probability proportional to the *sum* of its rows'
weights, with replacement, until the epoch holds about ``num_samples`` rows.
A row's expected number of appearances is therefore proportional to the total
weight of its chunk, not to its own weight. The two agree exactly when the
weights are constant within each chunk: with ``chunk_size=1``, or on a
collection whose rows are grouped by the weighting column. On a globally
shuffled collection (what ``write_collection`` produces) a chunk of ``c`` rows
is a random mix of classes, so balancing is diluted: a rare class's share moves
from its natural share towards the balanced share by roughly the factor by
which its rows' chunk weights exceed the average, which shrinks as ``c`` grows.
Use small chunks (1-8 rows) when exact balance matters more than speed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ._base import Sampler, SamplerContext, chunk_grid, epoch_rng

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike, NDArray

__all__ = ["WeightedSampler"]


class WeightedSampler(Sampler):
    """Chunks drawn with replacement, weighted by an obs column (class balance) or by given row weights.

    Parameters
    ----------
    column
        A categorical obs column: each row gets weight ``1 / (rows of its category)``,
        so every category is drawn equally often.
    weights
        Non-negative weight of every row of the collection (global order).
    num_samples
        Rows per epoch (default: the collection's ``n_obs``).

    Examples
    --------
    >>> import numpy as np
    >>> from annshard.samplers import WeightedSampler
    >>> s = WeightedSampler(weights=np.r_[np.zeros(4), np.ones(4)])
    >>> plan = s.plan([8], chunk_size=1, seed=0, epoch=0)
    >>> bool((plan[:, 1] >= 4).all())
    True
    """

    name = "weighted"
    exhaustive = False

    def __init__(
        self, column: str | None = None, *, weights: ArrayLike | None = None, num_samples: int | None = None
    ) -> None:
        if (column is None) == (weights is None):
            msg = "WeightedSampler needs exactly one of `column` (an obs column) or `weights` (one per row)"
            raise ValueError(msg)
        self.column = column
        self.num_samples = num_samples
        self._weights: NDArray[np.float64] | None = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64).ravel()
            if w.size == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                msg = "WeightedSampler weights must be finite, non-negative and not all zero"
                raise ValueError(msg)
            self._weights = w

    def bind(self, context: SamplerContext) -> WeightedSampler:
        """Compute row weights from the collection's obs column (class balance)."""
        total = sum(context.n_obs)
        if self.column is None:
            assert self._weights is not None
            if self._weights.shape[0] != total:
                msg = f"WeightedSampler got {self._weights.shape[0]} weights for a collection of {total} rows"
                raise ValueError(msg)
            return self
        codes = np.asarray(context.obs(self.column))
        _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        bound = WeightedSampler(weights=1.0 / counts[inverse], num_samples=self.num_samples)
        bound.column = self.column
        return bound

    def plan(self, n_obs: Sequence[int], *, chunk_size: int, seed: int, epoch: int) -> NDArray[np.int64]:
        """Chunks drawn with replacement (see the module docs)."""
        if self._weights is None:
            msg = f"WeightedSampler({self.column!r}) must be bound to a collection first (the Loader does this)"
            raise RuntimeError(msg)
        total = int(sum(n_obs))
        if self._weights.shape[0] != total:
            msg = f"WeightedSampler has {self._weights.shape[0]} weights but the collection has {total} rows"
            raise ValueError(msg)
        rng = epoch_rng(seed, epoch, 3)
        grid = chunk_grid(n_obs, chunk_size, rng.integers(0, chunk_size, size=len(n_obs)))
        if grid.shape[0] == 0:
            return grid
        offsets = np.concatenate([[0], np.cumsum(np.asarray(n_obs, dtype=np.int64))])
        starts = offsets[grid[:, 0]] + grid[:, 1]
        chunk_w = np.add.reduceat(self._weights, starts)
        p = chunk_w / chunk_w.sum()
        target = self.num_samples if self.num_samples is not None else total
        n_draw = max(1, math.ceil(target * grid.shape[0] / total))
        return grid[rng.choice(grid.shape[0], size=n_draw, p=p)]

    def settings(self) -> dict[str, Any]:
        """Name, column and number of samples."""
        return {"name": self.name, "column": self.column, "num_samples": self.num_samples}
