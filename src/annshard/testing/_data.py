"""Realistic synthetic single-cell data, for the demo, the tests, the benchmarks and users' own tests.

Per-cell non-zero counts are lognormal, gene popularity is skewed (a Zipf-like
power law, so a few genes are in most cells), values are negative-binomial
counts, and obs carries a few categorical columns (cell type, donor, assay)
plus numeric QC columns. Generation is vectorised and seeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["make_adata", "write_h5ads"]

CELL_TYPES = ("T cell", "B cell", "NK cell", "monocyte", "dendritic cell", "erythrocyte", "platelet", "fibroblast")
ASSAYS = ("10x 3' v2", "10x 3' v3", "10x 5' v1")


def _gene_names(n_vars: int) -> list[str]:
    return [f"ENSG{i:011d}" for i in range(n_vars)]


def make_adata(
    n_obs: int,
    n_vars: int = 2000,
    *,
    nnz_per_cell: float = 1500,
    seed: int = 0,
    dtype: str = "float32",
    dense: bool = False,
    gene_offset: int = 0,
    obs_prefix: str = "cell",
    donor_prefix: str = "donor",
) -> ad.AnnData:
    """Make one synthetic AnnData.

    Parameters
    ----------
    n_obs
        Number of cells.
    n_vars
        Number of genes.
    nnz_per_cell
        Median non-zeros per cell (capped at ``n_vars``).
    seed
        Random seed.
    dtype
        dtype of ``X`` (``"float32"``, ``"int32"``, ...).
    dense
        Return a dense ``X`` instead of CSR.
    gene_offset
        Start gene numbering here, so different "datasets" share only part of their genes.
    obs_prefix
        Prefix of obs names (``f"{obs_prefix}-{i}"``).
    donor_prefix
        Prefix of donor labels, so sources can have disjoint donors.

    Returns
    -------
    The AnnData, with ``var["gene_symbol"]`` and obs columns ``cell_type``,
    ``donor``, ``assay`` (categorical), ``n_genes`` (int) and ``total_counts`` (float).

    Examples
    --------
    >>> from annshard.testing import make_adata
    >>> adata = make_adata(100, 50, nnz_per_cell=10, seed=1)
    >>> adata.shape
    (100, 50)
    >>> list(adata.obs.columns)
    ['cell_type', 'donor', 'assay', 'n_genes', 'total_counts']
    """
    rng = np.random.default_rng(seed)
    median = min(float(nnz_per_cell), n_vars * 0.9)
    per_cell = rng.lognormal(np.log(max(median, 1.0)), 0.35, size=n_obs)
    per_cell = np.clip(per_cell, 1, n_vars).astype(np.int64)
    # skewed gene popularity: weight ~ 1 / rank^0.8, shuffled over gene ids
    weights = 1.0 / np.arange(1, n_vars + 1) ** 0.8
    weights = weights[rng.permutation(n_vars)]
    weights /= weights.sum()
    # draw with replacement (oversampled), keep unique genes per cell up to its target
    draws = (per_cell * 1.6 + 8).astype(np.int64)
    rows = np.repeat(np.arange(n_obs, dtype=np.int64), draws)
    genes = np.searchsorted(np.cumsum(weights), rng.random(rows.shape[0]), side="right").clip(0, n_vars - 1)
    key = rows * n_vars + genes
    key.sort()
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    rows, genes = np.divmod(key, n_vars)
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_obs))[:-1]])
    rank = np.arange(rows.shape[0]) - starts[rows]
    keep = rank < per_cell[rows]
    rows, genes = rows[keep], genes[keep]
    counts = np.bincount(rows, minlength=n_obs)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    # negative-binomial counts, >= 1 since these are the non-zeros
    values = rng.negative_binomial(2, 0.5, size=rows.shape[0]) + 1
    X = sp.csr_matrix((values.astype(dtype), genes.astype(np.int32), indptr), shape=(n_obs, n_vars))
    X.sort_indices()
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice(CELL_TYPES, size=n_obs, p=_type_probs(len(CELL_TYPES)))),
            "donor": pd.Categorical([f"{donor_prefix}-{d}" for d in rng.integers(0, 6, size=n_obs)]),
            "assay": pd.Categorical(rng.choice(ASSAYS, size=n_obs)),
            "n_genes": counts.astype(np.int64),
            "total_counts": np.asarray(X.sum(axis=1)).ravel().astype(np.float64),
        },
        index=pd.Index([f"{obs_prefix}-{i}" for i in range(n_obs)]),
    )
    names = _gene_names(n_vars + gene_offset)[gene_offset:]
    var = pd.DataFrame({"gene_symbol": [f"GENE{i + gene_offset}" for i in range(n_vars)]}, index=pd.Index(names))
    return ad.AnnData(X=X.toarray() if dense else X, obs=obs, var=var)


def _type_probs(k: int) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1)
    return p / p.sum()


def write_h5ads(
    directory: str | Path,
    sizes: Sequence[int],
    n_vars: int = 2000,
    *,
    nnz_per_cell: float = 1500,
    seed: int = 0,
    gene_overlap: float = 1.0,
) -> list[Path]:
    """Write several synthetic datasets as ``.h5ad`` files, one per entry of ``sizes``.

    Parameters
    ----------
    directory
        Where to write ``dataset-NN.h5ad``.
    sizes
        Cells per file.
    n_vars
        Genes per file.
    nnz_per_cell
        Median non-zeros per cell.
    seed
        Random seed (file ``i`` uses ``seed + i``).
    gene_overlap
        Fraction of genes shared between consecutive files (1.0: identical gene spaces).

    Returns
    -------
    The written paths.

    Examples
    --------
    >>> import tempfile
    >>> from annshard.testing import write_h5ads
    >>> paths = write_h5ads(tempfile.mkdtemp(), [100, 50], 200, nnz_per_cell=20)
    >>> [p.name for p in paths]
    ['dataset-00.h5ad', 'dataset-01.h5ad']
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shift = round(n_vars * (1.0 - gene_overlap))
    paths = []
    for i, n in enumerate(sizes):
        adata = make_adata(
            n,
            n_vars,
            nnz_per_cell=nnz_per_cell,
            seed=seed + i,
            gene_offset=i * shift,
            obs_prefix=f"d{i}-cell",
            donor_prefix=f"d{i}-donor",
        )
        path = directory / f"dataset-{i:02d}.h5ad"
        adata.write_h5ad(path)
        paths.append(path)
    return paths
