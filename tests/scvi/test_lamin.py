"""A collection registered in lamindb trains scVI inside ``ln.track()``; the run records it with the loader settings."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from .conftest import run_script

# lamindb is only looked up, not imported: importing it here (at collection) would set up django in this
# process before tests/lamin creates its instance
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(importlib.util.find_spec("lamindb") is None, reason="needs the lamin extra"),
    pytest.mark.skipif(importlib.util.find_spec("scvi") is None, reason="needs the scvi extra"),
]

# a fresh interpreter with its own lamindb settings directory and SQLite instance: this test never touches the
# session's instance of tests/lamin (one process connects to one instance)
SCRIPT = """
import json, os, sys, warnings
warnings.filterwarnings("ignore")
from annshard.testing import forbid_network
forbid_network(exit_code=3)
home, path = sys.argv[1], sys.argv[2]
os.chdir(home)
import lamindb_setup as ln_setup
ln_setup.init(storage=os.path.join(home, "storage"), name="annshard-scvi-test")
import lamindb as ln
import annshard
from annshard.lamin import register
import scvi
from annshard.scvi import SCVIDataModule

record = register(annshard.open_collection(path), key="scvi/cells")
ln.track(ln.Transform(key="train-scvi", kind="function").save(), pypackages=False, stream_tracking=False)
dm = SCVIDataModule(ln.Collection.get(key="scvi/cells"), batch_key="donor", batch_size=64, chunk_size=16)
model = scvi.model.SCVI(registry=dm.registry, n_latent=4, n_hidden=32)
model.train(max_epochs=2, datamodule=dm, accelerator="cpu", enable_progress_bar=False, enable_checkpointing=False)
latent = model.get_latent_representation(dataloader=dm.inference_dataloader())
run = ln.context.run
run.refresh_from_db()
out = {
    "record": record.uid,
    "inputs": [c.uid for c in run.input_collections.all()],
    "loader": run.params["annshard_loader"],
    "batch_size": run.features.get_values()["annshard_batch_size"],
    "latent_rows": int(latent.shape[0]),
    "elbo": model.history["elbo_train"].to_numpy().ravel().tolist(),
}
ln.finish()
print("RESULT " + json.dumps(out))
"""


def test_registered_collection_trains_inside_track_and_the_run_records_it(signal_collection, tmp_path):
    env = {**os.environ, "LAMIN_SETTINGS_DIR": str(tmp_path / "lamin-settings"), "LAMIN_TESTING": "true"}
    env.pop("LAMIN_CURRENT_INSTANCE", None)
    proc = run_script(tmp_path, "train_registered.py", SCRIPT, [str(tmp_path), str(signal_collection.path)], env)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["inputs"] == [out["record"]]  # the collection is an input of the run
    loader = out["loader"]
    assert loader["batch_size"] == out["batch_size"] == 64 and loader["chunk_size"] == 16
    assert loader["obs_columns"] == ["donor"] and loader["output"] == "torch" and loader["seed"] == 0
    assert out["latent_rows"] == signal_collection.n_obs
    assert len(out["elbo"]) == 2 and out["elbo"][1] < out["elbo"][0]
