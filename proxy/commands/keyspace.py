"""Keyspace commands: DEL/UNLINK, EXISTS/TOUCH, TYPE, the TTL and EXPIRE families,
PERSIST, RENAME/RENAMENX/COPY, and the keyspace-wide ones (KEYS, SCAN, DBSIZE, RANDOMKEY,
FLUSHDB, FLUSHALL: see proxy/scan.py).

RENAME, RENAMENX and COPY are implemented, and are **not atomic**: the source is read at
quorum, the value (with its expiry) is written under the new name, and only then (RENAME*)
is the source deleted with the causal context that was read. A write to the source that
lands in between is therefore kept (the source key survives with it) rather than lost,
and a failure in between leaves both keys, never neither. The value moved is the one a
plain GET answers; other concurrent siblings of the source are not carried over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..protocol.resp import OK, ReplyError, Simple
from ..replication import clock, wire
from ..replication.clock import Versioned
from ..replication.coordinator import gather
from . import scan
from .table import (
    DEFERRED,
    MAX_INT64,
    NOT_INT,
    SYNTAX,
    Batch,
    command,
    now_ms,
    parse_int,
    parse_int32,
    read,
    stored_expiry,
    unwrap,
    value_of,
    write,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .session import Session


# ---------------------------------------------------------------------------
# DEL, UNLINK, EXISTS, TOUCH, TYPE


@command("DEL", -2, "write", (1, -1, 1), "generic", "Deletes one or more keys.")
@command("UNLINK", -2, "write fast", (1, -1, 1), "generic", "Asynchronously deletes one or more keys.")
def cmd_del(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()
    keys = args[1:]
    part = gather(len(keys), done, sum)
    for i, key in enumerate(keys):
        app.coordinator.write(key, s.w, b"*", wire.delete(), unwrap(part(i)))
    return DEFERRED


@command("EXISTS", -2, "readonly fast", (1, -1, 1), "generic", "Determines whether one or more keys exist.")
@command("TOUCH", -2, "readonly fast", (1, -1, 1), "generic", "Returns the number of existing keys out of those specified after updating the time they were last accessed.")
def cmd_exists(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()

    def finish(result: Any) -> None:
        if isinstance(result, ReplyError):
            done(result)
        else:
            done(sum(1 for obj in result if value_of(obj) is not None))

    app.coordinator.read_many(args[1:], s.r, finish)
    return DEFERRED


@command("TYPE", 2, "readonly fast", (1, 1, 1), "generic", "Determines the type of value stored at a key.")
def cmd_type(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read(app, s, batch, args[1],
                lambda obj: Simple("string" if value_of(obj) is not None else "none"))


# ---------------------------------------------------------------------------
# TTL, PTTL, EXPIRETIME, PEXPIRETIME


def _ttl(milliseconds: bool, absolute: bool) -> Callable[[Versioned], int]:
    """Redis's ttlGenericCommand: -2 no key, -1 no expiry, else rounded to seconds."""
    def convert(obj: Versioned) -> int:
        now = now_ms()
        best = obj.winner(now)
        if best is None:
            return -2
        if not best.expire_at:
            return -1
        # Expiries beyond 2**53 ms come back from Lua as doubles.
        left = int(best.expire_at) - (0 if absolute else now)
        left = max(left, 0)
        return left if milliseconds else (left + 500) // 1000
    return convert


# (milliseconds, absolute) per command name
_TTL_FORMS = {b"ttl": (False, False), b"pttl": (True, False),
              b"expiretime": (False, True), b"pexpiretime": (True, True)}


@command("TTL", 2, "readonly fast", (1, 1, 1), "generic", "Returns the expiration time in seconds of a key.")
@command("PTTL", 2, "readonly fast", (1, 1, 1), "generic", "Returns the expiration time in milliseconds of a key.")
@command("EXPIRETIME", 2, "readonly fast", (1, 1, 1), "generic", "Returns the expiration time of a key as a Unix timestamp.")
@command("PEXPIRETIME", 2, "readonly fast", (1, 1, 1), "generic", "Returns the expiration time of a key as a Unix milliseconds timestamp.")
def cmd_ttl(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read(app, s, batch, args[1], _ttl(*_TTL_FORMS[args[0].lower()]))


# ---------------------------------------------------------------------------
# EXPIRE family, PERSIST

_EXPIRE_FLAGS = (b"NX", b"XX", b"GT", b"LT")
_SECONDS_LIMIT = MAX_INT64 // 1000  # C's LLONG_MAX / 1000 (and -LLONG_MIN / 1000, truncated)


def _expire(app: App, s: Session, args: list[bytes], batch: Batch, name: str, seconds: bool,
            relative: bool) -> Any:
    """Redis's expireGenericCommand: options first, then the number, then the key."""
    flags: set[bytes] = set()
    for opt in args[3:]:
        upper = opt.upper()
        if upper not in _EXPIRE_FLAGS:
            return ReplyError(f"ERR Unsupported option {opt.decode(errors='replace')}")
        flags.add(upper)
    if b"NX" in flags and flags & {b"XX", b"GT", b"LT"}:
        return ReplyError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if {b"GT", b"LT"} <= flags:
        return ReplyError("ERR GT and LT options at the same time are not compatible")
    when = parse_int(args[2])
    if when is None:
        return NOT_INT
    if seconds:
        if when > _SECONDS_LIMIT or when < -_SECONDS_LIMIT:
            return ReplyError(f"ERR invalid expire time in '{name}' command")
        when *= 1000
    if relative:
        base = now_ms()
        if when > MAX_INT64 - base:
            return ReplyError(f"ERR invalid expire time in '{name}' command")
        when += base
    return write(app, s, batch, args[1], wire.expire(stored_expiry(when), flags),
                 lambda blob, changed: changed)


# (seconds, relative) per command name
_EXPIRE_FORMS = {b"expire": (True, True), b"pexpire": (False, True),
                 b"expireat": (True, False), b"pexpireat": (False, False)}


@command("EXPIRE", -3, "write fast", (1, 1, 1), "generic", "Sets the expiration time of a key in seconds.")
@command("PEXPIRE", -3, "write fast", (1, 1, 1), "generic", "Sets the expiration time of a key in milliseconds.")
@command("EXPIREAT", -3, "write fast", (1, 1, 1), "generic", "Sets the expiration time of a key to a Unix timestamp.")
@command("PEXPIREAT", -3, "write fast", (1, 1, 1), "generic", "Sets the expiration time of a key to a Unix milliseconds timestamp.")
def cmd_expire(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    name = args[0].lower()
    return _expire(app, s, args, batch, name.decode(), *_EXPIRE_FORMS[name])


@command("PERSIST", 2, "write fast", (1, 1, 1), "generic", "Removes the expiration time of a key.")
def cmd_persist(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return write(app, s, batch, args[1], wire.persist(), lambda blob, changed: changed)


# ---------------------------------------------------------------------------
# RENAME, RENAMENX, COPY (not atomic: see the module docstring)

NO_SUCH_KEY = ReplyError("ERR no such key")


def _copy_value(app: App, s: Session, batch: Batch, src: bytes, dst: bytes, *, replace: bool,
                delete_source: bool, missing: Any, written: Any, refused: Any) -> Any:
    """Read ``src``, write its value and expiry to ``dst`` (NX unless ``replace``), then
    delete what was read of ``src`` when ``delete_source``."""
    done = batch.defer()

    def got_source(obj: Any) -> None:
        if isinstance(obj, ReplyError):
            done(obj)
            return
        best = obj.winner(now_ms())
        if best is None:
            done(missing)
            return
        expire = int(best.expire_at)
        op = wire.set_value(best.value, expire_at=expire or None,
                            condition=b"" if replace else b"NX")

        def got_written(result: Any) -> None:
            if isinstance(result, ReplyError):
                done(result)
                return
            if result[0] is None:
                done(refused)
                return
            if not delete_source:
                done(written)
                return
            context = clock.context_payload(dict(obj.clock))
            app.coordinator.write(src, s.w, context, wire.delete(),
                                  lambda r: done(r if isinstance(r, ReplyError) else written))

        app.coordinator.write(dst, s.w, b"*", op, got_written)

    app.coordinator.read(src, s.r, got_source)
    return DEFERRED


@command("RENAME", 3, "write", (1, 2, 1), "generic", "Renames a key and overwrites the destination.")
def cmd_rename(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if args[1] == args[2]:
        return read(app, s, batch, args[1],
                    lambda obj: OK if value_of(obj) is not None else NO_SUCH_KEY)
    return _copy_value(app, s, batch, args[1], args[2], replace=True, delete_source=True,
                       missing=NO_SUCH_KEY, written=OK, refused=OK)


@command("RENAMENX", 3, "write fast", (1, 2, 1), "generic", "Renames a key only when the target key name doesn't exist.")
def cmd_renamenx(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if args[1] == args[2]:
        return read(app, s, batch, args[1],
                    lambda obj: 0 if value_of(obj) is not None else NO_SUCH_KEY)
    return _copy_value(app, s, batch, args[1], args[2], replace=False, delete_source=True,
                       missing=NO_SUCH_KEY, written=1, refused=0)


@command("COPY", -3, "write denyoom", (1, 2, 1), "generic", "Copies the value of a key to a new key.")
def cmd_copy(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    replace = False
    i = 3
    while i < len(args):
        opt = args[i].lower()
        if opt == b"replace":
            replace = True
        elif opt == b"db" and i + 1 < len(args):
            db = parse_int32(args[i + 1])
            if isinstance(db, ReplyError):
                return db
            if db != 0:
                return ReplyError("ERR DB index is out of range")
            i += 1
        else:
            return SYNTAX
        i += 1
    if args[1] == args[2]:
        return ReplyError("ERR source and destination objects are the same")
    return _copy_value(app, s, batch, args[1], args[2], replace=replace, delete_source=False,
                       missing=0, written=1, refused=0)


# ---------------------------------------------------------------------------
# keyspace-wide: KEYS, SCAN, DBSIZE, RANDOMKEY, FLUSHDB, FLUSHALL (proxy/scan.py)


@command("KEYS", 2, "readonly", group="generic", summary="Returns all key names that match a pattern.")
def cmd_keys(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()
    scan.walk(app, args[1], "KEYS",
              lambda found: done(found if isinstance(found, ReplyError) else sorted(found)))
    return DEFERRED


@command("SCAN", -2, "readonly", group="generic", summary="Iterates over the key names in the database.")
def cmd_scan(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    cursor = scan.parse_cursor(args[1])
    if cursor is None:
        return scan.INVALID_CURSOR
    count, pattern, type_name = 10, b"*", None
    i = 2
    while i < len(args):
        opt = args[i].lower()
        more = len(args) - i
        if opt == b"count" and more >= 2:
            number = parse_int(args[i + 1])
            if number is None:
                return NOT_INT
            if number < 1:
                return SYNTAX
            count = number
        elif opt == b"match" and more >= 2:
            pattern = args[i + 1]
        elif opt == b"type" and more >= 2:
            type_name = args[i + 1].lower()
        else:
            return SYNTAX
        i += 2
    if type_name is not None and type_name != b"string":
        return [b"0", []]  # redquorum stores strings only
    done = batch.defer()
    scan.scan_step(app, cursor, count, pattern, done)
    return DEFERRED


@command("DBSIZE", 1, "readonly fast", group="server", summary="Returns the number of keys in the database.")
def cmd_dbsize(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()
    scan.walk(app, b"*", "DBSIZE",
              lambda found: done(found if isinstance(found, ReplyError) else len(found)))
    return DEFERRED


@command("RANDOMKEY", 1, "readonly", group="generic", summary="Returns a random key name from the database.")
def cmd_randomkey(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()
    scan.random_key(app, done)
    return DEFERRED


def _flush(app: App, args: list[bytes], batch: Batch, name: str) -> Any:
    option = None
    if len(args) == 2 and args[1].lower() in (b"sync", b"async"):
        option = args[1].upper()
    elif len(args) != 1:
        return SYNTAX
    done = batch.defer()
    scan.flush(app, name, option, done)
    return DEFERRED


@command("FLUSHDB", -1, "write", group="server", summary="Remove all keys from the current database.")
def cmd_flushdb(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _flush(app, args, batch, "FLUSHDB")


@command("FLUSHALL", -1, "write", group="server", summary="Removes all keys from all databases.")
def cmd_flushall(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return _flush(app, args, batch, "FLUSHALL")
