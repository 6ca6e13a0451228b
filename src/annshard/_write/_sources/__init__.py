"""Sources: ``.h5ad`` files, AnnData zarr stores and in-memory AnnData, opened lazily.

Every element is read with anndata's own IO, so any file that
``anndata.read_h5ad`` / ``anndata.read_zarr`` reads is read with the same
values and dtypes:

- ``obs`` and ``var`` with :func:`anndata.io.read_elem` (whole, per source, as
  anndata does; ``obs`` is dropped again when the source is closed);
- CSR matrices in row blocks with :func:`anndata.io.sparse_dataset`
  (``[start:stop]``), CSC matrices whole with ``read_elem`` (converted to CSR in
  memory once: CSC cannot be read by rows), dense arrays by slicing the stored
  array; numeric ``obsm`` DataFrames whole with ``read_elem``;
- ``.h5ad`` files without encoding metadata (anndata < 0.7) through
  ``anndata.read_h5ad(path, backed="r")``: ``X`` stays on disk.

A :class:`Source` exposes every row-aligned matrix (``X``, ``layers/<k>``,
``obsm/<k>``) through :meth:`Source.matrix_keys`, :meth:`Source.matrix_info`
and :meth:`Source.read_matrix`. Every problem is raised as a
:class:`~annshard.SourceError` that names the source, the element and the fix.

The package, one module per concept:

- :mod:`._base`: the :class:`Source` interface, :class:`MatrixInfo` and :class:`ColumnSchema`;
- :mod:`._elements`: element helpers the source kinds share (obs schemas, numeric obsm frames, var);
- :mod:`._anndata`: :class:`AnnDataSource` (in memory) and :class:`BackedSource` (legacy ``.h5ad``);
- :mod:`._store`: :class:`StoreSource` (``.h5ad`` and zarr files with encoding metadata);
- :mod:`._open`: which kind opens a given input, source names, opening several at once.
"""

from __future__ import annotations

from ._base import ColumnSchema, MatrixInfo, Source
from ._open import open_source, open_sources, source_names

__all__ = ["ColumnSchema", "MatrixInfo", "Source", "open_source", "open_sources", "source_names"]
