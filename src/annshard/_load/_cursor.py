"""Where a loader stands in its epochs: a few integers, and one shared counter per DataLoader worker.

An epoch is defined by ``(seed, epoch)`` alone (:mod:`annshard._load._assemble`),
so the loader's whole state is the epoch it reads and the rows of it already
handed out. :class:`EpochCursor` holds them and decides where the next
iteration starts:

- iterated directly, the next ``iter()`` continues with the epoch after the
  one last started (or the one :meth:`~EpochCursor.set_epoch` /
  :meth:`~EpochCursor.load_state_dict` named, from the position it named);
- inside DataLoader workers each worker slot counts its own epochs in a small
  shared-memory array (a ``multiprocessing.RawArray``) that travels to the
  worker processes when they are spawned, so workers that are not persistent
  still see a new epoch each time; a mid-epoch resume is refused there (each
  worker holds part of the position).

The cursor does no I/O and starts no threads; the loader tells it which worker
is asking (:meth:`~EpochCursor.start`), rows handed out
(:meth:`~EpochCursor.advance`) and epochs finished (:meth:`~EpochCursor.finish`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from typing import Any

__all__ = ["MAX_WORKERS", "EpochCursor"]

MAX_WORKERS = 1024
"""DataLoader worker slots with an epoch counter of their own (more workers count epochs like the main process)."""


class EpochCursor:
    """The epoch the next iteration reads and the rows of it already consumed.

    Parameters
    ----------
    seed
        The loader's seed (a state saved with another seed is refused).

    Attributes
    ----------
    epoch
        The epoch the next (or current) iteration reads.
    position
        Rows of :attr:`epoch` handed out so far in this process.
    active
        Whether an iteration of :attr:`epoch` has started (the next one then reads the epoch after).
    pending
        ``(epoch, rows consumed)`` to start the next iteration from, set by :meth:`load_state_dict`.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self.active = False
        self.pending: tuple[int, int] | None = None
        # one epoch counter per DataLoader worker slot, shared with worker processes (see __getstate__)
        self.worker_epochs: Any = multiprocessing.RawArray("q", MAX_WORKERS)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration read ``epoch`` from its start (in every worker slot too)."""
        self.epoch, self.position, self.active, self.pending = int(epoch), 0, False, None
        self._set_workers(int(epoch))

    def state_dict(self) -> dict[str, int]:
        """Return ``{"seed", "epoch", "rows_consumed"}``: where this process stands."""
        epoch, rows = self.pending if self.pending is not None else (self.epoch, self.position)
        return {"seed": self.seed, "epoch": int(epoch), "rows_consumed": int(rows)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Make the next iteration start where ``state`` (from :meth:`state_dict`) stood.

        Raises
        ------
        ValueError
            If the state was taken with a different seed.
        """
        if int(state["seed"]) != self.seed:
            msg = f"the state was saved with seed={state['seed']} but this loader has seed={self.seed}; create the Loader with seed={state['seed']}"
            raise ValueError(msg)
        self.pending = (int(state["epoch"]), int(state["rows_consumed"]))
        self.active = False
        self._set_workers(int(state["epoch"]))

    def start(self, worker: int | None = None, *, peek: bool = False) -> tuple[int, int]:
        """Return ``(epoch, position)`` the next iteration starts at, and move there unless ``peek``.

        Parameters
        ----------
        worker
            The DataLoader worker asking (``None`` outside DataLoader workers).
        peek
            Only tell where it would start (for ``len()``); change nothing.

        Raises
        ------
        ValueError
            If a worker asks while a mid-epoch state is pending.
        """
        if worker is not None:
            if self.pending is not None and self.pending[1] > 0:
                msg = "resuming mid-epoch is exact when iterating the Loader directly; with DataLoader workers resume at an epoch boundary"
                raise ValueError(msg)
            if self.worker_epochs is not None and worker < MAX_WORKERS:
                epoch = int(self.worker_epochs[worker])
                if not peek:
                    self.worker_epochs[worker] = epoch + 1
                return epoch, 0
        if self.pending is not None:
            start = self.pending
        elif self.active:
            start = (self.epoch + 1, 0)
        else:
            start = (self.epoch, 0)
        if not peek:
            self.pending = None
            self.epoch, self.position = start
            self.active = True
        return start

    def advance(self, rows: int) -> None:
        """Count ``rows`` more rows of the current epoch as handed out."""
        self.position += rows

    def finish(self, epoch: int) -> None:
        """Mark ``epoch`` read to its end: the next iteration reads the one after (unless the cursor moved since)."""
        if self.epoch == epoch:
            self.epoch, self.position, self.active = epoch + 1, 0, False

    def _set_workers(self, epoch: int) -> None:
        if self.worker_epochs is not None:
            self.worker_epochs[:] = [epoch] * MAX_WORKERS

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # a RawArray may only travel while a child process is being spawned; it is then shared with it
        if multiprocessing.context.get_spawning_popen() is None:
            state["worker_epochs"] = None
        return state
