"""Rank, world size and DataLoader-worker arithmetic, in one value object.

An epoch is a stream of rows (see :mod:`annshard._load._loader`). It is split first
between ranks, then between the DataLoader workers of a rank, into contiguous
parts. Ranks get ``floor(N / world_size)`` rows each, so every rank takes the
same number of steps; the fewer than ``world_size`` rows left over are skipped
that epoch (a different set each epoch, since the stream is re-drawn). Workers
share their rank's part as evenly as possible (sizes differ by at most one
row), and no row is dropped between them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

__all__ = ["World"]


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ranks, its worker among a rank's workers.

    Attributes
    ----------
    rank
        This process's rank.
    world_size
        Number of ranks.
    worker
        This DataLoader worker's id (0 outside DataLoader workers).
    num_workers
        Number of DataLoader workers of this rank (1 outside DataLoader workers).
    """

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            msg = f"rank={self.rank} and world_size={self.world_size} are inconsistent; need 0 <= rank < world_size"
            raise ValueError(msg)
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            msg = f"worker={self.worker} and num_workers={self.num_workers} are inconsistent"
            raise ValueError(msg)

    @classmethod
    def detect(cls, *, rank: int | None = None, world_size: int | None = None) -> World:
        """Detect the world of the calling process.

        ``rank`` / ``world_size`` win when given; otherwise they come from
        ``torch.distributed`` when it is initialised, else ``(0, 1)``. The worker
        comes from ``torch.utils.data.get_worker_info()``. torch is only consulted
        when it is already imported, so this never imports it.
        """
        worker, num_workers = 0, 1
        torch = sys.modules.get("torch")
        if torch is not None:
            if rank is None or world_size is None:
                dist = getattr(torch, "distributed", None)
                if dist is not None and dist.is_available() and dist.is_initialized():
                    rank = dist.get_rank() if rank is None else rank
                    world_size = dist.get_world_size() if world_size is None else world_size
            info = torch.utils.data.get_worker_info()
            if info is not None:
                worker, num_workers = int(info.id), int(info.num_workers)
        if (rank is None) != (world_size is None):
            msg = f"give both rank and world_size or neither (got rank={rank}, world_size={world_size})"
            raise ValueError(msg)
        return cls(rank=rank or 0, world_size=world_size or 1, worker=worker, num_workers=num_workers)

    @property
    def part(self) -> int:
        """Index of this process's part among all ``world_size * num_workers`` parts."""
        return self.rank * self.num_workers + self.worker

    def rank_span(self, n_rows: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of an ``n_rows`` stream that belong to this rank."""
        per = n_rows // self.world_size
        return self.rank * per, (self.rank + 1) * per

    def span(self, n_rows: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of an ``n_rows`` stream that belong to this rank and worker."""
        lo, hi = self.rank_span(n_rows)
        n = hi - lo
        base, extra = divmod(n, self.num_workers)
        start = lo + self.worker * base + min(self.worker, extra)
        return start, start + base + (1 if self.worker < extra else 0)
