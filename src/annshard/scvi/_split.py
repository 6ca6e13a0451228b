"""Train / validation / test splits by chunk, and the samplers that read them.

A split assigns whole chunks (runs of ``chunk_size`` contiguous rows inside one
shard, on the fixed grid of :func:`annshard.samplers.chunk_grid`) to train,
validation or test, in a seeded random order of chunks. Splitting rows one by
one would make every read of a part scattered; splitting by chunk keeps each
part as readable as the whole collection (each chunk is one contiguous read),
and since annshard collections are globally shuffled on disk, neighbouring rows
are unrelated and a chunk is as random a unit as a row. The price: each part's
size is within half a chunk of the requested fraction.

The samplers are ordinary :class:`annshard.samplers.Sampler` subclasses, so the
public :class:`annshard.Loader` reads the parts with all its machinery
(prefetch, in-memory shuffle of each block, rank and worker splitting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from annshard.samplers import RandomSampler, Sampler, SamplerContext, chunk_grid, epoch_rng

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

__all__ = ["ChunkRuns", "ContextSampler", "OrderedRuns", "Split", "index_runs", "split_chunks", "split_sizes"]

_SPLIT_STREAM = 0x5C71  # the split's own random stream, apart from the samplers' per-epoch streams
_TRAIN_STREAM = 0x5C72


@dataclass(frozen=True)
class Split:
    """Which chunks (``(shard, start, stop)`` rows, global shard numbers) belong to each part."""

    train: NDArray[np.int64]
    validation: NDArray[np.int64]
    test: NDArray[np.int64]

    @staticmethod
    def rows(chunks: NDArray[np.int64], offsets: NDArray[np.int64]) -> NDArray[np.int64]:
        """Global row indices of ``chunks``, sorted."""
        if chunks.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        starts = offsets[chunks[:, 0]] + chunks[:, 1]
        lens = chunks[:, 2] - chunks[:, 1]
        rows = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()), dtype=np.int64)
        return np.sort(rows)


def split_sizes(n_obs: int, train_size: float, validation_size: float | None) -> tuple[int, int]:
    """Rows for train and validation, as scvi-tools computes them (``ceil`` for train, ``floor`` for validation).

    Raises
    ------
    ValueError
        If a size is outside ``[0, 1]``, the sizes add up to more than 1, or train would be empty.
    """
    for name, value in (("train_size", train_size), ("validation_size", validation_size)):
        if value is not None and not 0.0 <= float(value) <= 1.0:
            msg = f"{name} must be between 0 and 1, got {value!r}"
            raise ValueError(msg)
    n_train = math.ceil(float(train_size) * n_obs)
    n_val = n_obs - n_train if validation_size is None else math.floor(n_obs * float(validation_size))
    if n_train + n_val > n_obs:
        msg = f"train_size={train_size} and validation_size={validation_size} add up to more than the {n_obs} rows"
        raise ValueError(msg)
    if n_train == 0:
        msg = f"train_size={train_size} leaves no training rows of {n_obs}"
        raise ValueError(msg)
    return n_train, n_val


def split_chunks(
    n_obs: Sequence[int],
    *,
    chunk_size: int,
    n_train: int,
    n_val: int,
    seed: int,
    shuffle: bool = True,
) -> Split:
    """Assign the chunks of the fixed grid to validation, train and test.

    Chunks are taken in a seeded random order (``shuffle``) or in collection
    order; a chunk goes to the part its middle row falls in when the parts are
    laid one after the other (validation, then train, then test), so each part
    is within half a chunk of its requested size.

    Parameters
    ----------
    n_obs
        Rows per shard (global shard order).
    chunk_size
        Rows per chunk.
    n_train, n_val
        Requested rows of train and validation; the rest is test.
    seed
        Seed of the chunk order: the same seed gives the same split on any machine.
    shuffle
        Split a random order of chunks (``False``: validation first, then train, then test, in collection order).

    Returns
    -------
    The :class:`Split`.
    """
    grid = chunk_grid(n_obs, chunk_size)
    if shuffle:
        grid = grid[epoch_rng(seed, 0, _SPLIT_STREAM).permutation(grid.shape[0])]
    lens = grid[:, 2] - grid[:, 1]
    middle = np.cumsum(lens) - lens / 2.0
    val = middle <= n_val
    train = ~val & (middle <= n_val + n_train)
    if not train.any() and grid.shape[0]:
        # a part smaller than half a chunk is empty, except train, which always gets at least one chunk
        first = int(np.argmax(~val)) if (~val).any() else 0
        val[first], train[first] = False, True
    test = ~val & ~train
    # each part in collection order: sequential reads of validation and test stay sequential
    return Split(train=_sorted(grid[train]), validation=_sorted(grid[val]), test=_sorted(grid[test]))


def _sorted(chunks: NDArray[np.int64]) -> NDArray[np.int64]:
    return chunks[np.lexsort((chunks[:, 1], chunks[:, 0]))]


def index_runs(indices: Any, shard_rows: Sequence[int], chunk_size: int) -> NDArray[np.int64]:
    """Turn global row indices (any order, repeats allowed) into a plan of runs that reads them in that order.

    Raises
    ------
    ValueError
        If an index is not an integer in ``[0, n_obs)``.
    """
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        msg = f"indices must be a 1-D array of integer row numbers, got shape {idx.shape} and dtype {idx.dtype}"
        raise ValueError(msg)
    idx = idx.astype(np.int64, copy=False)
    offsets = np.concatenate([[0], np.cumsum(np.asarray(shard_rows, dtype=np.int64))])
    n_obs = int(offsets[-1])
    if idx.size and (idx.min() < 0 or idx.max() >= n_obs):
        bad = idx[(idx < 0) | (idx >= n_obs)][:5].tolist()
        msg = f"indices must lie in [0, {n_obs}) (the collection's rows); got {bad}"
        raise ValueError(msg)
    if idx.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    shard = np.searchsorted(offsets, idx, side="right") - 1
    local = idx - offsets[shard]
    # a run breaks where the next index is not the next row of the same shard
    breaks = np.flatnonzero((np.diff(idx) != 1) | (np.diff(shard) != 0)) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.append(breaks, idx.size)
    runs = []
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        for c in range(a, b, chunk_size):  # runs longer than chunk_size are cut
            e = min(c + chunk_size, b)
            runs.append((int(shard[c]), int(local[c]), int(local[e - 1]) + 1))
    return np.asarray(runs, dtype=np.int64).reshape(-1, 3)


class ChunkRuns(Sampler):
    """The chunks of one part of a split, in a new random order every epoch (training)."""

    name = "annshard.scvi.train"

    def __init__(self, chunks: NDArray[np.int64], *, part: str = "train") -> None:
        self.chunks = np.asarray(chunks, dtype=np.int64).reshape(-1, 3)
        self.part = part

    def plan(self, n_obs: Sequence[int], *, chunk_size: int, seed: int, epoch: int) -> NDArray[np.int64]:
        """Return the part's chunks, permuted with a generator of ``(seed, epoch)``."""
        return self.chunks[epoch_rng(seed, epoch, _TRAIN_STREAM).permutation(self.chunks.shape[0])]

    def settings(self) -> dict[str, Any]:
        """Return the part and its size."""
        lens = self.chunks[:, 2] - self.chunks[:, 1]
        return {"name": self.name, "part": self.part, "n_chunks": int(self.chunks.shape[0]), "n_rows": int(lens.sum())}


class OrderedRuns(ChunkRuns):
    """Fixed runs in their given order, every epoch, without the in-memory shuffle (validation, inference)."""

    name = "annshard.scvi.ordered"
    shuffle_blocks = False

    def plan(self, n_obs: Sequence[int], *, chunk_size: int, seed: int, epoch: int) -> NDArray[np.int64]:
        """Return the runs as given."""
        return self.chunks.copy()


class ContextSampler(RandomSampler):
    """The default random sampler, keeping the :class:`SamplerContext` the loader binds it to.

    The context's ``obs(name)`` is the public way to read a whole obs column
    (categorical columns as codes into :attr:`annshard.Loader.categories`).
    """

    context: SamplerContext | None = None

    def bind(self, context: SamplerContext) -> Sampler:
        """Keep ``context``; the plans are the random sampler's."""
        self.context = context
        return self
