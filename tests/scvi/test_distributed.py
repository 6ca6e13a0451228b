"""Two-process CPU DDP training of scVI: each rank reads disjoint rows of the train split, and both train."""

from __future__ import annotations

import json
import os

import pytest

from .conftest import run_script

pytest.importorskip("scvi")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# lightning's DDP launcher starts rank 1 by running this script again (LOCAL_RANK=1), so it is a file
SCRIPT = """
import json, sys, warnings
warnings.filterwarnings("ignore")
from annshard.testing import forbid_network
forbid_network(exit_code=3)
import lightning.pytorch as pl
import scvi
from annshard.scvi import SCVIDataModule

path, out = sys.argv[1], sys.argv[2]


class Rows(pl.Callback):
    rank, rows = None, {}

    def on_train_start(self, trainer, pl_module):
        self.rank = trainer.global_rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rows.setdefault(trainer.current_epoch, []).extend(batch["ind_x"].ravel().tolist())


dm = SCVIDataModule(path, batch_key="donor", batch_size=64)
model = scvi.model.SCVI(registry=dm.registry, n_latent=4, n_hidden=32)
rows = Rows()
model.train(
    max_epochs=2,
    datamodule=dm,
    accelerator="cpu",
    devices=2,
    strategy="ddp_find_unused_parameters_true",
    callbacks=[rows],
    enable_progress_bar=False,
    enable_checkpointing=False,
)
elbo = model.history["elbo_train"].to_numpy().ravel().tolist() if "elbo_train" in (model.history or {}) else None
with open(f"{out}/rank-{rows.rank}.json", "w") as f:
    json.dump({"rows": rows.rows, "train_idx": dm.train_idx.tolist(), "trained": model.is_trained, "elbo": elbo}, f)
"""


def test_two_process_ddp_gives_each_rank_disjoint_rows_and_trains(signal_collection, tmp_path):
    # gloo on the loopback interface only
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    run_script(tmp_path, "ddp_scvi.py", SCRIPT, [str(signal_collection.path), str(tmp_path)], env)
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    train = set(ranks[0]["train_idx"])
    assert ranks[1]["train_idx"] == ranks[0]["train_idx"]  # the same seeded split in both processes
    for epoch in ("0", "1"):
        a, b = (set(r["rows"][epoch]) for r in ranks)
        assert len(a) == len(ranks[0]["rows"][epoch]) and len(b) == len(ranks[1]["rows"][epoch])  # no repeats
        assert not a & b and a | b <= train
        assert len(a) == len(b) and len(train) - len(a | b) < 2 + 2 * 3  # the leftover row, short last batches
    assert set(ranks[0]["rows"]["0"]) != set(ranks[0]["rows"]["1"])  # the ranks' parts are re-drawn each epoch
    assert all(r["trained"] for r in ranks)
    elbo = ranks[0]["elbo"]
    assert elbo is not None and len(elbo) == 2 and all(e == e for e in elbo)  # finite, logged by rank 0
