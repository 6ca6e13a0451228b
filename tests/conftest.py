"""Session-wide test setup.

The offline guarantee is checked here for every test: an audit hook records
any attempt to open a non-loopback network connection (or resolve a
non-local host name), and the test that made it fails.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading

import pytest

from annshard.testing import forbid_network

_violations: list[str] = []
_lock = threading.Lock()


def _record(what: str) -> None:
    with _lock:
        _violations.append(what)


forbid_network(on_violation=_record)

# lamindb/lamin-setup must never try to reach the hub in tests
os.environ.setdefault("LAMIN_TESTING", "true")

# lamindb-setup reads its settings directory once, when it is imported: point it at a throwaway one so that
# tests never read or change the user's ~/.lamin (instances, current user); subprocesses inherit it
_lamin_settings = tempfile.mkdtemp(prefix="annshard-test-lamin-")
os.environ["LAMIN_SETTINGS_DIR"] = _lamin_settings
os.environ.pop("LAMIN_CURRENT_INSTANCE", None)
atexit.register(shutil.rmtree, _lamin_settings, True)


@pytest.fixture(autouse=True)
def _no_network():
    """Fail any test that attempted a network call outside the loopback range."""
    with _lock:
        _violations.clear()
    yield
    with _lock:
        seen = list(_violations)
        _violations.clear()
    if seen:
        pytest.fail("test attempted network access: " + "; ".join(seen[:5]), pytrace=False)


@pytest.fixture
def network_violations() -> list[str]:
    """The live list of network attempts recorded during the current test."""
    return _violations
