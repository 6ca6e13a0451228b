"""Proving that code stays offline: an audit hook that flags any non-loopback network attempt.

annshard (and lamindb through it) must work with no network. The hook sees
``socket.connect`` and ``socket.getaddrinfo`` (Python raises these audit
events before any packet leaves), lets loopback and unix sockets through, and
reports everything else: to a callback (tests record it and fail the test), or
by ending the process with an exit code (for subprocesses).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["forbid_network", "is_local_address"]

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "", None}


def is_local_address(host: object) -> bool:
    """Whether ``host`` (a name, an IP address or a unix socket path) stays on this machine."""
    if isinstance(host, bytes):
        host = host.decode()
    if host in _LOCAL_NAMES:
        return True
    if not isinstance(host, str):
        return False
    if host.startswith("/"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def forbid_network(*, on_violation: Callable[[str], None] | None = None, exit_code: int = 3) -> None:
    """Install an audit hook that catches every attempt to reach another machine.

    Audit hooks cannot be removed: call this once per process.

    Parameters
    ----------
    on_violation
        Called with a description of each attempt. Without it, the attempt is
        written to stderr and the process exits with ``exit_code`` at once.
    exit_code
        Exit code when no callback is given.

    Examples
    --------
    >>> from annshard.testing import forbid_network
    >>> forbid_network(on_violation=print)  # doctest: +SKIP
    """

    def audit(event: str, args: tuple) -> None:
        if event == "socket.connect":
            addr = args[1]
            host = addr[0] if isinstance(addr, tuple) else addr
        elif event == "socket.getaddrinfo":
            addr = host = args[0]
        else:
            return
        if is_local_address(host):
            return
        what = f"{event} {addr!r}"
        if on_violation is not None:
            on_violation(what)
            return
        sys.stderr.write(f"NETWORK VIOLATION: {what}\n")
        sys.stderr.flush()
        os._exit(exit_code)

    sys.addaudithook(audit)
