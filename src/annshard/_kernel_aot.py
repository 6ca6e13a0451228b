"""The fused gather compiled ahead of time: an extension module in a per-user cache, loaded without numba.

Loading the jit kernel (:mod:`annshard._kernel`) costs ~0.3 s of CPU per process even from numba's cache
(numba builds its CPU target's type registries first), ~0.8 s more when numba is not imported yet; over two
epochs of 200k cells that eats most of what the kernel saves. numba's ahead-of-time compiler (``numba.pycc``)
instead writes the same kernel, for the dtype combinations the loader meets (:data:`AOT_KEYS`), as a CPython
extension module; importing it takes milliseconds and does not import numba. It is built once per machine
and interpreter, by a background subprocess at low priority (``python -c``, this package imported from its directory; numba, setuptools
and a C compiler are needed for the build only), into :func:`cache_dir` under a name that hashes the kernel's
source, numba's and Python's versions; a process that finds it there loads it (:func:`load`).

The build patches pycc's compile flags so that the exported wrappers release the GIL (``nogil``, as the jit
kernel), and targets the generic CPU of the platform (a cache directory may be shared between machines).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import inspect
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AOT_KEYS",
    "CACHE_ENV",
    "build",
    "build_or_mark",
    "cache_dir",
    "load",
    "module_path",
    "start_build",
    "symbol",
]

CACHE_ENV = "ANNSHARD_CACHE_DIR"
AOT_KEYS: tuple[tuple[str, str, str, str], ...] = tuple(
    (i, d, "int32", "float64" if d == "float64" else "float32")
    for i in ("uint16", "int32")
    for d in ("uint8", "uint16", "float32", "float64")
)
"""(stored gene indices, stored values, batch gene indices, batch values) compiled ahead of time: raw counts
(``uint8``/``uint16`` through ``fixedscaleoffset``) and ``float32``/``float64`` values, ``uint16`` gene indices
(fewer than 65,536 genes) or ``int32``, into ``int32`` gene indices. Others take the jit kernel."""


def symbol(key: tuple[str, str, str, str]) -> str:
    """Name of the exported function for ``key`` in the module."""
    return "gather__" + "__".join(key)


def cache_dir() -> Path:
    """Where built kernels live: ``$ANNSHARD_CACHE_DIR``, else ``$XDG_CACHE_HOME/annshard``, else ``~/.cache/annshard``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "annshard"


def _module_name(kernel: Callable[..., int]) -> str | None:
    spec = importlib.util.find_spec("numba")
    if spec is None or spec.origin is None:
        return None
    numba_dir = Path(spec.origin).parent
    version = (numba_dir / "_version.py").read_bytes() if (numba_dir / "_version.py").exists() else b""
    h = hashlib.sha256()
    for part in (
        inspect.getsource(kernel).encode(),
        version,
        sys.version.encode(),
        platform.machine().encode(),
        repr(AOT_KEYS).encode(),
    ):
        h.update(part)
        h.update(b"\0")
    return f"_annshard_gather_{h.hexdigest()[:16]}"


def module_path(kernel: Callable[..., int]) -> Path | None:
    """Path of the built module of ``kernel`` (its Python source), numba and Python (``None``: no numba installed)."""
    name = _module_name(kernel)
    if name is None:
        return None
    return cache_dir() / "kernels" / (name + importlib.machinery.EXTENSION_SUFFIXES[0])


def load(path: Path) -> Any | None:
    """Import the built module at ``path``; ``None`` when it is missing or not safe to load.

    Only a regular file owned by this user (or root) and not writable by others is loaded.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file() or st.st_uid not in (os.getuid(), 0) or st.st_mode & 0o022:
        return None
    name = path.name.split(".")[0]
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - a damaged or foreign file: the jit or scipy path stays
        return None
    return module


def start_build(path: Path) -> subprocess.Popen[bytes] | None:
    """Start building the module at ``path`` in a background subprocess (niced); ``None`` if it does not start.

    The build writes into a temporary file beside ``path`` and renames it into place, so concurrent builds never
    expose a partial file. One build at a time per path (a ``.lock`` file, stale after 10 minutes); a failed
    build leaves ``<path>.failed`` (its traceback), and no build is tried again while it is there.
    """
    lock, failed = _marker(path, "lock"), _marker(path, "failed")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if failed.exists():
            return None
        with contextlib.suppress(FileNotFoundError):
            if time.time() - lock.stat().st_mtime > 600:
                lock.unlink()
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:  # another build is running, or no writable cache directory
        return None
    cmd = [sys.executable, "-c", _BOOT, str(Path(__file__).resolve().parents[1]), str(path)]
    try:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    except Exception:  # noqa: BLE001 - no subprocess here: the jit or scipy path stays
        with contextlib.suppress(OSError):
            lock.unlink()
        return None


def _marker(path: Path, what: str) -> Path:
    return path.with_name(path.name + "." + what)


# the build process: this package importable from its source directory, whatever the parent's sys.path was
_BOOT = (
    "import os, sys; os.nice(10); sys.path.insert(0, sys.argv[1]); "
    "from annshard._kernel import _gather; from annshard._kernel_aot import build_or_mark; "
    "build_or_mark(sys.argv[2], _gather)"
)


def build_or_mark(path: str | Path, kernel: Callable[..., int]) -> None:
    """:func:`build`, then drop the ``.lock``; on failure write ``<path>.failed`` with the traceback."""
    import traceback

    path = Path(path)
    try:
        build(path, kernel)
    except Exception:  # noqa: BLE001 - recorded for the user, and no retry loop
        with contextlib.suppress(OSError):
            _marker(path, "failed").write_text(traceback.format_exc())
    finally:
        with contextlib.suppress(OSError):
            _marker(path, "lock").unlink()


def build(path: str | Path, kernel: Callable[..., int]) -> None:
    """Compile ``kernel`` for :data:`AOT_KEYS` with ``numba.pycc`` into the extension module ``path`` (atomically)."""
    import warnings

    from annshard._store._atomic import replace_file

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending deprecation
        from numba.pycc import CC
        from numba.pycc import compiler as pycc_compiler

    base = pycc_compiler.Flags

    class _NoGil(base):  # the exported wrappers release the GIL, as the jit kernel (nogil=True)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = _NoGil
    name = path.name.split(".")[0]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-") as tmp:
        cc = CC(name)
        cc.output_dir = tmp
        cc.verbose = False
        for key in AOT_KEYS:
            i, d, oi, od = key
            cc.export(symbol(key), f"int64(int64[::1], int64[::1], {i}[::1], {d}[::1], {oi}[::1], {od}[::1])")(kernel)
        cc.compile()
        built = [p for p in Path(tmp).iterdir() if p.name.startswith(name + ".") and p.suffix in (".so", ".pyd")]
        if len(built) != 1:
            msg = f"numba.pycc built {[p.name for p in Path(tmp).iterdir()]} in {tmp}, not one module {name}"
            raise RuntimeError(msg)
        built[0].chmod(0o755)
        replace_file(built[0], path)
    with contextlib.suppress(OSError):
        path.parent.chmod(0o700)
