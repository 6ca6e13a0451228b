"""The LightningDataModule wrapper: Trainer.fit for one epoch of a tiny model."""

from __future__ import annotations

import pytest

import annshard
from annshard.testing import make_adata

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    adata = make_adata(1200, 64, nnz_per_cell=20, seed=1)
    return annshard.write_collection([adata], tmp_path_factory.mktemp("l") / "c.zarr")


class Tiny(pl.LightningModule):
    def __init__(self, n_vars, n_classes):
        super().__init__()
        self.lin = torch.nn.Linear(n_vars, n_classes)
        self.seen = 0

    def training_step(self, batch, _):
        self.seen += batch.X.shape[0]
        return torch.nn.functional.cross_entropy(self.lin(batch.X), batch.obs["cell_type"].long())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


# lightning's own advisories about this tiny setup (few workers, no logger, small batch count)
@pytest.mark.filterwarnings("ignore::UserWarning:lightning.*")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")
def test_trainer_fit_one_epoch(small, tmp_path):
    from annshard.lightning import AnnshardDataModule

    dm = AnnshardDataModule(small.path, batch_size=256, obs_columns=["cell_type"], dense=True)
    model = Tiny(small.n_vars, len(small.obs_columns["cell_type"].categories))
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert model.seen == small.n_obs
    assert dm.state_dict()["loader"]["epoch"] == 1
    fresh = AnnshardDataModule(small.path, batch_size=256)
    fresh.load_state_dict(dm.state_dict())
    fresh.setup("fit")
    assert fresh.train_loader.state_dict() == dm.state_dict()["loader"]
