"""``SCVIDataModule``: scvi-tools models train from annshard collections through :class:`annshard.Loader`.

scvi-tools (1.5) trains from any ``LightningDataModule`` that carries a
``registry`` (``SCVI(registry=dm.registry)``, ``model.train(datamodule=dm)``);
it calls ``set_batch_size`` and ``set_split`` before training and takes a
``dataloader=`` of dict batches for latent representations, expression and
differential expression. This module provides exactly that on the public
loader: every part of a split is an ``annshard.Loader`` with a sampler over
that part's chunks (:mod:`annshard.scvi._split`), the registry comes from the
collection's shared category lists (:mod:`annshard.scvi._registry`), and the
sparse CSR batches cross the host-device boundary as they are, to be densified
on the device in ``on_after_batch_transfer`` (on the GPU when training runs
there): a dense float32 batch of 36k genes is ~40x larger than its CSR form at
typical sparsity.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import numpy as np

from annshard import Loader

from ._registry import SEMI_SUPERVISED, Covariates
from ._split import ChunkRuns, ContextSampler, OrderedRuns, Split, index_runs, split_chunks, split_sizes

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Sequence

    import pandas as pd
    from numpy.typing import NDArray

    from annshard import Collection

__all__ = ["InferenceLoader", "SCVIDataModule"]

_MIN_LAST_BATCH = 3  # scvi-tools' own threshold: a final training batch of 1-2 cells breaks BatchNorm


def _lamin_collection(obj: Any) -> bool:
    ln = sys.modules.get("lamindb")  # an ln.Collection can only exist once lamindb is imported
    return ln is not None and isinstance(obj, ln.Collection)


def densify(x: Any) -> Any:
    """Return a sparse (CSR / COO) torch tensor as a dense float32 one on its device (dense ones as float32)."""
    import torch

    if x.layout != torch.strided:
        x = x.to_dense()
    return x if x.dtype == torch.float32 else x.to(torch.float32)


class Ordered:
    """A loader that reads its rows in order, as lightning's validation and test loops take it.

    (A :class:`annshard.Loader` has a ``sampler`` attribute, which makes lightning inspect it as a
    torch ``DataLoader`` in those loops.)
    """

    def __init__(self, loader: Loader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


class InferenceLoader:
    """Batches of every row (or of given rows) in order, as the dicts scvi-tools models take.

    Iterate it as often as needed (each pass reads the same rows in the same order);
    ``X`` is densified on ``device``.
    """

    def __init__(self, loader: Loader, covariates: Covariates, device: str) -> None:
        self.loader, self.covariates, self.device = loader, covariates, device

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            tensors = self.covariates.tensors(batch)
            moved = {k: v.to(self.device, non_blocking=True) for k, v in tensors.items()}
            moved["X"] = densify(moved["X"])
            yield moved

    def __len__(self) -> int:
        return len(self.loader)


class SCVIDataModule(pl.LightningDataModule):
    """A scvi-tools data module over an annshard collection, registered in lamindb or not.

    Parameters
    ----------
    collection
        A path, an :class:`annshard.Collection`, a list of them (read as one, as :class:`annshard.Loader`
        does), or a lamindb ``Collection`` record registered by :mod:`annshard.lamin`: then it is loaded
        with :func:`annshard.lamin.load_collection`, which records the use (the collection as an input of
        the active run, with the loader settings), as ``record.loader()`` does.
    batch_key
        Categorical obs column of the batch (sample, donor, assay) scvi-tools corrects for.
    labels_key
        Categorical obs column of the cell labels (needed by SCANVI).
    unlabeled_category
        The label of cells without one, for semi-supervised models (SCANVI). Rows whose label is
        missing count as unlabeled too.
    categorical_covariate_keys, continuous_covariate_keys
        Extra covariates (categorical obs columns; numeric obs columns).
    layer
        Train from this layer (stored with ``write_collection(..., layers=[...])``) instead of ``X``.
    model_name
        The scvi-tools model class that will train from the module (``"SCVI"``, ``"SCANVI"``); saved in
        the registry, and ``"SCANVI"`` makes training batches ``(all rows, labelled rows)`` pairs.
    batch_size
        Cells per training batch (scvi-tools' default); ``model.train(batch_size=...)`` overrides it.
    chunk_size
        Rows read contiguously, and the unit of the train / validation / test split.
    preload_nchunks
        Chunks per preload block (the loader's in-memory shuffle unit).
    seed
        Seed of the split and of every epoch's order.
    read_threads
        Decoding threads of each loader (see :class:`annshard.Loader`).

    Attributes
    ----------
    covariates
        The checked obs columns and their category mappings (see :attr:`registry` for what scvi-tools gets).
    train_idx, val_idx, test_idx
        The rows of each part of the split (global row numbers, sorted), set by :meth:`set_split`.

    Examples
    --------
    >>> import scvi
    >>> from annshard.scvi import SCVIDataModule
    >>> dm = SCVIDataModule("cells.zarr", batch_key="donor")  # doctest: +SKIP
    >>> model = scvi.model.SCVI(registry=dm.registry)  # doctest: +SKIP
    >>> model.train(max_epochs=10, datamodule=dm)  # doctest: +SKIP
    >>> latent = model.get_latent_representation(dataloader=dm.inference_dataloader())  # doctest: +SKIP

    From lamindb (the use is recorded on the active run):

    >>> dm = SCVIDataModule(ln.Collection.get(key="pbmc/train"), batch_key="donor")  # doctest: +SKIP
    """

    def __init__(
        self,
        collection: Collection | str | os.PathLike[str] | Sequence[Collection | str | os.PathLike[str]] | Any,
        *,
        batch_key: str | None = None,
        labels_key: str | None = None,
        unlabeled_category: str = "Unknown",
        categorical_covariate_keys: Sequence[str] = (),
        continuous_covariate_keys: Sequence[str] = (),
        layer: str | None = None,
        model_name: str = "SCVI",
        batch_size: int = 128,
        chunk_size: int = 32,
        preload_nchunks: int = 64,
        seed: int = 0,
        read_threads: int | None = None,
    ) -> None:
        super().__init__()
        for name, keys in (
            ("categorical_covariate_keys", categorical_covariate_keys),
            ("continuous_covariate_keys", continuous_covariate_keys),
        ):
            if isinstance(keys, str):
                msg = f"{name} must be a list of obs columns, not the string {keys!r} (did you mean [{keys!r}]?)"
                raise TypeError(msg)
        self.model_name = model_name
        self.layer = layer
        self.seed = int(seed)
        semi = model_name in SEMI_SUPERVISED
        keys = (batch_key, labels_key, *categorical_covariate_keys, *continuous_covariate_keys)
        obs_columns = list(dict.fromkeys(k for k in keys if k is not None))
        self._loader_kwargs: dict[str, Any] = {
            "chunk_size": chunk_size,
            "preload_nchunks": preload_nchunks,
            "obs_columns": obs_columns,
            "layer": layer,
            "output": "torch",
            "seed": self.seed,
            "read_threads": read_threads,
        }
        # the loader that reads the collection's metadata, obs columns and categories once
        first = {**self._loader_kwargs, "batch_size": batch_size, "sampler": ContextSampler()}
        if _lamin_collection(collection):
            from annshard.lamin import load_collection

            base = load_collection(collection, **first)
        else:
            base = Loader(collection, **first)
        self.set_batch_size(batch_size)
        self.collections = list(base.collections)
        context = base.sampler.context
        assert context is not None  # bound by the Loader
        self._shard_rows = tuple(int(n) for n in context.n_obs)
        self._offsets = np.concatenate([[0], np.cumsum(self._shard_rows)]).astype(np.int64)
        self._column = context.obs
        self.n_obs = base.n_obs
        self.n_vars = base.n_vars
        self.var_names: pd.Index = self.collections[0].var_names
        self.covariates = Covariates.read(
            where=", ".join(str(c.path) for c in self.collections),
            categories=base.categories,
            column=self._column,
            batch_key=batch_key,
            labels_key=labels_key,
            categorical_keys=tuple(categorical_covariate_keys),
            continuous_keys=tuple(continuous_covariate_keys),
            unlabeled_category=unlabeled_category,
            semi_supervised=semi,
        )
        self.loader_settings = base.settings()
        # attributes scvi-tools reads from a data module
        self.data_loader_kwargs: dict[str, Any] = {}
        self.n_samples = 0
        self.set_split(train_size=1.0)

    # -- what scvi-tools reads ----------------------------------------------------------------------
    @property
    def registry(self) -> dict[str, Any]:
        """The scvi-tools registry (``setup_method_name="setup_datamodule"``)."""
        import scvi

        return self.covariates.registry(
            model_name=self.model_name,
            n_obs=self.n_obs,
            var_names=self.var_names,
            layer=self.layer,
            scvi_version=scvi.__version__,
        )

    @property
    def n_batch(self) -> int:
        """Number of batch categories (1 without ``batch_key``)."""
        return len(self.covariates.batch_mapping)

    @property
    def n_labels(self) -> int:
        """Number of label categories, the unlabeled one included for SCANVI (1 without ``labels_key``)."""
        return len(self.covariates.labels_mapping)

    @property
    def batch_labels(self) -> np.ndarray:
        """The batch categories: code ``i`` is ``batch_labels[i]``."""
        return self.covariates.batch_mapping

    @property
    def labels_mapping(self) -> np.ndarray:
        """The label categories: code ``i`` is ``labels_mapping[i]``."""
        return self.covariates.labels_mapping

    @property
    def labels_(self) -> np.ndarray:
        """Every row's label, in collection order (SCANVI reads it to find the unlabeled cells)."""
        cov = self.covariates
        if cov.labels_key is None:
            return np.zeros(self.n_obs, dtype=object)
        return cov.labels_mapping[cov.model_labels(self._column(cov.labels_key))]

    @property
    def n_continuous_cov(self) -> int:
        """Number of continuous covariates."""
        return len(self.covariates.continuous_keys)

    @property
    def n_cats_per_cov(self) -> tuple[int, ...] | None:
        """Categories of each extra categorical covariate."""
        cov = self.covariates
        return tuple(len(cov.categorical_mappings[k]) for k in cov.categorical_keys) or None

    # -- split and batch size (called by model.train) --------------------------------------------------
    def set_batch_size(self, batch_size: int | None = None) -> None:
        """Use ``batch_size`` cells per training and validation batch (``None``: keep the current one)."""
        if batch_size is None:
            return
        if not isinstance(batch_size, int | np.integer) or isinstance(batch_size, bool) or batch_size <= 0:
            msg = f"batch_size must be a positive integer, got {batch_size!r}"
            raise ValueError(msg)
        self.batch_size = int(batch_size)

    def set_split(
        self,
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        batch_size: int | None = None,
    ) -> None:
        """Split the rows into train, validation and test, by chunk (see :mod:`annshard.scvi._split`).

        The split depends only on the collection's shard sizes, ``chunk_size``, the sizes and
        ``seed``: it is the same in every process of a distributed run and in every session.

        Parameters
        ----------
        train_size
            Fraction of rows for training (``None`` with a ``validation_size``: the rest).
        validation_size
            Fraction for validation (``None``: all rows not in train); what is left is the test set.
        shuffle_set_split
            Split a seeded random order of chunks; ``False``: validation, train and test in collection order.
        batch_size
            Passed to :meth:`set_batch_size`.
        """
        self.set_batch_size(batch_size)
        if train_size is None and validation_size is None:
            return
        if train_size is None:
            train_size = 1.0 - float(validation_size or 0.0)
        n_train, n_val = split_sizes(self.n_obs, train_size, validation_size)
        self.split: Split = split_chunks(
            self._shard_rows,
            chunk_size=self._loader_kwargs["chunk_size"],
            n_train=n_train,
            n_val=n_val,
            seed=self.seed,
            shuffle=shuffle_set_split,
        )
        self.train_idx = Split.rows(self.split.train, self._offsets)
        self.val_idx = Split.rows(self.split.validation, self._offsets)
        self.test_idx = Split.rows(self.split.test, self._offsets)
        self.n_train, self.n_val = len(self.train_idx), len(self.val_idx)

    # -- loaders ----------------------------------------------------------------------------------------
    def _loader(self, sampler: ChunkRuns, **kwargs: Any) -> Loader:
        return Loader(
            self.collections, **{**self._loader_kwargs, "batch_size": self.batch_size, **kwargs}, sampler=sampler
        )

    def train_dataloader(self) -> Loader:
        """Return the training loader: the train chunks in a new random order every epoch (rank-aware)."""
        loader = self._loader(ChunkRuns(self.split.train, part="train"))
        # a final batch of one or two cells would break BatchNorm: drop it (a different one each epoch)
        if 0 < loader.stream(loader.epoch).n_rows % self.batch_size < _MIN_LAST_BATCH:
            loader.drop_last = True
        return loader

    def val_dataloader(self) -> Ordered | list[Any]:
        """Return the validation loader, in collection order (an empty list without validation rows)."""
        if self.split.validation.shape[0] == 0:
            return []
        return Ordered(self._loader(OrderedRuns(self.split.validation, part="validation")))

    def test_dataloader(self) -> Ordered | list[Any]:
        """Return the test loader, in collection order (an empty list without test rows)."""
        if self.split.test.shape[0] == 0:
            return []
        return Ordered(self._loader(OrderedRuns(self.split.test, part="test")))

    def inference_dataloader(
        self,
        indices: Sequence[int] | NDArray[np.integer] | None = None,
        *,
        batch_size: int | None = None,
        device: str = "auto",
    ) -> InferenceLoader:
        """Every row in collection order, or ``indices`` in their order, for ``model.get_*(dataloader=...)``.

        Parameters
        ----------
        indices
            Global row numbers (any order; default: all rows).
        batch_size
            Cells per batch (default: the module's ``batch_size``).
        device
            Where the batches go and ``X`` is densified; ``"auto"``: the GPU when there is one.

        Returns
        -------
        An iterable of dict batches (``X``, ``batch``, ``labels``, ``ind_x``, covariates), reusable.
        """
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if indices is None:
            indices = np.arange(self.n_obs, dtype=np.int64)
        plan = index_runs(indices, self._shard_rows, self._loader_kwargs["chunk_size"])
        # every row, whatever the process: an inference pass is never split between ranks
        loader = self._loader(
            OrderedRuns(plan, part="inference"), batch_size=batch_size or self.batch_size, rank=0, world_size=1
        )
        return InferenceLoader(loader, self.covariates, device)

    # -- the host-device boundary ----------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Turn a loader batch into scvi-tools' dict of tensors (``X`` still sparse, so the copy is small)."""
        if isinstance(batch, dict):
            return batch
        return self.covariates.tensors(batch)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Densify ``X`` on the device; for SCANVI, pair all rows with the labelled ones."""
        batch["X"] = densify(batch["X"])
        if not self.covariates.semi_supervised:
            return batch
        labelled = batch["labels"][:, 0] != self.covariates.unlabeled_code
        if int(labelled.sum()) < _MIN_LAST_BATCH:  # none, or too few for the classifier's BatchNorm (1 row fails)
            return [batch, None]
        return [batch, {k: v[labelled] for k, v in batch.items()}]

    def __str__(self) -> str:  # lightning's own __str__ builds and iterates every loader
        return repr(self)

    def __repr__(self) -> str:
        paths = ", ".join(str(c.path) for c in self.collections)
        return f"SCVIDataModule([{paths}], n_obs={self.n_obs}, n_vars={self.n_vars}, model_name={self.model_name!r}, batch_size={self.batch_size}, n_train={self.n_train}, n_val={self.n_val})"
