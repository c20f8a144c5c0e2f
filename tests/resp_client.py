"""A tiny blocking RESP2/RESP3 client for tests that must see *exact* replies.

redis-py and hiredis fold simple strings into bulk strings and sets into lists; the
differential tests and the COMMAND data generator need to tell them apart, so this
parser keeps every RESP type:

``+`` → ``Simple``, ``$`` → ``bytes``, ``:`` → ``int``, ``*`` → ``list``, ``%`` → ``dict``,
``~`` → ``SetReply`` (order kept), ``_`` → ``None``, ``$-1``/``*-1`` → ``NIL_BULK``/``NIL_ARRAY``, ``,`` → ``float``,
``#`` → ``bool``, ``=`` → ``Verbatim``, ``-`` → ``ReplyError`` (returned, not raised).
"""

from __future__ import annotations

import socket
from typing import Any

from proxy.resp import ReplyError, SetReply, Simple, Verbatim


class Incomplete(Exception):
    pass


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
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        raise Incomplete
    kind, line = buf[pos:pos + 1], buf[pos + 1:nl]
    pos = nl + 2
    if kind == b"+":
        return Simple(line.decode()), pos
    if kind == b"-":
        return ReplyError(line.decode(errors="replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"_":
        return None, pos
    if kind == b"#":
        return line == b"t", pos
    if kind == b",":
        return float(line), pos
    if kind in (b"$", b"="):
        size = int(line)
        if size < 0:
            return NIL_BULK, pos
        if len(buf) < pos + size + 2:
            raise Incomplete
        data = buf[pos:pos + size]
        pos += size + 2
        if kind == b"=":
            return Verbatim(data[4:].decode(errors="replace")), pos
        return data, pos
    if kind in (b"*", b"~", b">"):
        count = int(line)
        if count < 0:
            return NIL_ARRAY, pos
        items = []
        for _ in range(count):
            item, pos = _parse(buf, pos)
            items.append(item)
        return (SetReply(items) if kind == b"~" else items), pos
    if kind == b"%":
        out = {}
        for _ in range(int(line)):
            k, pos = _parse(buf, pos)
            v, pos = _parse(buf, pos)
            out[k if not isinstance(k, list) else tuple(k)] = v
        return out, pos
    raise ValueError(f"unknown RESP type {kind!r}")


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
