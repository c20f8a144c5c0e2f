"""String commands: GET, SET and its options, MGET/MSET, INCR family, APPEND..."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .commands import (
    DEFERRED,
    MAX_INT64,
    NOT_INT,
    SYNTAX,
    Batch,
    command,
    err_arity,
    gather,
    now_ms,
    parse_int,
    read,
    unwrap,
    value_of,
    write,
)
from .resp import OK, ReplyError

if TYPE_CHECKING:  # pragma: no cover
    from .server import Proxy, Session


# ---------------------------------------------------------------------------
# strings


@command("GET", 2, "readonly fast", (1, 1, 1), "string", "Returns the string value of a key.")
def cmd_get(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read(app, s, batch, args[1], value_of)


@command("MGET", -2, "readonly fast", (1, -1, 1), "string", "Atomically returns the string values of one or more keys.")
def cmd_mget(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()

    def finish(result: Any) -> None:
        done(result if isinstance(result, ReplyError) else [value_of(o) for o in result])

    app.coordinator.read_many(args[1:], s.r, finish)
    return DEFERRED


def parse_set_options(args: list[bytes], start: int, allow_get: bool = True
                      ) -> tuple[str, int, str, bool] | ReplyError:
    """SET's [NX|XX] [GET] [EX|PX|EXAT|PXAT|KEEPTTL] → (expire mode, at ms, cond, get)."""
    cond = ""
    get = False
    mode = ""
    at = 0
    i = start
    while i < len(args):
        opt = args[i].upper()
        nxt = args[i + 1] if i + 1 < len(args) else None
        if opt == b"NX" and cond != "XX":
            cond = "NX"
        elif opt == b"XX" and cond != "NX":
            cond = "XX"
        elif opt == b"GET" and allow_get:
            get = True
        elif opt == b"KEEPTTL" and not mode:
            mode = "keep"
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and not mode and nxt is not None:
            number = parse_int(nxt)
            if number is None:
                return NOT_INT
            if number <= 0:
                return ReplyError("ERR invalid expire time in 'set' command")
            scale = 1000 if opt in (b"EX", b"EXAT") else 1
            if number > MAX_INT64 // scale:
                return ReplyError("ERR invalid expire time in 'set' command")
            at = number * scale + (now_ms() if opt in (b"EX", b"PX") else 0)
            if at > MAX_INT64:
                return ReplyError("ERR invalid expire time in 'set' command")
            mode = "at"
            i += 1
        else:
            return SYNTAX
        i += 1
    return mode, at, cond, get


def _set_reply(get: bool) -> Callable[[bytes | None, Any], Any]:
    if get:
        return lambda blob, old: old
    return lambda blob, old: OK if blob is not None else None


@command("SET", -3, "write denyoom", (1, 1, 1), "string", "Sets the string value of a key, ignoring its type.")
def cmd_set(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) == 3:
        return write(app, s, batch, args[1], b"set", [args[2], b"", b"0", b"", b"0"], _SET_OK)
    parsed = parse_set_options(args, 3)
    if isinstance(parsed, ReplyError):
        return parsed
    mode, at, cond, get = parsed
    return write(app, s, batch, args[1], b"set",
                 [args[2], mode.encode(), b"%d" % at, cond.encode(), b"1" if get else b"0"],
                 _set_reply(get))


_SET_OK = _set_reply(False)


@command("SETNX", 3, "write denyoom fast", (1, 1, 1), "string", "Set the string value of a key only when the key doesn't exist.")
def cmd_setnx(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], b"set", [args[2], b"", b"0", b"NX", b"0"],
                 lambda blob, old: 1 if blob is not None else 0)


def _setex(args: list[bytes], scale: int, name: str) -> list[bytes] | ReplyError:
    number = parse_int(args[2])
    if number is None:
        return NOT_INT
    if number <= 0 or number > MAX_INT64 // scale:
        return ReplyError(f"ERR invalid expire time in '{name}' command")
    return [args[3], b"at", b"%d" % (now_ms() + number * scale), b"", b"0"]


@command("SETEX", 4, "write denyoom", (1, 1, 1), "string", "Sets the string value and expiration time of a key.")
def cmd_setex(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    op_args = _setex(args, 1000, "setex")
    if isinstance(op_args, ReplyError):
        return op_args
    return write(app, s, batch, args[1], b"set", op_args, _SET_OK)


@command("PSETEX", 4, "write denyoom", (1, 1, 1), "string", "Sets both string value and expiration time in milliseconds of a key.")
def cmd_psetex(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    op_args = _setex(args, 1, "psetex")
    if isinstance(op_args, ReplyError):
        return op_args
    return write(app, s, batch, args[1], b"set", op_args, _SET_OK)


@command("GETSET", 3, "write denyoom fast", (1, 1, 1), "string", "Returns the previous string value of a key after setting it to a new value.")
def cmd_getset(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], b"set", [args[2], b"", b"0", b"", b"1"],
                 lambda blob, old: old)


@command("GETDEL", 2, "write fast", (1, 1, 1), "string", "Returns the string value of a key after deleting the key.")
def cmd_getdel(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], b"getdel", [], lambda blob, old: old)


@command("MSET", -3, "write denyoom", (1, -1, 2), "string", "Atomically creates or modifies the string values of one or more keys.")
def cmd_mset(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) % 2 == 0:
        return err_arity("mset")
    done = batch.defer()
    pairs = [(args[i], args[i + 1]) for i in range(1, len(args), 2)]
    part = gather(len(pairs), done, lambda results: OK)
    for i, (key, value) in enumerate(pairs):
        app.coordinator.write(key, s.w, b"*", b"set", [value, b"", b"0", b"", b"0"],
                              unwrap(part(i)))
    return DEFERRED


def _incr(app: Proxy, s: Session, batch: Batch, key: bytes, by: int) -> Any:
    return write(app, s, batch, key, b"incrby", [b"%d" % by], lambda blob, value: value)


@command("INCR", 2, "write denyoom fast", (1, 1, 1), "string", "Increments the integer value of a key by one.")
def cmd_incr(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _incr(app, s, batch, args[1], 1)


@command("DECR", 2, "write denyoom fast", (1, 1, 1), "string", "Decrements the integer value of a key by one.")
def cmd_decr(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _incr(app, s, batch, args[1], -1)


@command("INCRBY", 3, "write denyoom fast", (1, 1, 1), "string", "Increments the integer value of a key by a number.")
def cmd_incrby(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    by = parse_int(args[2])
    return NOT_INT if by is None else _incr(app, s, batch, args[1], by)


@command("DECRBY", 3, "write denyoom fast", (1, 1, 1), "string", "Decrements a number from the integer value of a key.")
def cmd_decrby(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    by = parse_int(args[2])
    if by is None or by == -MAX_INT64 - 1:
        return NOT_INT if by is None else ReplyError("ERR decrement would overflow")
    return _incr(app, s, batch, args[1], -by)


@command("APPEND", 3, "write denyoom", (1, 1, 1), "string", "Appends a string to the value of a key.")
def cmd_append(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], b"append", [args[2]], lambda blob, length: length)


@command("STRLEN", 2, "readonly fast", (1, 1, 1), "string", "Returns the length of a string value.")
def cmd_strlen(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read(app, s, batch, args[1], lambda obj: len(value_of(obj) or b""))
