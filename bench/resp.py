"""A tiny blocking RESP client (hiredis parses the replies) for setup and measurement.

redis-benchmark drives the load; this only prefills keys, reads INFO and the like.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from typing import Any

import hiredis

Arg = bytes | str | int


class RespError(RuntimeError):
    pass


def encode(args: Sequence[Arg]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Client:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = hiredis.Reader()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def call(self, *args: Arg) -> Any:
        return self.pipeline([args])[0]

    def pipeline(self, commands: Iterable[Sequence[Arg]]) -> list[Any]:
        """Send all commands in one write, then read one reply per command."""
        payload = [encode(c) for c in commands]
        self.sock.sendall(b"".join(payload))
        replies = [self._reply() for _ in payload]
        errors = [r for r in replies if isinstance(r, hiredis.ReplyError)]
        if errors:
            raise RespError(f"{len(errors)} error replies, first: {errors[0]}")
        return replies

    def _reply(self) -> Any:
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            data = self.sock.recv(65536)
            if not data:
                raise RespError("connection closed by server")
            self.reader.feed(data)


def info(client: Client, section: str) -> dict[str, str]:
    text = client.call("INFO", section).decode()
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: v for k, v in pairs}


def ping(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with Client(port, host, timeout=0.5) as client:
            return client.call("PING") in (b"PONG", "PONG")
    except (OSError, RespError):
        return False


def set_many(port: int, keys: Iterable[bytes], value: bytes, batch: int = 100) -> int:
    """SET every key to ``value`` in pipelined batches on a fresh connection; returns the count.

    Small batches keep the servers' query buffers (counted in used_memory) small.
    """
    count = 0
    pending: list[tuple[Arg, ...]] = []
    with Client(port) as client:
        for key in keys:
            pending.append(("SET", key, value))
            if len(pending) == batch:
                count += len(client.pipeline(pending))
                pending = []
        if pending:
            count += len(client.pipeline(pending))
    return count
