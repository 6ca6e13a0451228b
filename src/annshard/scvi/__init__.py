"""Train scvi-tools models (scVI, scANVI) from annshard collections, registered in lamindb or not.

Needs the ``scvi`` extra (``pip install 'annshard[scvi]'``); importing this
package imports lightning and torch, ``import annshard`` does not.

>>> import scvi
>>> from annshard.scvi import SCVIDataModule
>>> dm = SCVIDataModule("cells.zarr", batch_key="donor")  # doctest: +SKIP
>>> model = scvi.model.SCVI(registry=dm.registry)  # doctest: +SKIP
>>> model.train(max_epochs=20, datamodule=dm)  # doctest: +SKIP
>>> latent = model.get_latent_representation(dataloader=dm.inference_dataloader())  # doctest: +SKIP

A lamindb collection trains the same way, and its use is recorded on the active run:
``SCVIDataModule(ln.Collection.get(key="pbmc/train"), batch_key="donor")``.
"""

from __future__ import annotations

from ._datamodule import InferenceLoader, SCVIDataModule
from ._registry import CovariateError

__all__ = ["CovariateError", "InferenceLoader", "SCVIDataModule"]
