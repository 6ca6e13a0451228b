"""Sampling strategies: which chunks of rows an epoch reads, and in what order.

Every sampler subclasses :class:`Sampler`; the loader accepts one by name
(``"random"``, ``"sequential"``) or as an instance (``WeightedSampler("cell_type")``
or your own subclass). Splitting an epoch between ranks and DataLoader workers
is done by the loader for every sampler (see :class:`annshard.Loader`).
"""

from __future__ import annotations

from ._base import Sampler, SamplerContext, chunk_grid, epoch_rng
from ._random import RandomSampler
from ._sequential import SequentialSampler
from ._weighted import WeightedSampler

__all__ = [
    "RandomSampler",
    "Sampler",
    "SamplerContext",
    "SequentialSampler",
    "WeightedSampler",
    "chunk_grid",
    "epoch_rng",
    "get_sampler",
]

SAMPLERS: dict[str, type[Sampler]] = {
    "random": RandomSampler,
    "sequential": SequentialSampler,
}
"""The built-in samplers that need no arguments, by name."""


def get_sampler(sampler: str | Sampler) -> Sampler:
    """Return a sampler given its name or an instance.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    TypeError
        For anything that is neither a name nor a :class:`Sampler`.
    """
    if isinstance(sampler, Sampler):
        return sampler
    if isinstance(sampler, str):
        if sampler == "weighted":
            msg = "the weighted sampler needs a column or weights: pass WeightedSampler('cell_type') instead of 'weighted'"
            raise ValueError(msg)
        cls = SAMPLERS.get(sampler)
        if cls is None:
            msg = f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)} or pass a Sampler instance"
            raise ValueError(msg)
        return cls()
    msg = f"sampler must be a name or a Sampler instance, not {type(sampler).__name__}"
    raise TypeError(msg)
