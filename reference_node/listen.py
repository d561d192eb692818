"""Listening sockets for every listener of the node: dual-stack for `[::]`, and a clear error on a clash.

asyncio's own servers set IPV6_V6ONLY on an IPv6 wildcard socket, so `[::]:443` would refuse IPv4 clients
(Kubernetes probes, Docker's HEALTHCHECK on 127.0.0.1, IPv4 peers). These sockets accept both, and a port
that is taken is reported as which listener could not bind where, not as a traceback.
"""

from __future__ import annotations

import socket

from trustchain.errors import TrustChainError

__all__ = ["ListenError", "bind_socket"]


class ListenError(TrustChainError, ValueError):
    """A listener could not bind (address in use, unknown host, no permission)."""


def bind_socket(what: str, host: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
    """A bound non-blocking socket (listening if TCP) for `host:port`; `what` names the setting in errors."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ListenError(f"{what}: cannot resolve {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6 and address[0] == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 clients too
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        raise ListenError(f"{what}: cannot listen on {shown}:{port}: {exc.strerror or exc}") from None
    return sock
