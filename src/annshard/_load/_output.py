"""Turning an assembled batch into the requested output type (lazy imports).

``scipy`` gives a CSR matrix with ``int32`` indices, ``numpy`` a dense array.
``torch`` gives a ``torch.sparse_csr_tensor`` (or a dense tensor with
``dense=True``) and ``cupy`` a ``cupyx.scipy.sparse.csr_matrix`` (or a dense
``cupy.ndarray``). With ``device="cuda"`` the CSR parts are copied from pinned
host memory with non-blocking copies and densified on the GPU, never on the
CPU: the transfer stays sparse.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from ._fetch import Block

__all__ = ["OUTPUTS", "Output", "convert", "convert_dense"]

Output = Literal["scipy", "numpy", "torch", "cupy"]
OUTPUTS = ("scipy", "numpy", "torch", "cupy")


def _csr(block: Block, n_vars: int) -> sp.csr_matrix:
    indptr = block.indptr
    if indptr is not None and indptr.shape[0] and indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32, copy=False)  # gather_rows already made it int32: no copy
    return sp.csr_matrix((block.data, block.indices, indptr), shape=(block.n_rows, n_vars), copy=False)


def convert(block: Block, *, n_vars: int, output: Output, dense: bool, device: str | None) -> tuple[Any, Any]:
    """``(X, index)`` of ``block`` in the requested form."""
    is_dense = block.indptr is None
    if output == "scipy":
        x = sp.csr_matrix(block.data) if is_dense else _csr(block, n_vars)
        return x, block.index
    if output == "numpy":
        x = block.data if is_dense else _csr(block, n_vars).toarray()
        return x, block.index
    if output == "torch":
        return _torch(block, n_vars, dense=dense or is_dense, device=device)
    if output == "cupy":
        return _cupy(block, n_vars, dense=dense or is_dense)
    msg = f"unknown output {output!r}; choose one of {OUTPUTS}"
    raise ValueError(msg)


def convert_dense(block: Block, *, n_vars: int, output: Output, device: str | None) -> Any:
    """Return a block's values as a dense array of the requested kind (obsm arrays): numpy for ``scipy`` / ``numpy``."""
    values = block.data if block.indptr is None else _csr(block, n_vars).toarray()
    if output in ("scipy", "numpy"):
        return values
    if output == "torch":
        import torch

        return _to_device(torch, values, device)
    if output == "cupy":
        import cupy as cp

        return cp.asarray(values)
    msg = f"unknown output {output!r}; choose one of {OUTPUTS}"
    raise ValueError(msg)


def _to_device(torch: Any, a: np.ndarray, device: Any) -> Any:
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device is None or torch.device(device).type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def _torch(block: Block, n_vars: int, *, dense: bool, device: str | None) -> tuple[Any, Any]:
    import torch

    index = torch.from_numpy(block.index)
    if block.indptr is None:
        return _to_device(torch, block.data, device), index
    on_cpu = device is None or torch.device(device).type == "cpu"
    if dense and on_cpu:
        return torch.from_numpy(_csr(block, n_vars).toarray()), index
    # torch wants both index arrays in one dtype; the batch's are int32 (int64 past 2**31): no widening copy
    crow = _to_device(torch, block.indptr.astype(block.indices.dtype, copy=False), device)
    col = _to_device(torch, block.indices, device)
    vals = _to_device(torch, block.data, device)
    with warnings.catch_warnings():
        # torch warns once per process that sparse CSR is "beta"; the layout is what users asked for
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        x = torch.sparse_csr_tensor(crow, col, vals, size=(block.n_rows, n_vars), check_invariants=False)
    return (x.to_dense() if dense else x), index


def _cupy(block: Block, n_vars: int, *, dense: bool) -> tuple[Any, Any]:
    import cupy as cp
    import cupyx.scipy.sparse as csp

    index = block.index
    if block.indptr is None:
        return cp.asarray(block.data), index
    x = csp.csr_matrix(
        (cp.asarray(block.data), cp.asarray(block.indices), cp.asarray(block.indptr.astype(np.int32, copy=False))),
        shape=(block.n_rows, n_vars),
    )
    return (x.toarray() if dense else x), index
