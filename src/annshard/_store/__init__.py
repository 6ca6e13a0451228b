"""The collection store: what a collection is on disk, and every way it is read, checked and changed.

- :mod:`._manifest` and :mod:`._spec`: the manifest's frozen dataclasses, read by dispatch on format name and
  version;
- :mod:`._annbatch`: the reader of annbatch-written collections (a synthesised manifest);
- :mod:`._read`: which of the two readers a directory goes to, from what its root ``zarr.json`` declares;
- :mod:`._validate`: checks of what a collection says about itself;
- :mod:`._shard`: one shard's zarr layout;
- :mod:`._collection`: the read-only :class:`~annshard.Collection` and ``open_collection`` (appending is
  :func:`annshard.append_collection`, in the writer, which imports the store and never the other way);
- :mod:`._lock`: the one-writer-per-collection ``flock``;
- :mod:`._atomic`: every rename: atomic file writes, temporary names, stale cleanup, installing a built
  collection, the manifest commit and the collection copy.
"""
