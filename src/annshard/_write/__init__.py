"""Writing collections: plan, scatter, gather (an out-of-core two-pass bucket shuffle).

The data flows one way, through one module per step:

- :mod:`._sources` opens ``.h5ad`` / AnnData zarr / in-memory sources lazily;
- :mod:`._plan` joins gene spaces and unifies obs schemas, :mod:`._matrices` plans layers and obsm
  arrays, :mod:`._spec` sets the storage defaults;
- :mod:`._memory` sizes shards and blocks from the memory budget, and :mod:`._layout` freezes the plan;
- :mod:`._scatter` and :mod:`._gather` are the two passes, run in order by :mod:`._passes`: the
  scatter pass returns value statistics, the gather pass the shards it wrote;
- :mod:`._manifest` settles the storage from those statistics and builds the manifest;
- :mod:`._writer` (``write_collection``) and :mod:`._append` (``append_collection``) tie them together
  with atomic commits.
"""

from __future__ import annotations

from ._append import append_collection
from ._writer import write_collection

__all__ = ["append_collection", "write_collection"]
