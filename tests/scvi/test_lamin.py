"""A collection registered in lamindb trains scVI inside ``ln.track()``; the run records it with the loader settings."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import SCVI_WARNINGS

# lamindb is only looked up, not imported: importing it here (at collection) would set up django in this
# process before the session's instance exists (``lamin_root`` in tests/conftest.py)
pytestmark = [
    *SCVI_WARNINGS,
    pytest.mark.filterwarnings("ignore::annshard.lamin._usage.NoRunWarning"),
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(importlib.util.find_spec("lamindb") is None, reason="needs the lamin extra"),
    pytest.mark.skipif(importlib.util.find_spec("scvi") is None, reason="needs the scvi extra"),
]


def test_registered_collection_trains_inside_track_and_the_run_records_it(lamin_root, signal_collection):
    """In this process, on the session's SQLite instance (a fresh interpreter with its own instance cost ~3 min).

    The key is this test's own; ``ln.Collection.get(key=...)`` is what the data module is given.
    """
    import lamindb as ln
    import scvi

    from annshard.lamin import register
    from annshard.scvi import SCVIDataModule

    record = register(signal_collection, key="scvi/cells")
    ln.track(ln.Transform(key="train-scvi", kind="function").save(), pypackages=False, stream_tracking=False)
    try:
        dm = SCVIDataModule(ln.Collection.get(key="scvi/cells"), batch_key="donor", batch_size=64, chunk_size=16)
        model = scvi.model.SCVI(registry=dm.registry, n_latent=4, n_hidden=32)
        train = {"accelerator": "cpu", "enable_progress_bar": False, "enable_checkpointing": False}
        model.train(max_epochs=2, datamodule=dm, **train)
        latent = model.get_latent_representation(dataloader=dm.inference_dataloader())
        run = ln.context.run
        run.refresh_from_db()
        inputs = [c.uid for c in run.input_collections.all()]
        loader = run.params["annshard_loader"]
        batch_size = run.features.get_values()["annshard_batch_size"]
    finally:
        ln.finish()
    assert inputs == [record.uid]  # the collection is an input of the run
    assert loader["batch_size"] == batch_size == 64 and loader["chunk_size"] == 16
    assert loader["obs_columns"] == ["donor"] and loader["output"] == "torch" and loader["seed"] == 0
    assert latent.shape[0] == signal_collection.n_obs
    elbo = model.history["elbo_train"].to_numpy().ravel()
    assert len(elbo) == 2 and elbo[1] < elbo[0]
