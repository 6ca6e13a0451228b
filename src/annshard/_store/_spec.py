"""How a matrix is laid out in every shard: :class:`StorageSpec` (``X`` and each layer) and :class:`MatrixSpec`.

Both are frozen dataclasses written into the manifest (``to_dict`` / ``from_dict``); the manifest
(:mod:`annshard._store._manifest`) holds them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

from annshard._errors import CollectionFormatError

__all__ = ["MatrixSpec", "StorageSpec", "from_dict_known"]


def from_dict_known[T](cls: type[T], d: dict[str, Any]) -> T:
    """Build the dataclass ``cls`` from ``d``, ignoring keys it has no field for (newer optional fields)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class StorageSpec:
    """How ``X`` is laid out in every shard.

    Chosen by measurement (see ``docs/performance.md``): blosc-lz4 with byte
    shuffle decodes about twice as fast as zstd on few cores, and ``uint16``
    gene indices (when ``n_vars < 65536``) decode faster again. Raw counts
    (whole numbers) are stored in ``counts_dtype`` through zarr's
    ``numcodecs.fixedscaleoffset`` codec (scale 1, offset 0, bitshuffled):
    every reader, zarr-python and anndata included, still sees ``data_dtype``
    values, exactly (an explicit -0.0 reads back as 0.0), while fewer bytes are decoded per value.

    Counts' codec (issue 15, round 4; figures in ``docs/performance.md``): the writer stores counts
    **uncompressed** (``counts_codec="none"``). On the 100k-cell benchmark counts, uncompressed
    ``uint16`` values are read by ``os.preadv`` and widened by numpy (nothing to decode): the loader's
    CPU per 1,000 cells falls ~40 % (12.0 to 7.2 ms at ``chunk_size=32``, 11.4 to 6.6 ms at 256) and
    conversion CPU ~30 %, for a collection of 637 instead of 393 MB (1.6x annbatch's 394 MB for the
    same cells, as normalised values stored uncompressed are 1.3x theirs) and ~60 % more bytes per
    cell over a network. lz4 with byte shuffle at clevel 1 saved
    no CPU over bitshuffled lz4 and zstd decodes slower than lz4. For network storage or a tight
    disk, ``counts_codec=None`` compresses them as before (lz4, bitshuffled). Collections written
    before the field (it reads as ``None``) are compressed and load as they always did: readers
    follow each array's own zarr codecs, never this field.

    Attributes
    ----------
    x_format
        ``"csr"`` (``X/data``, ``X/indices``, ``X/indptr``) or ``"dense"`` (one 2-D array).
    data_dtype
        dtype of the stored values.
    indices_dtype
        dtype of the stored gene indices (CSR only).
    codec
        blosc compressor name (``"lz4"``, ``"zstd"``) or ``"none"``.
    clevel
        blosc compression level.
    shuffle
        blosc shuffle mode: ``"shuffle"``, ``"bitshuffle"`` or ``"noshuffle"``.
    chunk_elems
        Inner chunk length of the 1-D CSR arrays, in elements: the unit of decoding.
    shard_elems
        zarr shard length of the 1-D CSR arrays, in elements: the unit of files on disk.
    dense_chunk_rows
        Rows per inner chunk of a dense ``X``.
    dense_shard_rows
        Rows per zarr shard of a dense ``X``.
    indices_codec
        ``"none"`` stores the CSR gene indices uncompressed; ``None`` compresses them like the
        values (``codec``). Sorted gene indices compress only ~1.6x, and decoding them was a fifth
        of the loader's CPU time (measured in ``docs/performance.md``).
    values_codec
        ``"none"`` stores CSR values that are not stored as counts (``counts_dtype`` is ``None``:
        normalised, non-integer floats) uncompressed; ``None`` compresses them (``codec``). Such
        values compress only ~1.2x with lz4 and byte shuffle, and decoding them was ~40 % of the
        loader's CPU at ``(32, 256)`` (measured in ``docs/performance.md``).
    counts_codec
        ``"none"`` stores CSR values kept as counts (``counts_dtype`` set) uncompressed, as the
        stored integers (the writer's default); ``None`` compresses them (``codec``, bitshuffled;
        every collection written before the field). See "Counts' codec" above.
    counts_dtype
        Unsigned integer type the CSR values are stored as (``"uint16"``, ``"uint8"``), when
        every value is a whole number in its range (checked while writing); ``None``: values
        are stored as ``data_dtype``. Writers take ``"auto"``: ``"uint16"`` when the values allow it.
    """

    x_format: Literal["csr", "dense"] = "csr"
    data_dtype: str = "float32"
    indices_dtype: str = "uint16"
    codec: Literal["lz4", "zstd", "none"] = "lz4"
    clevel: int = 5
    shuffle: Literal["shuffle", "bitshuffle", "noshuffle"] = "shuffle"
    chunk_elems: int = 32768
    shard_elems: int = 2**24
    dense_chunk_rows: int = 32
    dense_shard_rows: int = 4096
    counts_dtype: str | None = None
    indices_codec: Literal["none"] | None = None
    values_codec: Literal["none"] | None = None
    counts_codec: Literal["none"] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StorageSpec:
        """Inverse of :meth:`to_dict`."""
        return from_dict_known(cls, d)

    def compressors(self, *, counts: bool = False, indices: bool = False) -> tuple[Any, ...]:
        """Return the zarr compressor codecs for this spec (``counts``: CSR values, stored as counts when ``counts_dtype`` is set; ``indices``: CSR indices)."""
        if self.codec == "none" or (indices and self.indices_codec == "none"):
            return ()
        if counts and self.counts_dtype is None and self.values_codec == "none" and self.x_format == "csr":
            return ()  # normalised float values: barely compressible, cheaper read as they are
        if counts and self.counts_dtype is not None and self.counts_codec == "none":
            return ()  # counts as the stored integers: read by os.preadv, widened by numpy, nothing to decode
        from zarr.codecs import BloscCodec

        if counts and self.counts_dtype is not None:
            # small whole numbers: bit planes compress far better than bytes (measured: 39 % smaller, as fast)
            size = np.dtype(self.counts_dtype).itemsize
            return (BloscCodec(cname=self.codec, clevel=self.clevel, shuffle="bitshuffle", typesize=size),)
        return (BloscCodec(cname=self.codec, clevel=self.clevel, shuffle=self.shuffle),)

    def counts_filters(self) -> tuple[Any, ...]:
        """Return the array-to-array codec storing ``data_dtype`` values as ``counts_dtype`` (none when not counts)."""
        if self.counts_dtype is None:
            return ()
        from zarr.codecs.numcodecs import FixedScaleOffset

        # zarrs reads "u1" but not numpy's "|u1"
        dtype, astype = (np.dtype(d).str.lstrip("|") for d in (self.data_dtype, self.counts_dtype))
        return (FixedScaleOffset(offset=0, scale=1, dtype=dtype, astype=astype),)


def stored_counts_dtype(codec: dict[str, Any], dtype: np.dtype, fill: Any) -> np.dtype | None:
    """Return the stored unsigned integer type of raw counts, read from their filter's metadata; else ``None``.

    ``codec`` is an array's first codec (its zarr v3 metadata dict): the
    ``numcodecs.fixedscaleoffset`` of :meth:`StorageSpec.counts_filters` (scale 1,
    offset 0, from ``dtype`` into an unsigned integer), with fill value 0. Such
    values are the stored integers themselves: widening them to ``dtype`` gives
    exactly what the filter decodes. Every reader that skips the filter
    (:func:`annshard._compat.zarr_stored_counts`, :class:`annshard._store._raw.RawRuns`)
    asks this.
    """
    cfg = codec.get("configuration", {})
    if codec.get("name") != "numcodecs.fixedscaleoffset" or cfg.get("scale") != 1 or cfg.get("offset") != 0:
        return None
    if not isinstance(fill, int | float) or fill != 0 or dtype.kind not in "fiu":
        return None
    try:
        stored, declared = np.dtype(cfg.get("astype") or "f8"), np.dtype(cfg.get("dtype") or "f8")
    except TypeError:
        return None
    if stored.kind != "u" or declared != dtype or not np.can_cast(stored, dtype, "safe"):
        return None
    return stored


@dataclass(frozen=True)
class MatrixSpec:
    """A matrix stored beside ``X`` in every shard, for the same rows: a layer or an obsm array.

    Attributes
    ----------
    element
        Its path in each shard: ``"layers/<name>"`` or ``"obsm/<name>"``.
    n_cols
        Columns: the collection's genes for a layer, the array's width for obsm.
    storage
        How it is laid out (its own format, value dtype and counts decision); obsm arrays are
        always dense, chunked along rows.
    """

    element: str
    n_cols: int
    storage: StorageSpec

    def __post_init__(self) -> None:
        group, _, name = self.element.partition("/")
        if group not in ("layers", "obsm") or not name or "/" in name:
            msg = f"matrix element {self.element!r} is not 'layers/<name>' or 'obsm/<name>'"
            raise CollectionFormatError(msg)
        if group == "obsm" and self.storage.x_format != "dense":
            msg = f"matrix element {self.element!r}: obsm arrays are stored dense, not {self.storage.x_format!r}"
            raise CollectionFormatError(msg)

    @property
    def group(self) -> Literal["layers", "obsm"]:
        """``"layers"`` or ``"obsm"``."""
        return self.element.partition("/")[0]  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """The layer's or obsm array's key."""
        return self.element.partition("/")[2]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"element": self.element, "n_cols": self.n_cols, "storage": self.storage.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MatrixSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(element=str(d["element"]), n_cols=int(d["n_cols"]), storage=StorageSpec.from_dict(d["storage"]))
