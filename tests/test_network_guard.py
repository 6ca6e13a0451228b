"""The offline guard itself: it must flag outbound attempts and let loopback through."""

import socket
import sys


def test_guard_flags_outbound_connect(network_violations):
    # sys.audit raises the same event a real connect would, without sending anything
    sys.audit("socket.connect", None, ("192.0.2.1", 443))
    sys.audit("socket.getaddrinfo", "hub.lamin.ai", 443, 0, 0, 0)
    assert any("192.0.2.1" in v for v in network_violations)
    assert any("hub.lamin.ai" in v for v in network_violations)
    network_violations.clear()  # the test itself must not fail on purpose-made events


def test_loopback_is_allowed(network_violations):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname(), timeout=1)
    c.close()
    srv.close()
    assert network_violations == []
