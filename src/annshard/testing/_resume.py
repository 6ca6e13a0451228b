"""Conformance check for exact resume: a loader restored mid-epoch yields exactly the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from annshard._load import Loader

__all__ = ["check_resume"]


def _indices(batches: Sequence[object]) -> list[np.ndarray]:
    return [np.asarray(getattr(b, "index")) for b in batches]  # noqa: B009 - works for any batch type with .index


def check_resume(make_loader: Callable[[], Loader], *, epoch: int = 0, stops: Sequence[int] | None = None) -> None:
    """Check that resuming from a mid-epoch ``state_dict`` yields exactly the rest of the epoch, then the next one.

    Parameters
    ----------
    make_loader
        Builds a fresh loader (the same settings every call): a restarted process.
    epoch
        The epoch to interrupt.
    stops
        After how many batches to interrupt (default: the first, a middle and the last batch).

    Raises
    ------
    AssertionError
        If a resumed run differs from an uninterrupted one.

    Examples
    --------
    >>> from annshard.testing import check_resume
    >>> check_resume(lambda: annshard.Loader("cells.zarr", batch_size=128))  # doctest: +SKIP
    """
    ref = make_loader()
    ref.set_epoch(epoch)
    full = _indices(list(ref))
    following = _indices(list(ref))
    n = len(full)
    for stop in stops if stops is not None else sorted({0, 1, n // 2, max(n - 1, 0), n}):
        first = make_loader()
        first.set_epoch(epoch)
        it = iter(first)
        for _ in range(stop):
            next(it)
        state = first.state_dict()
        del it
        resumed = make_loader()
        resumed.load_state_dict(state)
        rest = _indices(list(resumed))
        if len(rest) != n - stop or any(not np.array_equal(a, b) for a, b in zip(rest, full[stop:], strict=False)):
            msg = f"resuming after {stop} of {n} batches (state {state}) did not yield exactly the remaining batches"
            raise AssertionError(msg)
        nxt = _indices(list(resumed))
        if len(nxt) != len(following) or any(not np.array_equal(a, b) for a, b in zip(nxt, following, strict=False)):
            msg = f"after resuming (state {state}), the next epoch differs from an uninterrupted run's"
            raise AssertionError(msg)
