"""scVI training throughput (cells/s per epoch, CPU) from annshard vs scvi-tools' own loaders, on the same cells.

- ``annshard``: ``annshard.scvi.SCVIDataModule`` over a collection written from the cells;
- ``anndata``: scvi-tools' ``setup_anndata`` + ``AnnDataLoader`` with the same cells held in memory (CSR);
- ``annbatch``: scvi-tools' ``SCVI.setup_annbatch`` over an annbatch collection of the same cells, where the
  installed annbatch works with it (scvi-tools 1.5.1 passes ``to_torch=`` to ``annbatch.Loader``, which annbatch
  0.3.x no longer accepts: the error is printed in the table instead of a figure).

Every variant trains the same model (``n_latent=10``, scVI defaults) for ``--epochs`` epochs with 90 / 10
train / validation and batch size 128; an epoch's time is measured by a callback from its first to its last
training batch (validation is off), and the table gives the median of the epochs after the first.

Usage::

    uv run python benchmarks/scvi_train.py --cells 50000 --genes 5000 --epochs 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.cells: list[int] = []
        self._start = 0.0
        self._n = 0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start, self._n = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        full = batch[0] if isinstance(batch, list | tuple) else batch
        self._n += int(full["X"].shape[0])

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.times.append(time.perf_counter() - self._start)
        self.cells.append(self._n)


TRAIN = {"accelerator": "cpu", "enable_progress_bar": False, "enable_checkpointing": False, "train_size": 0.9}


def run_annshard(path: Path, epochs: int) -> EpochTimer:
    import scvi

    from annshard.scvi import SCVIDataModule

    dm = SCVIDataModule(path, batch_key="donor", batch_size=128)
    model = scvi.model.SCVI(registry=dm.registry)
    timer = EpochTimer()
    model.train(max_epochs=epochs, datamodule=dm, callbacks=[timer], **TRAIN)
    return timer


def run_anndata(adata: Any, epochs: int) -> EpochTimer:
    import scvi

    adata = adata.copy()
    scvi.model.SCVI.setup_anndata(adata, batch_key="donor")
    model = scvi.model.SCVI(adata)
    timer = EpochTimer()
    model.train(max_epochs=epochs, batch_size=128, callbacks=[timer], **TRAIN)
    return timer


def run_annbatch(adata: Any, work: Path, epochs: int) -> EpochTimer:
    import scvi

    h5ad = work / "cells.h5ad"
    adata.write_h5ad(h5ad)
    # scvi-tools builds the annbatch collection itself from the h5ad files
    datamodule = scvi.model.SCVI.setup_annbatch(
        str(work / "annbatch.zarr"), paths=[str(h5ad)], batch_key="donor", batch_size=128, shuffle=True
    )
    model = scvi.model.SCVI(registry=datamodule.registry)
    timer = EpochTimer()
    model.train(max_epochs=epochs, datamodule=datamodule, callbacks=[timer], **TRAIN)
    return timer


def rate(timer: EpochTimer) -> str:
    later = list(zip(timer.cells, timer.times, strict=True))[1:] or list(zip(timer.cells, timer.times, strict=True))
    return f"{statistics.median(c / t for c, t in later):,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=50_000)
    parser.add_argument("--genes", type=int, default=5_000)
    parser.add_argument("--nnz", type=float, default=1_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--only", nargs="*", default=["annshard", "anndata", "annbatch"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import scvi

    import annshard
    from annshard.testing import make_adata

    adata = make_adata(args.cells, args.genes, nnz_per_cell=args.nnz, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        coll = annshard.write_collection([adata], work / "cells.zarr", seed=0)
        for name in args.only:
            try:
                if name == "annshard":
                    timer = run_annshard(coll.path, args.epochs)
                elif name == "anndata":
                    timer = run_anndata(adata, args.epochs)
                else:
                    timer = run_annbatch(adata, work, args.epochs)
                rows.append((name, rate(timer), " ".join(f"{t:.1f}" for t in timer.times)))
            except Exception as e:  # noqa: BLE001 - a loader that does not work is a row of the table
                rows.append((name, "-", f"{type(e).__name__}: {e}"[:100]))
    print(f"scVI training, {args.cells:,} cells x {args.genes:,} genes, scvi-tools {scvi.__version__}, CPU")
    print(f"{'loader':<10} {'cells/s':>10}  epoch seconds")
    for name, r, detail in rows:
        print(f"{name:<10} {r:>10}  {detail}")


if __name__ == "__main__":
    main()
