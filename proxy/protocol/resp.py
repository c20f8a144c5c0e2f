"""Sans-IO RESP codec: bytes in, commands or replies out; values in, bytes out.

No trio here. Two parsers with different trust:

* ``RequestParser`` reads what clients send. Well-formed multibulk requests are framed
  by hiredis (0.16 µs a command against 1.9 µs in Python); everything else (inline
  commands, malformed or oversized headers, elements that are not bulk strings) is
  handed to a small resumable Python parser with Redis's own limits and error texts.
* ``ReplyParser`` reads what our own redis-server replicas answer: hiredis, fast.
* ``parse_typed`` reads one reply keeping every RESP3 type apart (simple vs bulk strings,
  sets, maps, verbatim...), which hiredis folds together. It is slow and not resumable;
  it serves the rare replies that are passed on as they are (COMMAND INFO / DOCS,
  proxy/commanddata.py) and the tests' exact client.

Replies are encoded from plain Python values; see ``encode``.
"""

from __future__ import annotations

import re
from typing import Any

import hiredis

from .replies import Push, ReplyError, SetReply, Simple, Verbatim

__all__ = [
    "ProtocolError",
    "RequestParser",
    "ReplyParser",
    "Incomplete",
    "parse_typed",
    "ReplyError",
    "Simple",
    "Verbatim",
    "Push",
    "NullArray",
    "SetReply",
    "encode",
    "command",
    "encode_command",
    "OK",
    "PONG",
    "NIL",
]

MAX_INLINE = 64 * 1024
MAX_MULTIBULK = 1024 * 1024
MAX_BULK = 512 * 1024 * 1024
MAX_HEADER = 64  # "*<count>\r\n" or "$<len>\r\n" never needs more
# Redis's limits for a client that has not authenticated yet (networking.c)
UNAUTH_MULTIBULK = 10
UNAUTH_BULK = 16384
# An array header hiredis would allocate a list for before its elements arrive.
_BIG_ARRAY = re.compile(rb"\*[0-9]{7}")


class ProtocolError(Exception):
    """The client broke the protocol; Redis replies with the text and closes."""


class _NullArray:
    __slots__ = ()


NullArray = _NullArray()


# ---------------------------------------------------------------------------
# requests


class RequestParser:
    """Feed bytes, take complete commands (lists of bytes) one at a time.

    Two gears. The fast one gives the bytes to hiredis and checks that each command it
    returns is an array of bulk strings. The slow one is a resumable Python parser that
    knows Redis's limits and error texts (and inline commands). Whatever hiredis
    refuses goes to the slow gear from the first command hiredis did not return: the
    bytes since the fast gear last consumed everything are kept, parsed again by the
    slow gear, and the commands already returned are skipped.

    Each read is scanned for what hiredis must not see: ``+``, ``=`` and ``(``
    elements, which it would return as bytes where Redis refuses them, and array
    headers of seven digits or more, for which it allocates the whole list at once (a
    value that only looks like either costs the slow gear for that read). And hiredis
    checks no header before its payload has arrived (``*1\\r\\n$999999999999`` gets
    an error from Redis at once), so a request left incomplete at the end of a read
    goes to the slow gear, which checks each header as it arrives, and comes back to
    hiredis once that request is complete.
    """

    __slots__ = ("_fast", "_can_fast", "_restricted", "_reader", "_window", "_taken", "_fed",
                 "_consumed", "_skip", "_resume", "_buf", "_pos", "_args", "_missing")

    def __init__(self, *, fast: bool = True) -> None:
        self._fast = fast  # False: the slow gear only (tests compare the two)
        self._can_fast = fast
        self._restricted = False  # Redis's limits before authentication
        self._reader: Any = hiredis.Reader() if fast else None  # None: the slow gear runs
        self._window: list[bytes] = []  # what hiredis was fed since it last consumed all
        self._taken = 0  # commands hiredis returned from the window
        self._fed = 0
        self._consumed = 0  # by the commands taken, as their canonical encoding
        self._skip = 0  # commands the slow gear parses again but must not return
        self._resume = False  # the slow gear holds one incomplete request, then hands back
        # The slow gear. bytes while requests are small (slicing bytes gives the
        # arguments without a second copy); a bytearray while a large request arrives in
        # pieces, so that appending stays linear.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._args: list[bytes] | None = None  # a multibulk in progress
        self._missing = 0

    def feed(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:
            self._feed_slow(data)
            return
        self._window.append(data)
        self._fed += len(data)
        reader.feed(data)
        if (b"\r\n+" in data or b"\r\n=" in data or b"\r\n(" in data
                or _BIG_ARRAY.search(data) is not None):
            self._slow_down()
        elif self._fed != len(data):  # the window holds an earlier read: check the seam
            seam = self._window[-2][-8:] + data[:8]
            if (b"\r\n+" in seam or b"\r\n=" in seam or b"\r\n(" in seam
                    or _BIG_ARRAY.search(seam) is not None):
                self._slow_down()

    def restrict(self) -> None:
        """Hold requests to Redis's limits for unauthenticated clients; the slow gear
        alone checks them, so it takes over until ``lift``."""
        self._restricted = True
        self._fast = False
        if self._reader is not None:
            self._slow_down()

    def lift(self) -> None:
        self._restricted = False
        self._fast = self._can_fast

    def buffered(self) -> int:
        if self._reader is not None:
            return self._fed - self._consumed
        return len(self._buf) - self._pos

    def next_command(self) -> list[bytes] | None:
        """The next complete command, ``None`` when more bytes are needed.

        An empty inline line yields ``[]``, which callers skip (as Redis does).
        """
        reader = self._reader
        if reader is None:
            return self._next_slow()
        try:
            cmd = reader.gets()
        except hiredis.ProtocolError:
            self._slow_down()
            return self._next_slow()
        if cmd is False:
            if self._fed == self._consumed:
                return None
            self._hand_over_incomplete()
            return self._next_slow()
        if type(cmd) is list and cmd:
            # What a canonical encoding of cmd takes: hiredis does not say how much it
            # consumed, and the window can be dropped only when it has consumed all.
            count = len(cmd)
            size = 4 if count < 10 else 3 + len(b"%d" % count)
            for arg in cmd:
                if type(arg) is not bytes:
                    break
                k = len(arg)
                size += k + (6 if k < 10 else 7 if k < 100 else 5 + len(b"%d" % k))
            else:
                consumed = self._consumed + size
                if consumed == self._fed:  # a clean start
                    self._window.clear()
                    self._taken = self._fed = self._consumed = 0
                else:
                    self._taken += 1
                    self._consumed = consumed
                return cmd
        self._slow_down()
        return self._next_slow()

    def _slow_down(self) -> None:
        """Hand the window to the slow gear, minus the commands hiredis already returned."""
        self._skip = self._taken
        self._to_slow(b"".join(self._window))

    def _hand_over_incomplete(self) -> None:
        """Only an incomplete request is left: the slow gear takes just that (every
        element so far was a bulk string, so the canonical sizes are exact)."""
        self._skip = 0
        self._resume = True
        self._to_slow(b"".join(self._window)[self._consumed:])

    def _to_slow(self, data: bytes) -> None:
        self._reader = None
        self._window = []
        self._taken = self._fed = self._consumed = 0
        self._buf = b""
        self._pos = 0
        self._feed_slow(data)

    def _next_slow(self) -> list[bytes] | None:
        while True:
            cmd = self._next_command()
            if self._fast and self._args is None:
                rest = self._buf[self._pos:]
                if not rest or self._resume:  # back to the fast gear
                    self._buf = b""
                    self._pos = 0
                    self._skip = 0
                    self._resume = False
                    self._reader = hiredis.Reader()
                    if rest:
                        self.feed(bytes(rest))
            if cmd is None or not self._skip:
                return cmd
            self._skip -= 1

    def _feed_slow(self, data: bytes) -> None:
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            self._buf = data
        elif type(buf) is bytearray:
            if pos > 65536 and pos * 2 > len(buf):
                del buf[:pos]
            else:
                buf += data
                return
            buf += data
        elif len(buf) - pos > 1 << 20:
            grown = bytearray(buf[pos:])
            grown += data
            self._buf = grown
        else:
            self._buf = buf[pos:] + data
        self._pos = 0

    def _next_command(self) -> list[bytes] | None:
        """The next complete command, ``None`` when more bytes are needed.

        An empty inline line yields ``[]``, which callers skip (as Redis does).
        """
        if self._args is None:
            buf = self._buf
            pos = self._pos
            if pos >= len(buf):
                return None
            if buf[pos] != 42:  # not '*': an inline command
                return self._inline()
            nl = buf.find(b"\r\n", pos, pos + MAX_HEADER)
            if nl < 0:
                if len(buf) - pos > MAX_HEADER:
                    raise ProtocolError("Protocol error: invalid multibulk length")
                return None
            count = _header_int(buf, pos + 1, nl, "Protocol error: invalid multibulk length")
            if count > MAX_MULTIBULK:
                raise ProtocolError("Protocol error: invalid multibulk length")
            if count > UNAUTH_MULTIBULK and self._restricted:
                raise ProtocolError("Protocol error: unauthenticated multibulk length")
            self._pos = nl + 2
            if count <= 0:
                return []
            self._args = []
            self._missing = count
        return self._bulks()

    def _bulks(self) -> list[bytes] | None:
        buf = self._buf
        args = self._args
        assert args is not None
        p = self._pos
        size = len(buf)
        missing = self._missing
        while missing:
            if p >= size:
                break
            if buf[p] != 36:  # '$'
                raise ProtocolError(f"Protocol error: expected '$', got '{chr(buf[p])}'")
            nl = buf.find(b"\r\n", p, p + MAX_HEADER)
            if nl < 0:
                if size - p > MAX_HEADER:
                    raise ProtocolError("Protocol error: invalid bulk length")
                break
            length = _header_int(buf, p + 1, nl, "Protocol error: invalid bulk length")
            if length < 0 or length > MAX_BULK:
                raise ProtocolError("Protocol error: invalid bulk length")
            if length > UNAUTH_BULK and self._restricted:
                raise ProtocolError("Protocol error: unauthenticated bulk length")
            start = nl + 2
            end = start + length
            if end + 2 > size:
                break
            args.append(bytes(buf[start:end]))
            p = end + 2
            missing -= 1
        self._pos = p
        self._missing = missing
        if missing:
            return None
        self._args = None
        return args

    def _inline(self) -> list[bytes] | None:
        buf = self._buf
        pos = self._pos
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if len(buf) - pos > MAX_INLINE:
                raise ProtocolError("Protocol error: too big inline request")
            return None
        line = bytes(buf[pos:nl])
        self._pos = nl + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        return split_inline(line)


def _header_int(buf: bytes | bytearray, start: int, end: int, error: str) -> int:
    """Like Redis's string2ll: no sign but '-', no spaces, no leading zeros."""
    digits = buf[start:end]
    if digits.isdigit() and (digits[0] != 48 or end - start == 1):  # the usual case
        return int(digits)
    if digits[:1] == b"-" and digits[1:].isdigit() and digits[1:2] != b"0":
        return int(digits)
    raise ProtocolError(error)


_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command like Redis's ``sdssplitargs`` (quotes and escapes)."""
    args: list[bytes] = []
    line = line.split(b"\0", 1)[0]  # Redis splits a C string: a NUL ends the line
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in b" \t\n\r\v\f":
            i += 1
        if i >= n:
            return args
        current = bytearray()
        quote = 0
        while True:
            if quote == 34:  # inside "..."
                if i >= n:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                c = line[i]
                if c == 92 and i + 3 < n and line[i + 1] == 120 and _is_hex(line[i + 2 : i + 4]):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 92 and i + 1 < n:
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                elif c == 34:
                    if i + 1 < n and line[i + 1] not in b" \t\n\r\v\f":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    i += 1
                    break
                else:
                    current.append(c)
            elif quote == 39:  # inside '...'
                if i >= n:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                c = line[i]
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    i += 1
                    current.append(39)
                elif c == 39:
                    if i + 1 < n and line[i + 1] not in b" \t\n\r\v\f":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    i += 1
                    break
                else:
                    current.append(c)
            else:
                if i >= n:
                    break
                c = line[i]
                if c in b" \t\n\r":  # sdssplitargs ends a bare word only at these
                    break
                if c == 34 or c == 39:
                    quote = c
                else:
                    current.append(c)
            i += 1
        args.append(bytes(current))


def _is_hex(two: bytes) -> bool:
    return len(two) == 2 and all(c in b"0123456789abcdefABCDEF" for c in two)


# ---------------------------------------------------------------------------
# replies from replicas


class ReplyParser:
    """hiredis-backed parser for replica replies; error replies come back as values."""

    __slots__ = ("_reader", "feed", "gets")

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=ReplyError, notEnoughData=False)
        self.feed = self._reader.feed
        self.gets = self._reader.gets


class Incomplete(Exception):
    """``parse_typed`` needs more bytes than the buffer holds."""


def parse_typed(buf: bytes, pos: int = 0, *, null_bulk: Any = None,
                null_array: Any = None) -> tuple[Any, int]:
    """Parse the reply starting at ``buf[pos]``: ``(value, position after it)``.

    Raises ``Incomplete`` when the reply is not all in ``buf`` (parse again from the same
    position once more bytes arrived), ``ValueError`` on bytes that are not RESP.
    Every type stays apart: ``+`` → ``Simple``, ``$`` → ``bytes``, ``:`` → ``int``,
    ``*``/``>`` → ``list``, ``%`` → ``dict`` (an array key becomes a tuple), ``~`` →
    ``SetReply`` (order kept), ``_`` → ``None``, ``,`` → ``float``, ``#`` → ``bool``,
    ``=`` → ``Verbatim``, ``-`` → ``ReplyError`` (returned, not raised). RESP2's nulls
    ``$-1`` and ``*-1`` become ``null_bulk`` and ``null_array`` (``None`` unless given).
    """
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
            return null_bulk, pos
        if len(buf) < pos + size + 2:
            raise Incomplete
        data = bytes(buf[pos:pos + size])
        pos += size + 2
        if kind == b"=":
            return Verbatim(data[4:].decode(errors="replace")), pos
        return data, pos
    if kind in (b"*", b"~", b">"):
        count = int(line)
        if count < 0:
            return null_array, pos
        items = []
        for _ in range(count):
            item, pos = parse_typed(buf, pos, null_bulk=null_bulk, null_array=null_array)
            items.append(item)
        return (SetReply(items) if kind == b"~" else items), pos
    if kind == b"%":
        out = {}
        for _ in range(int(line)):
            k, pos = parse_typed(buf, pos, null_bulk=null_bulk, null_array=null_array)
            v, pos = parse_typed(buf, pos, null_bulk=null_bulk, null_array=null_array)
            out[tuple(k) if isinstance(k, list) else k] = v
        return out, pos
    raise ValueError(f"unknown RESP type {bytes(kind)!r}")


def command(*parts: bytes) -> bytes:
    """Encode a command for a replica: a RESP array of bulk strings (bytes only: hot path)."""
    return b"*%d\r\n%b" % (len(parts), b"".join([b"$%d\r\n%b\r\n" % (len(p), p) for p in parts]))


def encode_command(*args: bytes | str | int) -> bytes:
    """``command`` for arguments that may also be text or integers."""
    return command(*[a.encode() if isinstance(a, str) else b"%d" % a if isinstance(a, int)
                     else a for a in args])


# ---------------------------------------------------------------------------
# replies to clients

OK = Simple("OK")
PONG = Simple("PONG")
NIL = None


def encode(value: Any, proto: int = 2) -> bytes:
    """Encode one reply value for a client speaking RESP ``proto`` (2 or 3).

    bytes → bulk; str → bulk (utf-8); Simple → ``+``; int → ``:``; None → null;
    list/tuple → array; dict → map (flat array in RESP2); float → double (bulk in RESP2);
    bool → boolean (integer in RESP2); set → set (array in RESP2); ReplyError → ``-``.
    """
    t = type(value)
    if t is bytes:
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if value is None:
        return b"_\r\n" if proto == 3 else b"$-1\r\n"
    if t is Simple:
        return b"+%b\r\n" % value.encode(errors="replace")
    if t is int:
        return b":%d\r\n" % value
    out: list[bytes] = []
    _encode_into(out, value, proto)
    return b"".join(out)


def _encode_into(out: list[bytes], value: Any, proto: int) -> None:
    t = type(value)
    if t is bytes:
        out.append(b"$%d\r\n%b\r\n" % (len(value), value))
    elif value is None:
        out.append(b"_\r\n" if proto == 3 else b"$-1\r\n")
    elif t is Simple:
        out.append(b"+%b\r\n" % value.encode(errors="replace"))
    elif t is bool:
        if proto == 3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if value else b":0\r\n")
    elif t is int:
        out.append(b":%d\r\n" % value)
    elif t is list or t is tuple:
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(out, item, proto)
    elif t is dict:
        if proto == 3:
            out.append(b"%%%d\r\n" % len(value))
        else:
            out.append(b"*%d\r\n" % (2 * len(value)))
        for k, v in value.items():
            _encode_into(out, k, proto)
            _encode_into(out, v, proto)
    elif t is str:
        data = value.encode(errors="replace")
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif t is Verbatim:
        data = value.encode(errors="replace")
        if proto == 3:
            out.append(b"=%d\r\ntxt:%b\r\n" % (len(data) + 4, data))
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif t is float:
        text = _format_double(value)
        if proto == 3:
            out.append(b",%b\r\n" % text)
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(text), text))
    elif isinstance(value, ReplyError):
        message = value.text.replace("\r", " ").replace("\n", " ")
        out.append(b"-%b\r\n" % message.encode(errors="replace"))
    elif value is NullArray:
        out.append(b"_\r\n" if proto == 3 else b"*-1\r\n")
    elif t is SetReply:
        out.append((b"~%d\r\n" if proto == 3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(out, item, proto)
    elif t is set or t is frozenset:
        out.append((b"~%d\r\n" if proto == 3 else b"*%d\r\n") % len(value))
        for item in sorted(value):
            _encode_into(out, item, proto)
    elif isinstance(value, Push):  # pragma: no cover
        out.append((b">%d\r\n" if proto == 3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(out, item, proto)
    else:
        raise TypeError(f"cannot encode {t.__name__} as RESP")


def _format_double(value: float) -> bytes:
    if value != value:
        return b"nan"
    if value == float("inf"):
        return b"inf"
    if value == float("-inf"):
        return b"-inf"
    return repr(value).encode() if value != int(value) or abs(value) >= 1e17 else b"%d" % int(value)
