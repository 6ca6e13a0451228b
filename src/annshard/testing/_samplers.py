"""Conformance checks for samplers: the contract every :class:`~annshard.samplers.Sampler` must keep."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from annshard._load._assemble import EpochStream
from annshard._load._world import World
from annshard.samplers import SamplerContext

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

    from annshard.samplers import Sampler

__all__ = ["check_sampler", "plan_rows"]


def plan_rows(plan: NDArray[np.int64], n_obs: Sequence[int]) -> NDArray[np.int64]:
    """Global row indices of a plan's (or a part's) chunks, in order."""
    offsets = np.concatenate([[0], np.cumsum(np.asarray(n_obs, dtype=np.int64))])
    lens = plan[:, 2] - plan[:, 1]
    n = int(lens.sum())
    within = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    return np.repeat(offsets[plan[:, 0]] + plan[:, 1], lens) + within


def _fail(sampler: Sampler, what: str) -> None:
    msg = f"{sampler!r} breaks the sampler contract: {what}"
    raise AssertionError(msg)


def check_sampler(
    sampler: Sampler,
    *,
    n_obs: Sequence[int] = (37, 0, 101, 64, 5),
    chunk_size: int = 8,
    seeds: Sequence[int] = (0, 1),
    epochs: Sequence[int] = (0, 1, 2),
    world_sizes: Sequence[int] = (1, 2, 3),
    num_workers: Sequence[int] = (1, 2),
    preload_nchunks: int = 3,
    reshuffles: bool = True,
    obs: dict[str, np.ndarray] | None = None,
) -> None:
    """Check that ``sampler`` keeps the :class:`~annshard.samplers.Sampler` contract.

    Checks that plans are well formed (int64 ``(n, 3)``, runs inside their
    shard, at most ``chunk_size`` long), deterministic for a seed and epoch,
    cover every row exactly once when ``sampler.exhaustive``, change from epoch
    to epoch when ``reshuffles``, and that splitting an epoch between ranks
    and workers gives disjoint parts of equal size per rank that together
    cover the epoch but for fewer than ``world_size`` rows.

    Parameters
    ----------
    sampler
        The sampler to check.
    n_obs
        Rows per shard of the imaginary collection (include an empty shard to test that edge).
    chunk_size
        Chunk size to plan with.
    seeds
        Seeds to try.
    epochs
        Epochs to try.
    world_sizes
        Numbers of ranks to split epochs between.
    num_workers
        Numbers of DataLoader workers per rank to split between.
    preload_nchunks
        Block size used when splitting.
    reshuffles
        Whether consecutive epochs must differ (``False`` for a sequential sampler).
    obs
        obs columns (global arrays) for samplers that read obs when bound (e.g. weighted by a column).

    Raises
    ------
    AssertionError
        Naming the broken rule.

    Examples
    --------
    >>> from annshard.samplers import RandomSampler
    >>> from annshard.testing import check_sampler
    >>> check_sampler(RandomSampler())
    """
    total = int(sum(n_obs))
    obs = obs or {}
    sampler = sampler.bind(SamplerContext(n_obs=tuple(int(n) for n in n_obs), obs=lambda name: obs[name]))
    for seed in seeds:
        previous = None
        for epoch in epochs:
            plan = sampler.plan(n_obs, chunk_size=chunk_size, seed=seed, epoch=epoch)
            again = sampler.plan(n_obs, chunk_size=chunk_size, seed=seed, epoch=epoch)
            if not isinstance(plan, np.ndarray) or plan.dtype != np.int64 or plan.ndim != 2 or plan.shape[1] != 3:
                _fail(
                    sampler,
                    f"plan must be an int64 array of shape (n, 3), got {getattr(plan, 'dtype', type(plan))} {getattr(plan, 'shape', '')}",
                )
            if not np.array_equal(plan, again):
                _fail(sampler, f"two plans for seed={seed}, epoch={epoch} differ (plans must be deterministic)")
            shard, start, stop = plan[:, 0], plan[:, 1], plan[:, 2]
            if plan.shape[0] and ((shard < 0).any() or (shard >= len(n_obs)).any()):
                _fail(sampler, "a chunk names a shard that does not exist")
            sizes = np.asarray(n_obs, dtype=np.int64)
            if plan.shape[0] and ((start < 0).any() or (stop <= start).any() or (stop > sizes[shard]).any()):
                _fail(sampler, "a chunk is empty or reaches outside its shard")
            if plan.shape[0] and (stop - start > chunk_size).any():
                _fail(sampler, f"a chunk is longer than chunk_size={chunk_size}")
            rows = plan_rows(plan, n_obs)
            if sampler.exhaustive and not np.array_equal(np.sort(rows), np.arange(total)):
                _fail(sampler, f"seed={seed}, epoch={epoch}: rows are not each covered exactly once")
            if reshuffles and previous is not None and total > chunk_size and np.array_equal(previous, rows):
                _fail(sampler, f"seed={seed}: epochs {epoch - 1} and {epoch} have the same order")
            previous = rows
            _check_split(sampler, plan, rows, n_obs, world_sizes, num_workers, preload_nchunks)


def _check_split(
    sampler: Sampler,
    plan: NDArray[np.int64],
    rows: NDArray[np.int64],
    n_obs: Sequence[int],
    world_sizes: Sequence[int],
    num_workers: Sequence[int],
    preload_nchunks: int,
) -> None:
    n = rows.shape[0]
    for ws in world_sizes:
        for nw in num_workers:
            parts = []
            for rank in range(ws):
                rank_rows = []
                for w in range(nw):
                    stream = EpochStream.build(plan, World(rank, ws, w, nw), preload_nchunks)
                    if stream.chunks.shape[0] and (stream.chunks[:, 2] <= stream.chunks[:, 1]).any():
                        _fail(sampler, "splitting produced an empty chunk")
                    rank_rows.append(plan_rows(stream.chunks, n_obs))
                part = np.concatenate(rank_rows)
                if part.shape[0] != n // ws:
                    _fail(sampler, f"rank {rank}/{ws} with {nw} workers got {part.shape[0]} rows, expected {n // ws}")
                parts.append(part)
            joined = np.concatenate(parts)
            if not np.array_equal(joined, rows[: joined.shape[0]]):
                _fail(sampler, f"the {ws} ranks x {nw} workers do not partition the epoch's row stream in order")
