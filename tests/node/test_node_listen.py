"""Listeners on `[::]` accept IPv4 and IPv6 clients alike, and a taken port is a clear error."""

from __future__ import annotations

import socket

import pytest

from reference_node.listen import ListenError, bind_socket


def _connects(family: socket.AddressFamily, host: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(2)
        return client.connect_ex((host, port)) == 0


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_the_ipv6_wildcard_is_dual_stack() -> None:
    server = bind_socket("api.listen", "::", 0)
    try:
        port = server.getsockname()[1]
        assert _connects(socket.AF_INET, "127.0.0.1", port)
        assert _connects(socket.AF_INET6, "::1", port)
    finally:
        server.close()
    udp = bind_socket("dns.listen", "::", 0, socket.SOCK_DGRAM)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"ping", ("127.0.0.1", udp.getsockname()[1]))
        udp.settimeout(2)
        assert udp.recvfrom(16)[0] == b"ping"
    finally:
        udp.close()


def test_a_taken_port_names_the_listener_and_the_address() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=rf"^consensus.listen: cannot listen on 127.0.0.1:{port}: "):
            bind_socket("consensus.listen", "127.0.0.1", port)
    finally:
        taken.close()
    with pytest.raises(ListenError, match=r"api\.listen: cannot resolve"):
        bind_socket("api.listen", "no-such-host.invalid", 80)
