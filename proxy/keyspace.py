"""Keyspace commands: DEL, EXISTS, TTL family, EXPIRE family, TYPE..."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .clock import Versioned
from .commands import (
    DEFERRED,
    MAX_INT64,
    NOT_INT,
    TABLE,
    Batch,
    Command,
    command,
    gather,
    now_ms,
    parse_int,
    read,
    unwrap,
    value_of,
    write,
)
from .resp import ReplyError, Simple

if TYPE_CHECKING:  # pragma: no cover
    from .server import Proxy, Session


# ---------------------------------------------------------------------------
# keyspace


@command("DEL", -2, "write", (1, -1, 1), "generic", "Deletes one or more keys.")
def cmd_del(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()
    keys = args[1:]
    part = gather(len(keys), done, sum)
    for i, key in enumerate(keys):
        app.coordinator.write(key, s.w, b"*", b"del", [], unwrap(part(i)))
    return DEFERRED


TABLE[b"unlink"] = Command("unlink", cmd_del, -2, ("write", "fast"), 1, -1, 1, "generic",
                           "Asynchronously deletes one or more keys.")


@command("EXISTS", -2, "readonly fast", (1, -1, 1), "generic", "Determines whether one or more keys exist.")
def cmd_exists(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()

    def finish(result: Any) -> None:
        if isinstance(result, ReplyError):
            done(result)
        else:
            done(sum(1 for obj in result if value_of(obj) is not None))

    app.coordinator.read_many(args[1:], s.r, finish)
    return DEFERRED


def _ttl(scale: int) -> Callable[[Versioned], int]:
    def convert(obj: Versioned) -> int:
        now = now_ms()
        best = obj.winner(now)
        if best is None:
            return -2
        if not best.expire_at:
            return -1
        left = best.expire_at - now
        return (left + 500) // 1000 if scale == 1000 else left
    return convert


@command("TTL", 2, "readonly fast", (1, 1, 1), "generic", "Returns the expiration time in seconds of a key.")
def cmd_ttl(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read(app, s, batch, args[1], _ttl(1000))


@command("PTTL", 2, "readonly fast", (1, 1, 1), "generic", "Returns the expiration time in milliseconds of a key.")
def cmd_pttl(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read(app, s, batch, args[1], _ttl(1))


@command("TYPE", 2, "readonly fast", (1, 1, 1), "generic", "Determines the type of value stored at a key.")
def cmd_type(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read(app, s, batch, args[1],
                lambda obj: Simple("string" if value_of(obj) is not None else "none"))


def _expire(app: Proxy, s: Session, args: list[bytes], batch: Batch, name: str, scale: int,
            relative: bool) -> Any:
    number = parse_int(args[2])
    if number is None:
        return NOT_INT
    cond = b""
    for opt in args[3:]:
        o = opt.upper()
        if o not in (b"NX", b"XX", b"GT", b"LT"):
            return ReplyError(f"ERR Unsupported option {opt.decode(errors='replace')}")
        if cond and cond != o:
            if {cond, o} in ({b"NX", b"XX"}, {b"NX", b"GT"}, {b"NX", b"LT"}):
                return ReplyError("ERR NX and XX, GT or LT options at the same time are not compatible")
            return ReplyError("ERR GT and LT options at the same time are not compatible")
        cond = o
    if abs(number) > MAX_INT64 // scale:
        return ReplyError(f"ERR invalid expire time in '{name}' command")
    at = number * scale + (now_ms() if relative else 0)
    if at > MAX_INT64 or at < -MAX_INT64:
        return ReplyError(f"ERR invalid expire time in '{name}' command")
    return write(app, s, batch, args[1], b"expire", [b"at", b"%d" % at, cond],
                 lambda blob, changed: changed)


@command("EXPIRE", -3, "write fast", (1, 1, 1), "generic", "Sets the expiration time of a key in seconds.")
def cmd_expire(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _expire(app, s, args, batch, "expire", 1000, True)


@command("PEXPIRE", -3, "write fast", (1, 1, 1), "generic", "Sets the expiration time of a key in milliseconds.")
def cmd_pexpire(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _expire(app, s, args, batch, "pexpire", 1, True)


@command("EXPIREAT", -3, "write fast", (1, 1, 1), "generic", "Sets the expiration time of a key to a Unix timestamp.")
def cmd_expireat(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _expire(app, s, args, batch, "expireat", 1000, False)


@command("PEXPIREAT", -3, "write fast", (1, 1, 1), "generic", "Sets the expiration time of a key to a Unix milliseconds timestamp.")
def cmd_pexpireat(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _expire(app, s, args, batch, "pexpireat", 1, False)


@command("PERSIST", 2, "write fast", (1, 1, 1), "generic", "Removes the expiration time of a key.")
def cmd_persist(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], b"expire", [b"persist", b"0", b""],
                 lambda blob, changed: changed)
