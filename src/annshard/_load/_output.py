"""Turning a gathered batch into what the user receives: ``X``, layers and obsm in the requested type, obs, index.

``scipy`` gives a CSR matrix with ``int32`` indices, ``numpy`` a dense array.
``torch`` gives a ``torch.sparse_csr_tensor`` (or a dense tensor with
``dense=True``) and ``cupy`` a ``cupyx.scipy.sparse.csr_matrix`` (or a dense
``cupy.ndarray``). With ``device="cuda", gather="host"`` the CSR parts are copied
from pinned host memory with non-blocking copies and densified on the GPU, never
on the CPU: the transfer stays sparse. (By default ``device="cuda"`` gathers on
the device instead: :mod:`annshard._load._device`.)

obs columns are held in memory (:class:`ObsTable`): the requested columns of
every shard are read once, when the loader is built (the shards concurrently): categorical columns
become integer codes into one category list (the manifest's shared list; over
several collections, their union in order of first appearance), numeric
columns stay arrays. A batch's obs is then one gather by the batch's global
row indices (:class:`BatchMaker`), as torch tensors for ``output="torch"``.
Every torch and cupy import here is lazy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from annshard._config import zarr_config
from annshard._errors import CorruptShardError

from ._batch import Batch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from annshard._store._collection import Collection

    from ._fetch import Block

__all__ = ["OUTPUTS", "BatchMaker", "ObsTable", "Output", "convert", "convert_dense"]

Output = Literal["scipy", "numpy", "torch", "cupy"]
OUTPUTS = ("scipy", "numpy", "torch", "cupy")
_OBS_THREADS = 8
"""Shards whose obs column is read at once when a loader is built."""


def _csr(block: Block, n_vars: int) -> sp.csr_matrix:
    indptr = block.indptr
    if indptr is not None and indptr.shape[0] and indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32, copy=False)  # gather_rows already made it int32: no copy
    return sp.csr_matrix((block.data, block.indices, indptr), shape=(block.n_rows, n_vars), copy=False)


def convert(block: Block, *, n_vars: int, output: Output, dense: bool, device: str | None) -> tuple[Any, Any]:
    """``(X, index)`` of ``block`` in the requested form."""
    is_dense = block.indptr is None
    if output == "scipy":
        x = sp.csr_matrix(block.data) if is_dense else _csr(block, n_vars)
        return x, block.index
    if output == "numpy":
        x = block.data if is_dense else _csr(block, n_vars).toarray()
        return x, block.index
    if output == "torch":
        return _torch(block, n_vars, dense=dense or is_dense, device=device)
    if output == "cupy":
        return _cupy(block, n_vars, dense=dense or is_dense)
    msg = f"unknown output {output!r}; choose one of {OUTPUTS}"
    raise ValueError(msg)


def convert_dense(block: Block, *, n_vars: int, output: Output, device: str | None) -> Any:
    """Return a block's values as a dense array of the requested kind (obsm arrays): numpy for ``scipy`` / ``numpy``."""
    values = block.data if block.indptr is None else _csr(block, n_vars).toarray()
    if output in ("scipy", "numpy"):
        return values
    if output == "torch":
        import torch

        return _to_device(torch, values, device)
    if output == "cupy":
        import cupy as cp

        return cp.asarray(values)
    msg = f"unknown output {output!r}; choose one of {OUTPUTS}"
    raise ValueError(msg)


def _to_device(torch: Any, a: np.ndarray, device: Any) -> Any:
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device is None or torch.device(device).type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def _torch(block: Block, n_vars: int, *, dense: bool, device: str | None) -> tuple[Any, Any]:
    import torch

    index = torch.from_numpy(block.index)
    if block.indptr is None:
        return _to_device(torch, block.data, device), index
    on_cpu = device is None or torch.device(device).type == "cpu"
    if dense and on_cpu:
        return torch.from_numpy(_csr(block, n_vars).toarray()), index
    # torch wants both index arrays in one dtype; the batch's are int32 (int64 past 2**31): no widening copy
    crow = _to_device(torch, block.indptr.astype(block.indices.dtype, copy=False), device)
    col = _to_device(torch, block.indices, device)
    vals = _to_device(torch, block.data, device)
    with warnings.catch_warnings():
        # torch warns once per process that sparse CSR is "beta"; the layout is what users asked for
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        x = torch.sparse_csr_tensor(crow, col, vals, size=(block.n_rows, n_vars), check_invariants=False)
    return (x.to_dense() if dense else x), index


def _cupy(block: Block, n_vars: int, *, dense: bool) -> tuple[Any, Any]:
    import cupy as cp
    import cupyx.scipy.sparse as csp

    index = block.index
    if block.indptr is None:
        return cp.asarray(block.data), index
    x = csp.csr_matrix(
        (cp.asarray(block.data), cp.asarray(block.indices), cp.asarray(block.indptr.astype(np.int32, copy=False))),
        shape=(block.n_rows, n_vars),
    )
    return (x.toarray() if dense else x), index


def _available(coll: Collection) -> list[str]:
    names = [c.name for c in coll.manifest.obs_columns]
    if names:
        return names
    group = coll.shard_group(0)
    return sorted(group["obs"].keys()) if coll.shards else []


class ObsTable:
    """Global obs columns of one or more collections, read on demand and kept in memory."""

    def __init__(self, collections: Sequence[Collection], names: Sequence[str] = ()) -> None:
        self.collections = list(collections)
        self._values: dict[str, np.ndarray] = {}
        self._cats: dict[str, tuple[Any, ...]] = {}
        self.load(names)

    def load(self, names: Sequence[str]) -> None:
        """Read ``names`` from every shard (a no-op for columns already read).

        Raises
        ------
        KeyError
            If a column is not in a collection; the message lists the available ones.
        """
        for name in names:
            if name in self._values:
                continue
            for coll in self.collections:
                available = _available(coll)
                if name not in available:
                    msg = f"obs column {name!r} is not in collection {coll.path}; available columns: {', '.join(available)}"
                    raise KeyError(msg)
            self._read(name)

    def _read(self, name: str) -> None:
        parts: list[Any] = []
        union: list[Any] = []
        lookup: dict[Any, int] = {}
        categorical = False
        shards = [(coll, i) for coll in self.collections for i in range(len(coll.shards))]

        def read(item: tuple[Collection, int]) -> Any:
            coll, i = item
            try:
                return ad.io.read_elem(coll.shard_group(i)["obs"][name])
            except Exception as e:
                msg = f"collection {coll.path}, shard {coll.shards[i].name}: cannot read obs column {name!r} ({type(e).__name__}: {e}); rewrite the collection"
                raise CorruptShardError(msg) from e

        with zarr_config():
            if len(shards) > 1:  # a few small reads per shard, each mostly waiting: concurrently (threads joined here)
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(min(_OBS_THREADS, len(shards)), thread_name_prefix="annshard-obs") as pool:
                    values = list(pool.map(read, shards))  # the first shard's error in shard order
            else:
                values = [read(item) for item in shards]
        for value in values:
            if isinstance(value, pd.Categorical | pd.Series) and isinstance(value.dtype, pd.CategoricalDtype):
                categorical = True
                cat = pd.Categorical(value)
                for c in cat.categories:
                    if c not in lookup:
                        lookup[c] = len(union)
                        union.append(c)
                lut = np.array([lookup[c] for c in cat.categories] + [-1], dtype=np.int64)
                parts.append(lut[np.asarray(cat.codes, dtype=np.int64)])
            else:
                parts.append(np.asarray(value))
        values = np.concatenate(parts) if parts else np.zeros(0)
        if categorical:
            dtype = np.int8 if len(union) < 127 else np.int16 if len(union) < 32767 else np.int32
            values = values.astype(dtype)
            self._cats[name] = tuple(union)
        self._values[name] = values

    def column(self, name: str) -> np.ndarray:
        """Return the global column ``name`` (read if needed)."""
        self.load([name])
        return self._values[name]

    def categories(self, names: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """Category labels of the categorical columns among ``names``."""
        return {n: self._cats[n] for n in names if n in self._cats}

    def take(self, names: Sequence[str], index: np.ndarray) -> dict[str, np.ndarray]:
        """Each column's values at global rows ``index``."""
        return {n: self._values[n][index] for n in names}


@dataclass(frozen=True)
class BatchMaker:
    """Turns a gathered block (``X`` with its layers and obsm arrays) into the :class:`~annshard.Batch` yielded.

    Attributes
    ----------
    obs
        The loader's obs table; ``obs_columns`` are taken from it for the batch's rows.
    obs_columns
        obs columns yielded with each batch.
    layers
        Layers yielded (``batch.layers[name]``), in ``X``'s output type.
    obsm
        obsm arrays yielded (``batch.obsm[name]``), always dense.
    widths
        Columns of each layer and obsm array, by element (``"obsm/X_pca"``).
    n_vars
        Genes (the width of ``X`` and of the layers).
    """

    obs: ObsTable
    obs_columns: tuple[str, ...]
    layers: tuple[str, ...]
    obsm: tuple[str, ...]
    widths: dict[str, int]
    n_vars: int

    def __call__(self, block: Block, *, output: Output, dense: bool, device: str | None) -> Batch:
        """Return ``block`` as a :class:`~annshard.Batch` (``output``, ``dense``, ``device`` as in the Loader)."""
        n_vars = self.n_vars
        x, index = convert(block, n_vars=n_vars, output=output, dense=dense, device=device)
        layers = {
            k: convert(block.extras[f"layers/{k}"], n_vars=n_vars, output=output, dense=dense, device=device)[0]
            for k in self.layers
        }
        obsm = {
            k: convert_dense(block.extras[f"obsm/{k}"], n_vars=self.widths[f"obsm/{k}"], output=output, device=device)
            for k in self.obsm
        }
        obs = self.obs.take(self.obs_columns, block.index)
        if output == "torch":
            import torch

            obs = {k: torch.from_numpy(np.ascontiguousarray(v)) if v.dtype != object else v for k, v in obs.items()}
            if device is not None:
                obs = {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in obs.items()}
                index = index.to(device, non_blocking=True)
        return Batch(X=x, obs=obs, index=index, layers=layers, obsm=obsm)
