"""The few array operations the device gather needs, for numpy, cupy and torch, and the block transfer.

:mod:`annshard._load._device` shuffles blocks and cuts batches with one
implementation written against an *ops* object: :class:`ArrayOps` wraps a
module that follows numpy's API (numpy on the host, cupy on a GPU),
:class:`TorchOps` wraps torch on any device. The operations are the ones a
CSR row gather is made of (``take``, ``cumsum``, ``repeat``, ``concat``, a
dtype cast) plus :meth:`put` / :meth:`ready`, which move a decoded host
block to the device and make it usable there.

On a CUDA device :meth:`TorchOps.put` copies each array once: into a pinned
host staging buffer (reused across blocks: two sets, so one block's copy can
be in flight while the next one is staged) and from there with a
non-blocking copy on a dedicated CUDA stream. The copy runs in the reading
thread, so it overlaps decoding of the next block; :meth:`TorchOps.ready`
makes the consumer's stream wait for the copy's event before the gather uses
it. On the CPU the same functions run, without pinning or streams. cupy
(:class:`ArrayOps` with ``cupy``) does the same with ``cupyx.empty_pinned``
and a ``cupy.cuda.Stream``. torch and cupy are imported only when an ops
object is built.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["ArrayOps", "TorchOps", "make_ops"]


class _Staging:
    """Pinned host buffers, one per array of a block, in two sets used in turn; each set waits for its last copy."""

    def __init__(self, alloc: Any) -> None:
        self._alloc = alloc  # nbytes -> (host uint8 numpy view, backing object)
        self._sets: list[dict[int, tuple[np.ndarray, Any]]] = [{}, {}]
        self._events: list[Any] = [None, None]
        self._turn = 0
        self.lock = threading.Lock()  # held by the caller from begin() to end()

    def begin(self) -> int:
        """Take the next set of buffers, once its previous copy has completed."""
        turn, self._turn = self._turn, 1 - self._turn
        if self._events[turn] is not None:
            self._events[turn].synchronize()
        return turn

    def stage(self, turn: int, slot: int, a: np.ndarray) -> Any:
        """Copy ``a`` into buffer ``slot`` of set ``turn``; return the backing object (grown as needed)."""
        nbytes = a.nbytes
        have = self._sets[turn].get(slot)
        if have is None or have[0].shape[0] < nbytes:
            have = self._alloc(max(1, nbytes + nbytes // 8))
            self._sets[turn][slot] = have
        host, backing = have
        np.copyto(host[:nbytes], np.ascontiguousarray(a).reshape(-1).view(np.uint8))
        return backing

    def end(self, turn: int, event: Any) -> None:
        """Record the event after which set ``turn`` may be overwritten."""
        self._events[turn] = event


class ArrayOps:
    """Array operations of a numpy-like module: ``numpy`` (host) or ``cupy`` (the current CUDA device)."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.name = xp.__name__
        self.on_gpu = self.name == "cupy"
        if self.on_gpu:
            import cupyx

            self._stream = xp.cuda.Stream(non_blocking=True)

            def alloc(n: int) -> tuple[np.ndarray, Any]:
                host = cupyx.empty_pinned((n,), dtype=np.uint8)
                return host, host

            self._staging = _Staging(alloc)

    # -- moving a block --------------------------------------------------------------------
    def put(self, arrays: list[np.ndarray]) -> Any:
        """Start moving host ``arrays`` to the device; return a handle for :meth:`ready`."""
        if not self.on_gpu:
            return arrays
        xp, stream = self.xp, self._stream
        with self._staging.lock:  # one block at a time (an epoch left early may still have its reader running)
            # device memory freed by the consumer's stream may be handed out again here: copy after its queued work
            stream.wait_event(xp.cuda.get_current_stream().record())
            turn = self._staging.begin()
            out = []
            for slot, a in enumerate(arrays):
                host = self._staging.stage(turn, slot, a)
                dev = xp.empty(a.nbytes, dtype=np.uint8)
                dev.set(host[: a.nbytes], stream=stream)
                out.append(dev.view(a.dtype).reshape(a.shape))
            event = stream.record()
            self._staging.end(turn, event)
        return out, event

    def ready(self, handle: Any) -> list[Any]:
        """Return the device arrays of :meth:`put`'s handle, usable on the current stream."""
        if not self.on_gpu:
            return handle
        out, event = handle
        self.xp.cuda.get_current_stream().wait_event(event)
        return out

    def to_host(self, a: Any) -> np.ndarray:
        """Return ``a`` as a numpy array."""
        return self.xp.asnumpy(a) if self.on_gpu else np.asarray(a)

    def column(self, values: np.ndarray) -> Any:
        """Move a whole obs column to the device (once per loader and process)."""
        return self.xp.asarray(values)

    # -- the gather's operations -----------------------------------------------------------
    def take(self, a: Any, idx: Any) -> Any:
        """Rows ``idx`` of ``a`` (along the first axis)."""
        return self.xp.take(a, idx, axis=0)

    def concat(self, parts: list[Any]) -> Any:
        """Concatenate along the first axis (no copy for one part)."""
        return parts[0] if len(parts) == 1 else self.xp.concatenate(parts)

    def cumsum0(self, lens: Any) -> Any:
        """``[0, cumsum(lens)...]`` in ``int64``."""
        xp = self.xp
        return xp.concatenate([xp.zeros(1, dtype=np.int64), xp.cumsum(lens, dtype=np.int64)])

    def repeat(self, values: Any, counts: Any, total: int) -> Any:
        """Each of ``values`` repeated ``counts`` times (``total`` values in all)."""
        xp = self.xp
        if not self.on_gpu:
            return xp.repeat(values, counts)
        # cupy.repeat takes no array of counts: the run each output position falls in
        ends = xp.cumsum(counts, dtype=np.int64)
        return values[xp.searchsorted(ends, xp.arange(total, dtype=np.int64), side="right")]

    def arange(self, n: int) -> Any:
        """``0 .. n-1`` in ``int64``."""
        return self.xp.arange(n, dtype=np.int64)

    def astype(self, a: Any, dtype: np.dtype) -> Any:
        """Cast ``a`` to numpy dtype ``dtype`` (no copy when it already is)."""
        return a.astype(dtype, copy=False)

    def scalar(self, a: Any) -> int:
        """Return a one-element array as a Python int (synchronises a GPU)."""
        return int(a)


class TorchOps:
    """Array operations of torch on ``device`` (``"cuda"``, ``"cuda:1"``, or ``"cpu"``: the same code, no streams)."""

    name = "torch"

    def __init__(self, device: Any) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.on_gpu = self.device.type == "cuda"
        if self.on_gpu:
            if self.device.index is None:  # the reading thread must use the consumer's device, not its own default
                self.device = torch.device("cuda", torch.cuda.current_device())
            self._stream = torch.cuda.Stream(device=self.device)

            def alloc(n: int) -> tuple[np.ndarray, Any]:
                host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
                return host.numpy(), host

            self._staging = _Staging(alloc)

    def _dtype(self, dtype: np.dtype) -> Any:
        return self.torch.from_numpy(np.empty(0, dtype=dtype)).dtype

    # -- moving a block --------------------------------------------------------------------
    def put(self, arrays: list[np.ndarray]) -> Any:
        """Copy host ``arrays`` to the device, each as one byte transfer; return a handle for :meth:`ready`."""
        torch = self.torch
        if not self.on_gpu:
            out = []
            for a in arrays:
                dev = torch.empty(a.nbytes, dtype=torch.uint8, device=self.device)
                dev.copy_(torch.from_numpy(np.ascontiguousarray(a).reshape(-1).view(np.uint8)))
                out.append(dev.view(self._dtype(a.dtype)).reshape(a.shape))
            return out, None
        with self._staging.lock:  # one block at a time (an epoch left early may still have its reader running)
            turn = self._staging.begin()
            out = []
            with torch.cuda.stream(self._stream):
                for slot, a in enumerate(arrays):
                    host = self._staging.stage(turn, slot, a)
                    dev = torch.empty(a.nbytes, dtype=torch.uint8, device=self.device)
                    dev.copy_(host[: a.nbytes], non_blocking=True)
                    out.append(dev.view(self._dtype(a.dtype)).reshape(a.shape))
                event = self._stream.record_event()
            self._staging.end(turn, event)
        return out, event

    def ready(self, handle: Any) -> list[Any]:
        """Return the device tensors of :meth:`put`'s handle, usable on the current stream."""
        out, event = handle
        if event is not None:
            current = self.torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for t in out:
                t.record_stream(current)  # the allocator must not reuse them before the consumer's work is done
        return out

    def to_host(self, a: Any) -> np.ndarray:
        """Return ``a`` as a numpy array."""
        return a.cpu().numpy()

    def column(self, values: np.ndarray) -> Any:
        """Move a whole obs column to the device (once per loader and process)."""
        return self.torch.from_numpy(np.ascontiguousarray(values)).to(self.device)

    # -- the gather's operations -----------------------------------------------------------
    def take(self, a: Any, idx: Any) -> Any:
        """Rows ``idx`` of ``a`` (along the first axis); unsigned integers go through a same-width signed view."""
        torch = self.torch
        signed = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}.get(a.dtype)
        if signed is not None:
            return a.view(signed).index_select(0, idx).view(a.dtype)
        return a.index_select(0, idx)

    def concat(self, parts: list[Any]) -> Any:
        """Concatenate along the first axis (no copy for one part)."""
        return parts[0] if len(parts) == 1 else self.torch.cat(parts)

    def cumsum0(self, lens: Any) -> Any:
        """``[0, cumsum(lens)...]`` in ``int64``."""
        torch = self.torch
        return torch.cat([torch.zeros(1, dtype=torch.int64, device=lens.device), torch.cumsum(lens, 0)])

    def repeat(self, values: Any, counts: Any, total: int) -> Any:
        """Each of ``values`` repeated ``counts`` times (``total`` values in all; no device sync)."""
        return self.torch.repeat_interleave(values, counts, output_size=total)

    def arange(self, n: int) -> Any:
        """``0 .. n-1`` in ``int64``."""
        return self.torch.arange(n, dtype=self.torch.int64, device=self.device)

    def astype(self, a: Any, dtype: np.dtype) -> Any:
        """Cast ``a`` to numpy dtype ``dtype`` (no copy when it already is).

        Unsigned integers widen through a same-width signed view and a mask,
        since torch's unsigned types have kernels for few operations.
        """
        torch, target = self.torch, self._dtype(dtype)
        bits = {torch.uint16: (torch.int16, 16), torch.uint32: (torch.int32, 32)}.get(a.dtype)
        if bits is not None and np.dtype(dtype).kind == "i" and np.dtype(dtype).itemsize * 8 > bits[1]:
            return a.view(bits[0]).to(target) & ((1 << bits[1]) - 1)
        return a.to(target)

    def scalar(self, a: Any) -> int:
        """Return a one-element tensor as a Python int (synchronises a GPU)."""
        return int(a.item())


def make_ops(output: str, device: Any) -> ArrayOps | TorchOps:
    """Return the ops of ``output``'s array library on ``device``: torch for ``"torch"``, cupy for ``"cupy"``, else numpy."""
    if output == "torch":
        return TorchOps("cpu" if device is None else device)
    if output == "cupy":
        import cupy

        return ArrayOps(cupy)
    return ArrayOps(np)
