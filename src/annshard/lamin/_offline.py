"""Keeping lamindb off the network for local instances.

lamindb 2.12 asks LaminHub whether the current instance is registered there
(``InstanceSettings.is_on_hub``, a network request whose answer is cached only
for the process) whenever it

- saves an artifact from a path outside the instance's storage root (this
  includes the script or notebook that ``ln.track()`` saves),
- finishes a run (``ln.finish()``, to print the hub's URL of the run),
- creates a storage location.

Offline that request raises after ~2 s of retries, or hangs where the network
swallows packets, so ``ln.track()`` fails on a laptop in a train.

The answer is known without asking for a *local* instance: lamindb-setup
registers an instance on the hub at ``init`` only when its storage or its
database is remote (``check_is_instance_remote``); a local SQLite file, or a
Postgres server on ``localhost`` / ``127.0.0.1``, with a local storage root is
never registered, and an instance connected *from* the hub arrives with
``is_on_hub=True`` already set. annshard's lamindb-setup plugin
(:mod:`annshard.lamin._plugin`, run on ``import lamindb_setup``) therefore wraps
the property: for such an instance whose answer is not yet known it answers
``False`` without a request. For every other instance lamindb's own code runs.

The behaviour is chosen by the environment variable ``ANNSHARD_LAMIN_HUB``:

``"auto"`` (default)
    local instances answer without the network, others ask the hub.
``"offline"``
    no instance asks the hub; an unknown answer is ``False`` (for air-gapped
    machines with an instance that lamindb thinks is remote, e.g. a Postgres
    server on another host of the local network).
``"lamindb"``
    lamindb's own behaviour (always ask).

annshard itself also avoids the other path: it registers collections in place
inside a storage root and copies a collection from elsewhere into the storage
root itself, so lamindb never has to "upload" a file.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from annshard._compat import instance_settings_class, is_on_hub_cache, set_is_on_hub_cache

__all__ = ["HUB_ENV", "answers_locally", "hub_mode", "patch_is_on_hub"]

HUB_ENV = "ANNSHARD_LAMIN_HUB"
_MARK = "__annshard_offline__"


def hub_mode() -> Literal["auto", "offline", "lamindb"]:
    """Return the hub policy chosen by ``ANNSHARD_LAMIN_HUB`` (default ``"auto"``)."""
    value = os.environ.get(HUB_ENV, "auto").strip().lower()
    if value in {"offline", "off", "0", "false", "no"}:
        return "offline"
    if value in {"lamindb", "on", "1", "true", "yes"}:
        return "lamindb"
    return "auto"


def answers_locally(isettings: Any) -> bool:
    """Whether ``isettings.is_on_hub`` is known to be ``False`` without asking the hub.

    Parameters
    ----------
    isettings
        A ``lamindb_setup.core.InstanceSettings``.
    """
    if is_on_hub_cache(isettings) is not None:
        return False  # already known (set when connected from the hub, or asked before)
    mode = hub_mode()
    if mode == "lamindb":
        return False
    if mode == "offline":
        return True
    try:
        if getattr(isettings, "api_url", None) is not None:  # managed by the hub
            return False
        if isettings.storage is None:
            return True  # no instance ("none/none")
        return not isettings.is_remote
    except Exception:  # noqa: BLE001 - never break lamindb because of this check
        return False


def patch_is_on_hub() -> bool:
    """Wrap ``InstanceSettings.is_on_hub`` so local instances never ask the hub.

    Idempotent; returns whether the property is (now) wrapped.
    """
    InstanceSettings = instance_settings_class()
    if InstanceSettings is None:  # pragma: no cover - lamindb-setup without this module
        return False
    current = InstanceSettings.__dict__.get("is_on_hub")
    if not isinstance(current, property) or current.fget is None:
        return False
    if getattr(current.fget, _MARK, False):
        return True
    original = current.fget

    def is_on_hub(self: Any) -> bool:
        if answers_locally(self):
            set_is_on_hub_cache(self, False)
        return original(self)

    is_on_hub.__doc__ = original.__doc__
    setattr(is_on_hub, _MARK, True)
    is_on_hub.__wrapped__ = original  # type: ignore[attr-defined]
    InstanceSettings.is_on_hub = property(is_on_hub, current.fset, current.fdel, current.__doc__)  # type: ignore[method-assign]
    return True
