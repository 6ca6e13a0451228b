"""Writing collections: plan, scatter, gather (an out-of-core two-pass bucket shuffle).

- :mod:`._sources` opens ``.h5ad`` / AnnData zarr / in-memory sources lazily;
- :mod:`._plan` joins gene spaces and unifies obs schemas;
- :mod:`._layout` sizes shards and blocks from the memory budget;
- :mod:`._scatter` and :mod:`._gather` are the two passes;
- :mod:`._writer` ties them together with atomic commits.
"""

from __future__ import annotations

from ._append import append_collection
from ._writer import write_collection

__all__ = ["append_collection", "write_collection"]
