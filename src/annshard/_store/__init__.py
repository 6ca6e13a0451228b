"""The collection store: what a collection is on disk, and every way it is read, checked and changed.

- :mod:`._manifest` and :mod:`._spec`: the manifest's frozen dataclasses, read by dispatch on format name and
  version;
- :mod:`._annbatch`: the reader of annbatch-written collections (a synthesised manifest);
- :mod:`._validate`: checks of what a collection says about itself;
- :mod:`._shard`: one shard's zarr layout;
- :mod:`._collection`: the read-only :class:`~annshard.Collection` and ``open_collection``;
- :mod:`._lock`: the one-writer-per-collection ``flock``;
- :mod:`._atomic`: every rename: atomic file writes, temporary names, stale cleanup, installing a built
  collection, the manifest commit and the collection copy.
"""
