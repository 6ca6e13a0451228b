"""GPU output: CSR parts copied from pinned memory, densified on the device (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest

import annshard

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)"
    ),
]


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_cuda_batches(coll, dense):
    loader = annshard.Loader(
        coll.path, batch_size=256, output="torch", device="cuda", dense=dense, obs_columns=["cell_type"]
    )
    seen = []
    for batch in loader:
        assert batch.X.device.type == "cuda" and batch.obs["cell_type"].device.type == "cuda"
        idx = batch.index.cpu().numpy()
        x = batch.X if dense else batch.X.to_dense()
        np.testing.assert_array_equal(x.cpu().numpy(), coll.X[idx].toarray())
        seen.append(idx)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(coll.adata.n_obs))
