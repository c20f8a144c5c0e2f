"""The client listener socket."""

from __future__ import annotations

import errno
import socket


class AddressInUse(OSError):
    pass


def bind_listener(address: tuple[str, int], *, reuse_port: bool = False) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(exc.errno, f"{host}:{port} is already in use (another redquorum "
                               f"or redis-server?); choose another address") from None
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock
