"""Small collections with a real signal (marker genes per cell type), for training scvi-tools models on CPU."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("scvi")

# what scvi-tools and lightning say about this tiny CPU setup, outside our control: lightning's advisories
# (no workers, few batches, no GPU), scvi-tools' notes (custom datamodule, redundant arguments), and torch /
# lightning deprecations raised from their own code
SCVI_WARNINGS = [
    pytest.mark.filterwarnings("ignore::UserWarning:lightning.*"),
    pytest.mark.filterwarnings("ignore::UserWarning:scvi.*"),
    pytest.mark.filterwarnings("ignore::UserWarning:torch.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
]

N_VARS = 80
MARKERS = 4  # marker genes per cell type


def signal_adata(n: int, *, seed: int, donor_prefix: str, unlabeled: float = 0.0):
    """``make_adata`` counts plus strong marker genes per cell type; ``label`` hides a fraction of cell types."""
    from annshard.testing import make_adata

    a = make_adata(n, N_VARS, nnz_per_cell=25, seed=seed, obs_prefix=f"{donor_prefix}-cell", donor_prefix=donor_prefix)
    rng = np.random.default_rng(seed + 100)
    codes = a.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    rows = np.repeat(np.arange(n), MARKERS)
    cols = (codes[:, None] * MARKERS + np.arange(MARKERS)).ravel() % N_VARS
    vals = rng.poisson(20, size=rows.shape[0]).astype(np.float32) + 1
    a.X = (a.X + sp.csr_matrix((vals, (rows, cols)), shape=a.shape)).tocsr()
    labels = a.obs["cell_type"].astype(str).to_numpy().copy()
    labels[rng.random(n) < unlabeled] = "Unknown"
    a.obs["label"] = labels
    return a


def write_signal_collection(path, *, sizes=(700, 500), n_obs_per_shard=300, unlabeled=0.0):
    import annshard

    sources = {f"d{i}": signal_adata(n, seed=i, donor_prefix=f"d{i}", unlabeled=unlabeled) for i, n in enumerate(sizes)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The '(mode.chained_assignment|future.infer_string)' option")
        return annshard.write_collection(sources, path, n_obs_per_shard=n_obs_per_shard)


@pytest.fixture(scope="session")
def signal_collection(tmp_path_factory):
    """1,200 cells in 4 shards, two sources with disjoint donors; ``label`` hides 40 % of the cell types."""
    return write_signal_collection(tmp_path_factory.mktemp("scvi") / "cells.zarr", unlabeled=0.4)


def collection_adata(coll):
    """The collection's rows in collection order, read with anndata itself (shard after shard)."""
    import anndata as ad

    return ad.concat([ad.read_zarr(coll.shard_path(i)) for i in range(len(coll.shards))])


def run_script(tmp_path, name: str, source: str, args: list[str], env: dict[str, str]):
    """Run ``source`` as the script ``tmp_path / name`` in a fresh interpreter; fail with its output if it fails."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc
