"""String commands: GET, SET and its options, MGET/MSET/MSETNX, the INCR family, APPEND,
GETRANGE/SETRANGE, GETEX, INCRBYFLOAT...

Read-modify-write commands run at the key's coordinating replica, atomically, on the
value a plain GET would answer there (replicas/redquorum.lua, ``OPS``). Argument
parsing and error texts follow redis-server 7.0, including the order in which Redis
checks things (a syntax error wins over a bad number; GETEX on a missing key answers
nil before it looks at the expiry).

INCRBYFLOAT is the exception to "the replica computes": Redis adds two x87 ``long
double`` values (64-bit significand) and prints them with ``%.17Lf``; Lua has only
doubles. The proxy therefore emulates ``strtold``, the long-double sum and the
formatting exactly (``LongDouble`` below, with Python integers) and writes the result
with a compare-and-set at the coordinator, retrying if the value changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..protocol.resp import OK, ReplyError
from ..replication import wire
from ..replication.coordinator import gather
from .longdouble import LongDouble
from .table import (
    DEFERRED,
    MAX_INT64,
    NOT_FLOAT,
    NOT_INT,
    SYNTAX,
    Batch,
    command,
    err_arity,
    now_ms,
    parse_int,
    read,
    stored_expiry,
    unwrap,
    value_of,
    write,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .session import Session

MAX_STRING = 512 * 1024 * 1024  # Redis's proto-max-bulk-len default
TOO_BIG = ReplyError("ERR string exceeds maximum allowed size (proto-max-bulk-len)")


def err_expire(name: str) -> ReplyError:
    return ReplyError(f"ERR invalid expire time in '{name}' command")


# ---------------------------------------------------------------------------
# GET, MGET


@command("GET", 2, "readonly fast", (1, 1, 1), "string", "Returns the string value of a key.")
def cmd_get(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    app.coordinator.read(args[1], s.r, batch.defer(), plain=True)
    return DEFERRED


@command("MGET", -2, "readonly fast", (1, -1, 1), "string", "Atomically returns the string values of one or more keys.")
def cmd_mget(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    app.coordinator.read_many(args[1:], s.r, batch.defer(), plain=True)
    return DEFERRED


# ---------------------------------------------------------------------------
# SET and its options (Redis's parseExtendedStringArgumentsOrReply)

_EX, _PX, _EXAT, _PXAT, _KEEPTTL, _PERSIST, _NX, _XX, _GET = (1 << i for i in range(9))
_EXPIRES = _EX | _PX | _EXAT | _PXAT
_TOKENS = {b"EX": _EX, b"PX": _PX, b"EXAT": _EXAT, b"PXAT": _PXAT}
EXPIRE_TOKENS = _TOKENS  # for RQ.SET's EX and PX


def parse_string_options(args: list[bytes], start: int, for_set: bool
                         ) -> tuple[int, bytes | None] | ReplyError:
    """SET's ``[NX|XX] [GET] [EX|PX|EXAT|PXAT|KEEPTTL]`` or GETEX's ``[EX…|PERSIST]``.

    Returns (flags, the expire argument or None). Numbers are checked later, as Redis does.
    """
    flags = 0
    expire: bytes | None = None
    i = start
    while i < len(args):
        opt = args[i].upper()
        has_next = i + 1 < len(args)
        if opt == b"NX" and for_set and not flags & _XX:
            flags |= _NX
        elif opt == b"XX" and for_set and not flags & _NX:
            flags |= _XX
        elif opt == b"GET" and for_set:
            flags |= _GET
        elif opt == b"KEEPTTL" and for_set and not flags & (_PERSIST | _EXPIRES):
            flags |= _KEEPTTL
        elif opt == b"PERSIST" and not for_set and not flags & (_EXPIRES | _KEEPTTL):
            flags |= _PERSIST
        elif opt in _TOKENS and has_next and not flags & (
                _KEEPTTL | _PERSIST | (_EXPIRES & ~_TOKENS[opt])):
            flags |= _TOKENS[opt]
            expire = args[i + 1]
            i += 1
        else:
            return SYNTAX
        i += 1
    return flags, expire


def expire_ms(flags: int, expire: bytes, name: str) -> int | ReplyError:
    """Redis's getExpireMillisecondsOrReply: the absolute expiry in milliseconds."""
    number = parse_int(expire)
    if number is None:
        return NOT_INT
    seconds = bool(flags & (_EX | _EXAT))
    if number <= 0 or (seconds and number > MAX_INT64 // 1000):
        return err_expire(name)
    if seconds:
        number *= 1000
    if flags & (_EX | _PX):
        number += now_ms()
    if number > MAX_INT64:  # Redis's signed overflow turns negative and fails
        return err_expire(name)
    return stored_expiry(number)


def _set_reply(get: bool) -> Callable[[bytes | None, Any], Any]:
    if get:
        return lambda blob, old: old
    return lambda blob, old: OK if blob is not None else None


_SET_OK = _set_reply(False)


@command("SET", -3, "write denyoom", (1, 1, 1), "string", "Sets the string value of a key, ignoring its type.")
def cmd_set(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) == 3:
        return write(app, s, batch, args[1], wire.set_value(args[2]), _SET_OK)
    parsed = parse_string_options(args, 3, True)
    if isinstance(parsed, ReplyError):
        return parsed
    flags, expire = parsed
    mode, at = b"", 0
    if expire is not None:
        ms = expire_ms(flags, expire, "set")
        if isinstance(ms, ReplyError):
            return ms
        mode, at = b"at", ms
    elif flags & _KEEPTTL:
        mode = b"keep"
    cond = b"NX" if flags & _NX else b"XX" if flags & _XX else b""
    get = bool(flags & _GET)
    op = wire.set_value(args[2], expire_at=at if mode == b"at" else None,
                        keep_ttl=mode == b"keep", condition=cond, get_old=get)
    return write(app, s, batch, args[1], op, _set_reply(get))


@command("SETNX", 3, "write denyoom fast", (1, 1, 1), "string", "Set the string value of a key only when the key doesn't exist.")
def cmd_setnx(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], wire.set_value(args[2], condition=b"NX"),
                 lambda blob, old: 1 if blob is not None else 0)


def _setex(app: App, s: Session, args: list[bytes], batch: Batch, flag: int, name: str) -> Any:
    at = expire_ms(flag, args[2], name)
    if isinstance(at, ReplyError):
        return at
    return write(app, s, batch, args[1], wire.set_value(args[3], expire_at=at), _SET_OK)


@command("SETEX", 4, "write denyoom", (1, 1, 1), "string", "Sets the string value and expiration time of a key.")
def cmd_setex(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _setex(app, s, args, batch, _EX, "setex")


@command("PSETEX", 4, "write denyoom", (1, 1, 1), "string", "Sets both string value and expiration time in milliseconds of a key.")
def cmd_psetex(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _setex(app, s, args, batch, _PX, "psetex")


@command("GETSET", 3, "write denyoom fast", (1, 1, 1), "string", "Returns the previous string value of a key after setting it to a new value.")
def cmd_getset(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], wire.set_value(args[2], get_old=True),
                 lambda blob, old: old)


@command("GETDEL", 2, "write fast", (1, 1, 1), "string", "Returns the string value of a key after deleting the key.")
def cmd_getdel(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], wire.get_delete(), lambda blob, old: old)


@command("GETEX", -2, "write fast", (1, 1, 1), "string", "Returns the string value of a key after setting its expiration time.")
def cmd_getex(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    parsed = parse_string_options(args, 2, False)
    if isinstance(parsed, ReplyError):
        return parsed
    flags, expire = parsed
    if expire is None and not flags & _PERSIST:
        return read(app, s, batch, args[1], value_of)
    mode, at, error = b"persist", 0, b""
    if expire is not None:
        ms = expire_ms(flags, expire, "getex")
        if isinstance(ms, ReplyError):
            # Redis answers nil for a missing key before it validates the expiry.
            error = ms.text.encode()
        else:
            mode, at = b"at", ms
    return write(app, s, batch, args[1], wire.get_and_expire(at if mode == b"at" else None, error),
                 lambda blob, value: value)


# ---------------------------------------------------------------------------
# MSET, MSETNX


@command("MSET", -3, "write denyoom", (1, -1, 2), "string", "Atomically creates or modifies the string values of one or more keys.")
def cmd_mset(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) % 2 == 0:
        return err_arity("mset")
    done = batch.defer()
    pairs = [(args[i], args[i + 1]) for i in range(1, len(args), 2)]
    part = gather(len(pairs), done, lambda results: OK)
    for i, (key, value) in enumerate(pairs):
        app.coordinator.write(key, s.w, b"*", wire.set_value(value),
                              unwrap(part(i)))
    return DEFERRED


@command("MSETNX", -3, "write denyoom", (1, -1, 2), "string", "Atomically modifies the string values of one or more keys only when all keys don't exist.")
def cmd_msetnx(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    """Not atomic across keys: a quorum read of every key first; if none exists, each key
    is written with SET NX semantics at its own coordinator. The reply is 1 only when
    every key was set; a concurrent writer of one of the keys between the check and the
    write makes it 0, and the keys written by then stay written (docs/guarantees.md)."""
    if len(args) % 2 == 0:
        return err_arity("msetnx")
    values = {args[i]: args[i + 1] for i in range(1, len(args), 2)}  # the last one wins
    keys = list(values)
    done = batch.defer()

    def checked(result: Any) -> None:
        if isinstance(result, ReplyError):
            done(result)
            return
        if any(value_of(obj) is not None for obj in result):
            done(0)
            return
        part = gather(len(keys), done, lambda written: 1 if all(written) else 0)
        for i, key in enumerate(keys):
            app.coordinator.write(key, s.w, b"*", wire.set_value(values[key], condition=b"NX"),
                                  _written(part(i)))

    app.coordinator.read_many(keys, s.r, checked)
    return DEFERRED


def _written(done: Callable[[Any], None]) -> Callable[[Any], None]:
    return lambda result: done(result if isinstance(result, ReplyError) else result[0] is not None)


# ---------------------------------------------------------------------------
# INCR family


def _incr(app: App, s: Session, batch: Batch, key: bytes, by: int) -> Any:
    # The replica answers the new value as decimal text: Lua numbers are doubles.
    return write(app, s, batch, key, wire.incr_by(by), lambda blob, value: int(value))


@command("INCR", 2, "write denyoom fast", (1, 1, 1), "string", "Increments the integer value of a key by one.")
def cmd_incr(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _incr(app, s, batch, args[1], 1)


@command("DECR", 2, "write denyoom fast", (1, 1, 1), "string", "Decrements the integer value of a key by one.")
def cmd_decr(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _incr(app, s, batch, args[1], -1)


@command("INCRBY", 3, "write denyoom fast", (1, 1, 1), "string", "Increments the integer value of a key by a number.")
def cmd_incrby(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    by = parse_int(args[2])
    return NOT_INT if by is None else _incr(app, s, batch, args[1], by)


@command("DECRBY", 3, "write denyoom fast", (1, 1, 1), "string", "Decrements a number from the integer value of a key.")
def cmd_decrby(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    by = parse_int(args[2])
    if by is None:
        return NOT_INT
    if by == -MAX_INT64 - 1:
        return ReplyError("ERR decrement would overflow")
    return _incr(app, s, batch, args[1], -by)


@command("INCRBYFLOAT", 3, "write denyoom fast", (1, 1, 1), "string", "Increment the floating point value of a key by a number.")
def cmd_incrbyfloat(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    incr = LongDouble.parse(args[2])
    if incr is None:
        return NOT_FLOAT

    def add(current: bytes | None) -> tuple[bytes, Any] | ReplyError:
        number = LongDouble.ZERO if current is None else LongDouble.parse(current)
        if number is None:
            return NOT_FLOAT
        total = number.add(incr)
        if total is None:
            return ReplyError("ERR increment would produce NaN or Infinity")
        text = total.format_human()
        return text, text

    compare_and_set(app, s, args[1], add, batch.defer(), "INCRBYFLOAT")
    return DEFERRED


CAS_ATTEMPTS = 8


def compare_and_set(app: App, s: Session, key: bytes,
                    compute: Callable[[bytes | None], tuple[bytes | None, Any] | ReplyError],
                    done: Callable[[Any], None], name: str) -> None:
    """An update the proxy computes itself, written with a compare-and-set at the key's
    coordinator (``OPS.cas``): ``compute(current value)`` answers ``(new value, reply)``
    (new value None: nothing to write) or an error; if the value changed between the
    read and the write, it runs again on the newer value. Keeps the expiry."""
    attempts = [0]
    answer: list[Any] = [None]

    def attempt(op: wire.Op) -> None:
        app.coordinator.write(key, s.w, b"*", op, step)

    def step(result: Any) -> None:
        if isinstance(result, ReplyError):
            done(result)
            return
        _, reply = result
        if reply[0] == b"ok":
            done(answer[0])
            return
        attempts[0] += 1
        if attempts[0] > CAS_ATTEMPTS:
            done(ReplyError(f"ERR redquorum: {name} kept racing concurrent writes of the "
                            "key; try again"))
            return
        # reply: [b"retry"] (no value) or [b"retry", value, actor, counter]
        current = reply[1] if len(reply) > 1 else None
        outcome = compute(current)
        if isinstance(outcome, ReplyError):
            done(outcome)
            return
        value, answer[0] = outcome
        if value is None:
            done(answer[0])
            return
        attempt(wire.compare_and_set(value, expect_dot=(reply[2], reply[3])) if len(reply) > 1
                else wire.compare_and_set(value, expect_none=True))

    attempt(wire.compare_and_set(b""))


# ---------------------------------------------------------------------------
# APPEND, STRLEN, GETRANGE, SETRANGE


@command("APPEND", 3, "write denyoom", (1, 1, 1), "string", "Appends a string to the value of a key.")
def cmd_append(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], wire.append(args[2]), lambda blob, length: length)


@command("STRLEN", 2, "readonly fast", (1, 1, 1), "string", "Returns the length of a string value.")
def cmd_strlen(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read(app, s, batch, args[1], lambda obj: len(value_of(obj) or b""))


def getrange(value: bytes, start: int, end: int) -> bytes:
    """Redis's getrangeCommand index rules."""
    size = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start += size
    if end < 0:
        end += size
    start = max(start, 0)
    end = max(end, 0)
    if end >= size:
        end = size - 1
    if start > end or size == 0:
        return b""
    return value[start:end + 1]


def _getrange(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    start, end = parse_int(args[2]), parse_int(args[3])
    if start is None or end is None:
        return NOT_INT
    return read(app, s, batch, args[1], lambda obj: getrange(value_of(obj) or b"", start, end))


@command("GETRANGE", 4, "readonly", (1, 1, 1), "string", "Returns a substring of the string stored at a key.")
def cmd_getrange(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _getrange(app, s, args, batch)


@command("SUBSTR", 4, "readonly", (1, 1, 1), "string", "Returns a substring from a string value.")
def cmd_substr(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _getrange(app, s, args, batch)


@command("SETRANGE", 4, "write denyoom", (1, 1, 1), "string", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.")
def cmd_setrange(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    offset = parse_int(args[2])
    if offset is None:
        return NOT_INT
    if offset < 0:
        return ReplyError("ERR offset is out of range")
    if args[3] and offset + len(args[3]) > MAX_STRING:
        return TOO_BIG
    return write(app, s, batch, args[1], wire.set_range(offset, args[3]),
                 lambda blob, length: length)
