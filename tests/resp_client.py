"""A tiny blocking RESP2/RESP3 client for tests that must see *exact* replies.

redis-py and hiredis fold simple strings into bulk strings and sets into lists; the
differential tests need to tell them apart, so replies are read with the proxy's
type-keeping parser (``proxy.resp.parse_typed``: ``+`` → ``Simple``, ``~`` → ``SetReply``,
``=`` → ``Verbatim``, ``-`` → ``ReplyError`` returned, not raised...), with RESP2's two nulls
``$-1``/``*-1`` kept apart from RESP3's ``_`` (``None``) as ``NIL_BULK``/``NIL_ARRAY``.
"""

from __future__ import annotations

import socket
from typing import Any

from redquorum.protocol.resp import Incomplete, parse_typed

__all__ = ["NIL_ARRAY", "NIL_BULK", "Incomplete", "RawClient", "encode_command"]


class _Nil:
    """RESP2's two nulls, kept apart from RESP3's ``_`` (None) so tests see which came."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NIL_BULK = _Nil("NIL_BULK")  # $-1
NIL_ARRAY = _Nil("NIL_ARRAY")  # *-1


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    return parse_typed(buf, pos, null_bulk=NIL_BULK, null_array=NIL_ARRAY)


def encode_command(args: list[bytes | str | int]) -> bytes:
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


class RawClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, *args: bytes | str | int) -> None:
        self.sock.sendall(encode_command(list(args)))

    def read(self) -> Any:
        while True:
            try:
                value, pos = _parse(self.buf, 0)
            except Incomplete:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("connection closed") from None
                self.buf += data
                continue
            self.buf = self.buf[pos:]
            return value

    def call(self, *args: bytes | str | int) -> Any:
        self.send(*args)
        return self.read()

    def pipeline(self, commands: list[list[bytes | str | int]]) -> list[Any]:
        self.sock.sendall(b"".join(encode_command(c) for c in commands))
        return [self.read() for _ in commands]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
