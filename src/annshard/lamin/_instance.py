"""The current lamindb instance: a clear error without one, and a local one for the demo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from annshard._compat import instance_settings_file
from annshard._errors import AnnshardError

__all__ = [
    "NoInstanceError",
    "default_storage_root",
    "ensure_local_instance",
    "free_instance_name",
    "require_instance",
]

_HOW = (
    "create one with `lamin init --storage ./data` on the command line (or "
    "`ln.setup.init(storage='./data')` in Python), or connect to an existing one with `lamin connect OWNER/NAME`"
)


class NoInstanceError(AnnshardError, RuntimeError):
    """No lamindb instance is configured in this environment."""


def require_instance() -> Any:
    """Return the current instance's settings, or raise a clear error saying how to make one.

    Raises
    ------
    NoInstanceError
        If no lamindb instance is configured.
    """
    import lamindb_setup as ln_setup

    from ._offline import patch_is_on_hub

    patch_is_on_hub()  # a no-op when lamindb-setup already ran the plugin (see annshard.lamin._plugin)
    if not ln_setup.settings.is_configured:
        settings_dir = ln_setup.settings.settings_dir
        msg = f"no lamindb instance is configured (settings in {settings_dir}); {_HOW}"
        raise NoInstanceError(msg)
    return ln_setup.settings.instance


def default_storage_root() -> Path | None:
    """Return the default storage root when it is a local directory, else ``None``."""
    import lamindb as ln

    root = ln.settings.storage.root
    if getattr(root, "protocol", "file") not in {"file", "local", ""}:
        return None
    return Path(os.fspath(root)).resolve()


def ensure_local_instance(storage: str | os.PathLike[str], *, name: str | None = None) -> Any:
    """Connect to the local SQLite instance stored in ``storage``, creating it if needed.

    Re-running connects to the same instance: lamindb-setup keeps an instance's
    settings under its name, and the database file lives in
    ``storage/.lamindb/lamin.db``.

    Parameters
    ----------
    storage
        The instance's storage root (a local directory).
    name
        Instance name (default: the directory's name).

    Returns
    -------
    The instance settings.
    """
    import lamindb_setup as ln_setup

    from ._offline import patch_is_on_hub

    patch_is_on_hub()
    storage = Path(storage).resolve()
    name = name or storage.name
    if ln_setup.settings.is_configured:
        current = ln_setup.settings.instance
        if current.name == name and current.storage is not None and Path(current.storage.root_as_str) == storage:
            return current
    owner = ln_setup.settings.user.handle
    settings_file = Path(instance_settings_file(name, owner))
    elsewhere = _settings_storage(settings_file)
    if elsewhere is not None and elsewhere != storage:
        # lamindb-setup would connect to that instance under this name (init as well as connect), and the caller's
        # records and files would land in another directory's database
        msg = (
            f"a lamindb instance named {owner}/{name} already exists on this machine with its storage in "
            f"{elsewhere} (settings: {settings_file}), not in {storage}; pass another name (free_instance_name "
            f"picks one), or delete that settings file if {elsewhere} is gone"
        )
        raise ValueError(msg)
    db_file = storage / ".lamindb" / "lamin.db"
    if db_file.exists() and elsewhere is not None:
        ln_setup.connect(f"{owner}/{name}")
    else:
        storage.mkdir(parents=True, exist_ok=True)
        ln_setup.init(storage=str(storage), name=name)
    return ln_setup.settings.instance


def free_instance_name(storage: str | os.PathLike[str], base: str) -> str:
    """Return ``base`` if no instance of that name lives elsewhere on this machine, else ``base-<8 hex of storage>``.

    Re-running with the same ``storage`` gives the same name, so :func:`ensure_local_instance` reuses its instance;
    another directory (a second clone, a moved checkout) gets an instance of its own instead of another's database.
    """
    import hashlib

    import lamindb_setup as ln_setup

    storage = Path(storage).resolve()
    owner = ln_setup.settings.user.handle
    elsewhere = _settings_storage(Path(instance_settings_file(base, owner)))
    if elsewhere is None or elsewhere == storage:
        return base
    return f"{base}-{hashlib.sha1(str(storage).encode()).hexdigest()[:8]}"


def _settings_storage(settings_file: Path) -> Path | None:
    """Return the local storage root an instance settings file records (``None``: no file, or not a local root)."""
    try:
        lines = settings_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "lamindb_instance_storage_root":
            value = value.strip()
            if not value or "://" in value or value == "null":
                return None
            return Path(value).resolve()
    return None
