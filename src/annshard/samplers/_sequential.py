"""Sequential: every shard in order, in runs of ``chunk_size`` rows.

Useful for inference and evaluation (each row once, in collection order), and
the fastest way to read. The sequential sampler also asks the loader not to
shuffle preload blocks in memory (:attr:`Sampler.shuffle_blocks` is ``False``),
so batches come out in collection order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import Sampler, chunk_grid

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from numpy.typing import NDArray

__all__ = ["SequentialSampler"]


class SequentialSampler(Sampler):
    """All rows in collection order; the same plan every epoch.

    Examples
    --------
    >>> from annshard.samplers import SequentialSampler
    >>> SequentialSampler().plan([3, 2], chunk_size=2, seed=0, epoch=5).tolist()
    [[0, 0, 2], [0, 2, 3], [1, 0, 2]]
    """

    name = "sequential"
    shuffle_blocks = False

    def plan(self, n_obs: Sequence[int], *, chunk_size: int, seed: int, epoch: int) -> NDArray[np.int64]:
        """Return the fixed grid, shard by shard."""
        return chunk_grid(n_obs, chunk_size)
