"""Device preload: blocks moved to the device once, shuffled and cut into batches there.

With ``gather="device"`` (the default when ``device`` is a GPU) an epoch runs
as follows. The reading thread (``annshard-read``) decodes the next block on
the host (:class:`~annshard._load._fetch.BlockReader`, as the host pipeline
does), draws its row order (:func:`~annshard._load._assemble.block_order`)
and moves the block's arrays and the order to the device, one transfer per
array (:meth:`~annshard._load._xp.TorchOps.put`: pinned staging buffers and
a dedicated CUDA stream, so the copy overlaps decoding of the next block).
The consumer then cuts batches from the stream of device blocks
(:func:`cut_device_batches`), exactly as
:func:`~annshard._load._assemble.cut_batches` does on the host (a batch may
span blocks), gathering each batch's rows with the library's own index
operations, and :class:`DeviceBatchMaker` builds the :class:`~annshard.Batch`
(torch sparse CSR or dense tensors, cupyx CSR or cupy arrays; obs codes and
the row index as device arrays).

The gather is written once, against the small ops namespace of
:mod:`annshard._load._xp`; with numpy ops (``output="scipy"``/``"numpy"``)
or torch on the CPU the very same code runs in CI and its batches are
compared with the host pipeline's.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._assemble import batch_segments, block_order
from ._batch import Batch

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from ._assemble import EpochStream
    from ._fetch import Block, BlockReader
    from ._output import BatchMaker
    from ._xp import ArrayOps, TorchOps

__all__ = ["DeviceBatchMaker", "DeviceBlock", "ProcessOps", "cut_device_batches", "device_batches", "gather_device"]


@dataclass
class DeviceBlock:
    """A block or batch whose arrays live in the ops' library (fields as in :class:`~annshard._load._fetch.Block`)."""

    index: Any
    indptr: Any
    data: Any
    indices: Any
    extras: dict[str, DeviceBlock] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.index.shape[0])


def _arrays(block: Block) -> list[np.ndarray]:
    out = [block.index]
    for b in (block, *block.extras.values()):
        out += [b.data] if b.indptr is None else [b.indptr, b.indices, b.data]
    return out


def _layout(block: Block) -> tuple[bool, dict[str, bool]]:
    """Which of a block's matrices are CSR: all :func:`_rebuild` needs (the host arrays can go back to their pool)."""
    return block.indptr is not None, {k: b.indptr is not None for k, b in block.extras.items()}


def _rebuild(layout: tuple[bool, dict[str, bool]], arrays: list[Any]) -> DeviceBlock:
    it = iter(arrays)
    index = next(it)

    def one(csr: bool) -> DeviceBlock:
        if not csr:
            return DeviceBlock(index=index, indptr=None, data=next(it), indices=None)
        indptr, indices, data = next(it), next(it), next(it)
        return DeviceBlock(index=index, indptr=indptr, data=data, indices=indices)

    out = one(layout[0])
    out.extras = {k: one(csr) for k, csr in layout[1].items()}
    return out


def gather_device(ops: ArrayOps | TorchOps, segments: list[tuple[DeviceBlock, Any]], n_vars: int) -> DeviceBlock:
    """One batch: rows ``rows`` of each ``(block, rows)`` segment, one after the other (device arrays, ``ops``).

    The result matches :func:`~annshard._load._assemble.gather_rows`: values in
    their stored dtype, ``indptr`` and gene indices in ``int32`` (``int64``
    past 2**31), the layers and obsm arrays gathered with the same rows.
    """
    index = ops.concat([ops.take(b.index, r) for b, r in segments])
    out = _gather_one(ops, segments, n_vars, index)
    for element in segments[0][0].extras:
        out.extras[element] = _gather_one(ops, [(b.extras[element], r) for b, r in segments], n_vars, index)
    return out


def _gather_one(
    ops: ArrayOps | TorchOps, segments: list[tuple[DeviceBlock, Any]], n_vars: int, index: Any
) -> DeviceBlock:
    if segments[0][0].indptr is None:
        return DeviceBlock(
            index=index, indptr=None, data=ops.concat([ops.take(b.data, r) for b, r in segments]), indices=None
        )
    starts, lens = [], []
    for b, r in segments:
        s = ops.take(b.indptr[:-1], r)
        starts.append(s)
        lens.append(ops.take(b.indptr[1:], r) - s)
    ptr = ops.cumsum0(ops.concat(lens))
    nnz = ops.scalar(ptr[-1])
    itype = np.dtype(np.int32 if nnz < 2**31 and n_vars < 2**31 else np.int64)
    data, indices, row = [], [], 0
    for (b, r), s, n in zip(segments, starts, lens, strict=True):
        k = int(r.shape[0])
        e0, e1 = ops.scalar(ptr[row]), ops.scalar(ptr[row + k])
        # element positions of the segment's values: each row's start, then consecutive
        src = ops.repeat(s - ptr[row : row + k], n, e1 - e0) + ops.arange(e1 - e0) + e0
        data.append(ops.take(b.data, src))
        indices.append(ops.astype(ops.take(b.indices, src), itype))
        row += k
    return DeviceBlock(index=index, indptr=ops.astype(ptr, itype), data=ops.concat(data), indices=ops.concat(indices))


def cut_device_batches(
    ops: ArrayOps | TorchOps,
    blocks: Iterable[tuple[DeviceBlock, Any]],
    batch_size: int,
    *,
    n_vars: int,
    drop_last: bool,
) -> Iterator[DeviceBlock]:
    """Cut the stream of ``(block, order)`` into batches of ``batch_size`` rows, as ``cut_batches`` does on the host."""
    for segments in batch_segments(blocks, batch_size, drop_last=drop_last):
        yield gather_device(ops, segments, n_vars)


def device_batches(
    stream: EpochStream,
    reader: BlockReader,
    ops: ArrayOps | TorchOps,
    *,
    position: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    part: int,
    batch_size: int,
    n_vars: int,
    drop_last: bool,
) -> Iterator[DeviceBlock]:
    """Yield ``stream``'s batches from row ``position`` on, gathered on the ops' device (parameters as ``gathered_batches``).

    One background stage reads, decodes and moves each block; the consumer
    gathers. Closing the generator (or an error in the stage, re-raised here)
    stops the thread.
    """
    from ._pool import BufferPool
    from ._prefetch import Prefetcher

    first, skip = stream.locate(position)
    block_pool = BufferPool(max_buffers=3 * 4 * (1 + len(reader.extras)))  # values, indices, stored counts

    def read(b: int) -> tuple[Any, Any]:
        # the reading thread: decode on the host, draw the order, start the transfer (it overlaps the next decode)
        chunks = stream.block(b)
        block = reader.read(chunks, block_pool)
        order = block_order(chunks, shuffle=shuffle, seed=seed, epoch=epoch, part=part, block=b)
        order = np.ascontiguousarray(order[skip:] if b == first else order)
        return _layout(block), ops.put([*_arrays(block), order])

    def moved(items: Iterable[tuple[Any, Any]]) -> Iterator[tuple[DeviceBlock, Any]]:
        for layout, handle in items:
            arrays = ops.ready(handle)
            yield _rebuild(layout, arrays[:-1]), arrays[-1]

    blocks = Prefetcher(range(first, stream.n_blocks), read, slots=2, name="annshard-read")
    try:
        yield from cut_device_batches(ops, moved(blocks), batch_size, n_vars=n_vars, drop_last=drop_last)
    finally:
        blocks.close()


class ProcessOps:
    """The ops of the calling process, built at its first epoch (CUDA streams and pinned buffers do not survive a fork)."""

    def __init__(self, output: str, device: Any) -> None:
        self.output, self.device = output, device
        self._ops: ArrayOps | TorchOps | None = None
        self._pid = -1
        self.columns: dict[str, Any] = {}  # obs columns moved to the device

    def get(self) -> ArrayOps | TorchOps:
        """Return this process's ops."""
        if self._ops is None or self._pid != os.getpid():
            from ._xp import make_ops

            self._ops, self._pid, self.columns = make_ops(self.output, self.device), os.getpid(), {}
        return self._ops

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ops": None, "columns": {}}


@dataclass(frozen=True)
class DeviceBatchMaker:
    """Turns a device batch into the :class:`~annshard.Batch` yielded, for ``output`` on the ops' device.

    numpy batches go through the host :class:`~annshard._load._output.BatchMaker`
    unchanged (they are the host pipeline's arrays); torch and cupy batches are
    built from the device arrays, and obs columns are moved to the device once
    and gathered there by the batch's row index.
    """

    host: BatchMaker
    ops: ProcessOps

    def __call__(self, batch: DeviceBlock, *, output: str, dense: bool, device: Any) -> Batch:
        """Return ``batch`` as a :class:`~annshard.Batch`."""
        ops = self.ops.get()
        if ops.name == "numpy":
            return self.host(batch, output=output, dense=dense, device=None)  # type: ignore[arg-type]
        h = self.host
        x = self._matrix(ops, batch, h.n_vars, dense)
        layers = {k: self._matrix(ops, batch.extras[f"layers/{k}"], h.n_vars, dense) for k in h.layers}
        obsm = {k: self._matrix(ops, batch.extras[f"obsm/{k}"], h.widths[f"obsm/{k}"], True) for k in h.obsm}
        obs = {}
        for name in h.obs_columns:
            values = h.obs.column(name)
            if values.dtype.kind not in "biufc":
                obs[name] = values[ops.to_host(batch.index)]  # strings have no device type: gathered on the host
                continue
            if name not in self.ops.columns:
                self.ops.columns[name] = ops.column(values)
            obs[name] = ops.take(self.ops.columns[name], batch.index)
        return Batch(X=x, obs=obs, index=batch.index, layers=layers, obsm=obsm)

    @staticmethod
    def _matrix(ops: ArrayOps | TorchOps, b: DeviceBlock, n_vars: int, dense: bool) -> Any:
        if b.indptr is None:
            return b.data
        shape = (b.n_rows, n_vars)
        if ops.name == "torch":
            torch = ops.torch  # type: ignore[union-attr]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
                x = torch.sparse_csr_tensor(b.indptr, b.indices, b.data, size=shape, check_invariants=False)
            return x.to_dense() if dense else x
        import cupyx.scipy.sparse as csp

        x = csp.csr_matrix(
            (b.data, b.indices.astype(np.int32, copy=False), b.indptr.astype(np.int32, copy=False)), shape=shape
        )
        return x.toarray() if dense else x


def uses_device_gather(gather: str | None, output: str, device: Any) -> bool:
    """Whether a loader gathers on the device: ``gather`` if given, else whether ``device`` is set and not the CPU.

    Raises
    ------
    ValueError
        If ``gather`` is not ``None``, ``"host"`` or ``"device"``.
    """
    if gather not in (None, "host", "device"):
        msg = f"gather must be 'host', 'device' or None (the default: 'device' when device is a GPU), got {gather!r}"
        raise ValueError(msg)
    if gather is not None:
        return gather == "device"
    return device is not None and not str(device).startswith("cpu")
