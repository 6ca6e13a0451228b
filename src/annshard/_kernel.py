"""The fused row gather: a batch's values and gene indices copied and widened in one native pass.

scipy's ``csr_row_index`` (:mod:`annshard._csr`) copies rows in their stored
dtypes; the loader then widens the gene indices (``uint16`` to ``int32``) in
a second pass, and stored counts are widened to ``float32`` by the read
thread before either. The numba kernel here reads the stored dtypes and
writes the output dtypes directly, one row at a time (any value dtype in,
``float32``/``float64`` out; ``uint16``/``int32``/``int64`` gene indices in,
``int32``/``int64`` out). When it is ready as a block is read, the block keeps
raw counts as stored (``uint8``/``uint16``) and the kernel widens them too
(:func:`narrow_values`, asked by :meth:`annshard._load._fetch.BlockReader.read`).

numba is optional (``annshard[fast]``) and never imported by ``import
annshard``. The kernel comes in two forms:

- compiled ahead of time (:mod:`annshard._kernel_aot`): an extension module in a
  per-user cache directory, built once per machine by a background subprocess,
  imported in milliseconds without numba. ``auto`` uses it from the first batch
  when it is there, and starts its build (once) when it is not.
- jit (``numba.njit``, ``cache=True``): its fixed cost per process is large next
  to what it saves: loading it from numba's cache takes ~0.3 s of CPU when numba
  is already imported (numba builds its type registries), ~0.8 s more when it is
  not, compiling ~1-1.7 s more, while it saves ~1 ns of CPU per value gathered
  (``docs/performance.md``). So without the built module, ``auto`` only compiles
  it once this process has gathered :data:`AUTO_AFTER_VALUES` values (a quarter
  of it when numba is already imported) on the scipy path (ski rental: a run never
  pays more than about twice the best choice made knowing its length), in a
  background thread; :func:`fused_kernel` returns ``None`` until it is ready and
  callers take the scipy path meanwhile.

``ANNSHARD_GATHER`` chooses the path: ``auto`` (default), ``aot`` (the built
module only, built in the calling thread when missing; an error when it cannot
be), ``numba`` (jit, compiled on first use in the calling thread; an error when
numba is missing), ``scipy`` (never numba, never a build) or ``numpy`` (the
pure-numpy fallback of :func:`annshard._csr.row_gather`, for testing it).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AUTO_AFTER_VALUES", "GATHER_ENV", "fused_kernel", "gather_mode", "narrow_values", "note_gathered"]

GATHER_ENV = "ANNSHARD_GATHER"
AUTO_AFTER_VALUES = 1_000_000_000
"""Values gathered on the scipy path before ``auto`` jit-compiles the kernel (~650k cells of 1,500 values).

Its fixed cost's worth: ~1.2 s of CPU (import numba, load the kernel from numba's cache) over the ~1.2 ns per value
the kernel saves once blocks keep raw counts as stored (round 5: the gather's pass and the read threads' widening;
~0.6 ns on values stored as floats). A quarter of it when numba is already imported (anndata imports it when
dask and pydata-sparse are installed): then loading the kernel costs ~0.3 s. Not used when the ahead-of-time
module (:mod:`annshard._kernel_aot`) is built: it costs nothing to load.
"""
_MODES = ("auto", "aot", "numba", "scipy", "numpy")
_IN_DATA = frozenset("float32 float64 uint8 uint16 uint32 int8 int16 int32".split())
_IN_INDEX = frozenset(("uint16", "int32", "int64"))
_OUT_DATA = frozenset(("float32", "float64"))
_OUT_INDEX = frozenset(("int32", "int64"))
_AOT_KEYS = frozenset(
    (i, d, "int32", "float64" if d == "float64" else "float32")
    for i in ("uint16", "int32")
    for d in ("uint8", "uint16", "float32", "float64")
)  # annshard._kernel_aot.AOT_KEYS, without importing it

_lock = threading.Lock()
_ready: dict[tuple[str, str, str, str], Callable[..., int] | None] = {}  # None: failed, never retried
_pending: set[tuple[str, str, str, str]] = set()
_gathered = 0  # values this process gathered on the scipy path (note_gathered)
_no_compiles = False  # set in a process forked while a compile was running (numba's locks may be held)
_aot: dict[str, Any] = {"tried": False, "module": None, "path": None, "build": None}  # the built module's state


def gather_mode() -> str:
    """Return the gather path chosen by ``ANNSHARD_GATHER`` (``auto`` unless set).

    Raises
    ------
    ValueError
        If the variable holds anything else than ``auto``, ``aot``, ``numba``, ``scipy`` or ``numpy``.
    """
    mode = os.environ.get(GATHER_ENV, "auto").strip().lower() or "auto"
    if mode not in _MODES:
        msg = f"environment variable {GATHER_ENV}={mode!r} is not one of {', '.join(_MODES)}; unset it or pick one"
        raise ValueError(msg)
    return mode


def fused_kernel(
    indices: np.dtype, data: np.dtype, out_indices: np.dtype, out_data: np.dtype
) -> Callable[..., int] | None:
    """Return the compiled fused gather for these dtypes, or ``None`` (not compiled yet, no numba, not supported).

    The kernel is called as ``kernel(rows, indptr, indices, data, out_indices,
    out_data)`` with 1-D C-contiguous arrays (``rows`` and ``indptr`` ``int64``)
    and returns the number of values written, or ``-1`` when a row or a row pointer is
    out of range or the outputs are too short (nothing is read or written out of bounds). In ``auto`` mode a
    combination of :data:`annshard._kernel_aot.AOT_KEYS` comes from the built module (the first call starts its
    build when it is missing, and returns ``None`` until it is there); any other combination, or any when the
    module cannot be built, is jit-compiled in a background thread by the first call past
    :data:`AUTO_AFTER_VALUES`, ``None`` until then.
    """
    mode = gather_mode()
    if mode in ("scipy", "numpy"):
        return None
    key = (np.dtype(indices).name, np.dtype(data).name, np.dtype(out_indices).name, np.dtype(out_data).name)
    kernel = _ready.get(key)
    if kernel is not None or not _supported(key):
        return kernel
    if mode == "aot" or (mode == "auto" and key in _AOT_KEYS):
        kernel = _aot_kernel(key, wait=mode == "aot")
        if kernel is not None or mode == "aot" or (mode == "auto" and _aot["build"] is not None):
            return kernel  # auto while the module is being built: scipy's path, no jit compile that it replaces
    if mode == "numba":
        if importlib.util.find_spec("numba") is None:
            msg = f"{GATHER_ENV}=numba but numba is not installed; `pip install annshard[fast]` or unset {GATHER_ENV}"
            raise ImportError(msg)
        if key not in _ready:
            _compile(key)
        return _ready.get(key)
    if key in _ready or _gathered < (AUTO_AFTER_VALUES // 4 if sys.modules.get("numba") else AUTO_AFTER_VALUES):
        return None
    with _lock:
        if key in _pending or key in _ready or _no_compiles:
            return None
        if importlib.util.find_spec("numba") is None:
            _ready[key] = None
            return None
        _pending.add(key)
    threading.Thread(target=_compile, args=(key,), name="numba-compile[annshard._kernel]").start()
    return None


def narrow_values(stored: set[Any], indices: np.dtype, values: np.dtype) -> np.dtype | None:
    """Return the dtype a block keeps its values in (raw counts as stored), or ``None`` (widened to ``values``).

    ``stored`` holds the dtypes the block's readers decode into (one per shard). Only one unsigned integer dtype,
    narrower than ``values``, and only when the kernel widening it as it gathers is ready (:func:`fused_kernel`
    for ``int32`` batch gene indices): blocks read before it is ready are widened on read, as without it.
    """
    if len(stored) != 1:
        return None
    (dtype,) = stored
    if not isinstance(dtype, np.dtype) or dtype.kind != "u" or dtype == values:
        return None
    return dtype if fused_kernel(indices, dtype, np.dtype(np.int32), values) is not None else None


def note_gathered(n_values: int) -> None:
    """Count ``n_values`` gathered without the kernel (``auto`` compiles it past :data:`AUTO_AFTER_VALUES`)."""
    global _gathered  # one process-wide count; a lost update between threads only delays compiling
    _gathered += n_values


def _aot_kernel(key: tuple[str, str, str, str], *, wait: bool) -> Callable[..., int] | None:
    """Return the built module's function for ``key`` (loaded once per process; a missing module is built)."""
    from annshard import _kernel_aot

    if key not in _AOT_KEYS:
        if wait:
            msg = f"{GATHER_ENV}=aot: no kernel compiled ahead of time for {key}; use {GATHER_ENV}=numba or auto"
            raise ValueError(msg)
        return None
    with _lock:
        if not _aot["tried"]:
            _aot["tried"] = True
            _aot["path"] = path = _kernel_aot.module_path(_gather)
            _aot["module"] = None if path is None else _kernel_aot.load(path)
            if _aot["module"] is None and path is not None and not _no_compiles:
                _aot["build"] = _kernel_aot.start_build(path)
        build = _aot["build"]
        if build is not None and (wait or build.poll() is not None):
            build.wait()
            _aot["build"] = None
            _aot["module"] = _kernel_aot.load(_aot["path"])
        module = _aot["module"]
    if module is None:
        if wait:
            where = _aot["path"]
            msg = f"{GATHER_ENV}=aot but the kernel could not be built or loaded ({where}; numba, setuptools and a C compiler are needed; see {where}.failed)"
            raise ImportError(msg)
        return None
    kernel = getattr(module, _kernel_aot.symbol(key))
    with _lock:
        _ready[key] = kernel
    return kernel


def _supported(key: tuple[str, str, str, str]) -> bool:
    i, d, oi, od = key
    if not (i in _IN_INDEX and d in _IN_DATA and oi in _OUT_INDEX and od in _OUT_DATA):
        return False
    return np.can_cast(i, oi, casting="safe") and (od == "float64" or d != "float64")


def _compile(key: tuple[str, str, str, str]) -> None:
    """Compile (or load from numba's cache) the kernel for ``key`` and publish it; a failure disables it."""
    kernel: Callable[..., int] | None = None
    try:
        import numba

        i, d, oi, od = key
        sig = f"int64(int64[::1], int64[::1], {i}[::1], {d}[::1], {oi}[::1], {od}[::1])"
        try:
            kernel = numba.njit([sig], nogil=True, cache=True, boundscheck=False)(_gather)
        except RuntimeError:  # no writable cache directory ("cannot cache function"): compile without one
            kernel = numba.njit([sig], nogil=True, boundscheck=False)(_gather)
    except Exception:  # noqa: BLE001 - any numba trouble: the scipy path stays
        kernel = None
    with _lock:
        _ready[key] = kernel
        _pending.discard(key)


def _after_fork_in_child() -> None:
    global _no_compiles  # module state reset in a forked child
    if _pending:
        _no_compiles = True
        _pending.clear()
    _aot["build"] = None  # the parent's subprocess; the parent loads what it builds


os.register_at_fork(after_in_child=_after_fork_in_child)


def _gather(
    rows: Any, indptr: Any, indices: Any, data: Any, out_indices: Any, out_data: Any
) -> int:  # pragma: no cover - runs compiled
    """Copy rows ``rows`` one after the other, casting to the outputs' dtypes; the values written, or -1."""
    e = 0
    cap = min(out_indices.shape[0], out_data.shape[0])
    size = min(indices.shape[0], data.shape[0])
    for i in range(rows.shape[0]):
        r = rows[i]
        if r < 0 or r + 1 >= indptr.shape[0]:
            return -1
        a = indptr[r]
        n = indptr[r + 1] - a
        if a < 0 or n < 0 or a + n > size or e + n > cap:
            return -1
        src_d = data[a : a + n]
        src_i = indices[a : a + n]
        dst_d = out_data[e : e + n]
        dst_i = out_indices[e : e + n]
        for j in range(n):
            dst_d[j] = src_d[j]
            dst_i[j] = src_i[j]
        e += n
    return e
