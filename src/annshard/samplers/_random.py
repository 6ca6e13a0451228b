"""Random chunks: the default, and what training should use.

Every shard is cut into runs of ``chunk_size`` rows on a grid whose phase is
drawn anew each epoch (so the same rows do not always travel together), and
the runs of all shards are permuted. Each row appears exactly once per epoch.

Trade-off: a batch's rows come from ``batch_size / chunk_size`` runs at least;
with the in-memory shuffle of each preload block, a batch mixes rows of
``min(preload_nchunks, batch_size)`` runs on average. Larger chunks read faster
and shuffle less. On a collection written by annshard the rows are already
globally shuffled on disk, so neighbouring rows are unrelated and chunking
costs little randomness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import Sampler, chunk_grid, epoch_rng

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from numpy.typing import NDArray

__all__ = ["RandomSampler"]


class RandomSampler(Sampler):
    """Runs of ``chunk_size`` rows in a random order, re-drawn every epoch.

    Examples
    --------
    >>> from annshard.samplers import RandomSampler
    >>> plan = RandomSampler().plan([10, 6], chunk_size=4, seed=0, epoch=0)
    >>> int((plan[:, 2] - plan[:, 1]).sum())
    16
    """

    name = "random"

    def plan(self, n_obs: Sequence[int], *, chunk_size: int, seed: int, epoch: int) -> NDArray[np.int64]:
        """Permuted runs on a randomly shifted grid (see the module docs)."""
        rng = epoch_rng(seed, epoch, 1)
        offsets = rng.integers(0, chunk_size, size=len(n_obs))
        grid = chunk_grid(n_obs, chunk_size, offsets)
        return grid[rng.permutation(grid.shape[0])]
