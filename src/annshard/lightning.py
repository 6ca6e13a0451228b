"""A PyTorch Lightning ``LightningDataModule`` over annshard collections.

Importing this module imports lightning (``import annshard`` does not).
The train loader is the :class:`annshard.Loader` itself (the fast path: no
worker processes, reading overlapped by the loader's own prefetch thread), or a
``torch.utils.data.DataLoader`` around it when ``num_workers > 0``. Under
distributed training the loader takes its rank from ``torch.distributed``. The
loader's position is saved in Lightning checkpoints, so resuming continues the
epoch exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl

from annshard._load import Loader

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from annshard._store._collection import Collection

    PathOrCollection = Collection | str | os.PathLike[str] | Sequence[Collection | str | os.PathLike[str]]

__all__ = ["AnnshardDataModule"]


class AnnshardDataModule(pl.LightningDataModule):
    """Train (and optionally validation) loaders over annshard collections.

    Parameters
    ----------
    train
        The training collection(s) (anything :class:`annshard.Loader` accepts).
    val
        Validation collection(s); read with the sequential sampler.
    num_workers
        DataLoader worker processes (0: iterate the loader directly, the fast path).
    multiprocessing_context
        Start method for workers. ``"spawn"`` (default) and ``"forkserver"`` read at full speed; ``"fork"``
        works too, but forked workers read through zarr-python's own codec pipeline, since zarrs' thread pool
        does not survive a fork (see ``docs/design.md``).
    **loader_kwargs
        Passed to :class:`annshard.Loader` (``batch_size``, ``chunk_size``, ``obs_columns``, ``output``, ...);
        ``output`` defaults to ``"torch"``.

    Examples
    --------
    >>> from annshard.lightning import AnnshardDataModule
    >>> dm = AnnshardDataModule("cells.zarr", batch_size=1024, obs_columns=["cell_type"], dense=True)  # doctest: +SKIP
    >>> trainer.fit(model, datamodule=dm)  # doctest: +SKIP
    """

    def __init__(
        self,
        train: PathOrCollection,
        *,
        val: PathOrCollection | None = None,
        num_workers: int = 0,
        multiprocessing_context: str = "spawn",
        **loader_kwargs: Any,
    ) -> None:
        super().__init__()
        loader_kwargs.setdefault("output", "torch")
        self.train_source, self.val_source = train, val
        self.num_workers = num_workers
        self.multiprocessing_context = multiprocessing_context
        self.loader_kwargs = loader_kwargs
        self._train: Loader | None = None
        self._val: Loader | None = None
        self._pending_state: dict[str, int] | None = None

    def setup(self, stage: str | None = None) -> None:
        """Build the loaders (on every rank, after torch.distributed is initialised)."""
        if self._train is None:
            self._train = Loader(self.train_source, **self.loader_kwargs)
            if self._pending_state is not None:
                self._train.load_state_dict(self._pending_state)
                self._pending_state = None
        if self.val_source is not None and self._val is None:
            kwargs = {**self.loader_kwargs, "sampler": "sequential"}
            self._val = Loader(self.val_source, **kwargs)

    @property
    def train_loader(self) -> Loader:
        """The training :class:`annshard.Loader` (after :meth:`setup`)."""
        if self._train is None:
            self.setup("fit")
        assert self._train is not None
        return self._train

    def _wrap(self, loader: Loader) -> Any:
        if self.num_workers <= 0:
            return loader
        import torch

        return torch.utils.data.DataLoader(
            loader,
            batch_size=None,
            num_workers=self.num_workers,
            multiprocessing_context=self.multiprocessing_context,
            persistent_workers=True,
        )

    def train_dataloader(self) -> Any:
        """Return the training loader."""
        return self._wrap(self.train_loader)

    def val_dataloader(self) -> Any:
        """Return the validation loader (an empty list without validation data)."""
        if self.val_source is None:
            return []
        if self._val is None:
            self.setup("validate")
        assert self._val is not None
        return self._wrap(self._val)

    def state_dict(self) -> dict[str, Any]:
        """Return the training loader's position, saved in Lightning checkpoints."""
        return {"loader": self._train.state_dict()} if self._train is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training loader's position from a checkpoint."""
        if "loader" in state_dict:
            if self._train is not None:
                self._train.load_state_dict(state_dict["loader"])
            else:
                self._pending_state = dict(state_dict["loader"])
