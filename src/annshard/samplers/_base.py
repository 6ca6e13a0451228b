"""The :class:`Sampler` ABC: what every sampling strategy implements.

A sampler turns the per-shard row counts and ``(seed, epoch)`` into a *plan*:
an ``int64`` array of shape ``(n_chunks, 3)`` whose rows are
``(shard, start, stop)`` runs of at most ``chunk_size`` contiguous rows inside
one shard, in the order the epoch reads them. Contiguous runs are what makes
reading fast (one decode of neighbouring rows); randomness comes from the order
of the runs and from the in-memory shuffle of each preload block that the
loader applies afterwards.

Samplers are pure: the same arguments give the same plan on any machine. They
never see ranks or DataLoader workers; the loader splits the plan's row stream
between them (:class:`annshard._load._world.World`), so every sampler is
distributed-ready for free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from numpy.typing import NDArray

__all__ = ["Sampler", "SamplerContext", "chunk_grid", "epoch_rng"]


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler may know about the collection it samples from.

    Attributes
    ----------
    n_obs
        Rows per shard, in global order.
    obs
        ``obs(name)`` returns the global obs column ``name`` (categorical columns as integer codes).
    """

    n_obs: tuple[int, ...]
    obs: Callable[[str], np.ndarray]


def epoch_rng(seed: int, epoch: int, *stream: int) -> np.random.Generator:
    """Return a generator for ``(seed, epoch, *stream)``; independent streams never collide."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch), *(int(s) for s in stream)])


def chunk_grid(n_obs: Sequence[int], chunk_size: int, offsets: Sequence[int] | None = None) -> NDArray[np.int64]:
    """Cut every shard into runs of ``chunk_size`` rows, in order.

    Parameters
    ----------
    n_obs
        Rows per shard.
    chunk_size
        Run length.
    offsets
        Per shard, the length of a first, shorter run (``0``: none). Shifting
        the grid every epoch keeps the same rows from always sharing a chunk.

    Returns
    -------
    The ``(n_chunks, 3)`` plan of ``(shard, start, stop)``.
    """
    parts = []
    for i, n in enumerate(n_obs):
        if n <= 0:
            continue
        off = 0 if offsets is None else int(offsets[i]) % chunk_size
        starts = np.arange(off, n, chunk_size, dtype=np.int64)
        if off:
            starts = np.concatenate([np.zeros(1, np.int64), starts])
        stops = np.append(starts[1:], n)
        parts.append(np.stack([np.full_like(starts, i), starts, stops], axis=1))
    if not parts:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(parts)


class Sampler(ABC):
    """Base class of all samplers.

    Subclass it and implement :meth:`plan`; check your sampler with
    :func:`annshard.testing.check_sampler`.

    Attributes
    ----------
    name
        Short name (what ``Loader(sampler=...)`` accepts for the built-ins).
    exhaustive
        Whether every row appears exactly once per epoch (random and sequential
        do; weighted sampling draws with replacement and does not).

    Examples
    --------
    A sampler that reads shards in reverse order, sequentially:

    >>> import numpy as np
    >>> from annshard.samplers import Sampler, chunk_grid
    >>> class Reverse(Sampler):
    ...     name = "reverse"
    ...
    ...     def plan(self, n_obs, *, chunk_size, seed, epoch):
    ...         return chunk_grid(n_obs, chunk_size)[::-1].copy()
    >>> Reverse().plan([5, 3], chunk_size=2, seed=0, epoch=0).tolist()
    [[1, 2, 3], [1, 0, 2], [0, 4, 5], [0, 2, 4], [0, 0, 2]]
    """

    name: ClassVar[str] = "custom"
    exhaustive: ClassVar[bool] = True
    shuffle_blocks: ClassVar[bool] = True

    def bind(self, context: SamplerContext) -> Sampler:
        """Return a sampler ready for ``context`` (e.g. with weights read from obs); by default ``self``."""
        return self

    @abstractmethod
    def plan(self, n_obs: Sequence[int], *, chunk_size: int, seed: int, epoch: int) -> NDArray[np.int64]:
        """Return the epoch's ordered chunks.

        Parameters
        ----------
        n_obs
            Rows per shard.
        chunk_size
            Longest allowed run.
        seed
            The loader's seed.
        epoch
            The epoch number.

        Returns
        -------
        ``int64`` array of shape ``(n_chunks, 3)``: ``(shard, start, stop)`` with
        ``0 <= start < stop <= n_obs[shard]`` and ``stop - start <= chunk_size``.
        """

    def settings(self) -> dict[str, Any]:
        """Return the sampler's settings, as plain values (recorded with the loader's settings)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "name")
        return f"{type(self).__name__}({args})"
