"""The command table: name → handler, arity, flags and key positions, with Redis's texts.

A handler is ``handler(app, session, args, batch)``. It returns the reply value, or
``DEFERRED`` after taking ``done = batch.defer()``, which a replica callback fills in
later. Replies are plain values encoded by proxy/resp.py for the client's protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from . import clock, info
from .clock import BadContext, Versioned
from .resp import OK, PONG, ReplyError, Simple, Verbatim

if TYPE_CHECKING:  # pragma: no cover
    from .server import Proxy, Session

RESERVED_PREFIX = b"__rq:"
DEFERRED = object()
REDIS_VERSION = "7.0.15"
MAX_INT64 = 2**63 - 1


class Batch:
    """The replies of one client read, in order; deferred ones are filled by callbacks."""

    __slots__ = ("results", "pending", "event", "written")

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.pending = 0
        self.event: trio.Event | None = None
        self.written: set[bytes] = set()

    def defer(self) -> Callable[[Any], None]:
        index = len(self.results)
        self.results.append(None)
        self.pending += 1
        return partial(self._complete, index)

    def _complete(self, index: int, value: Any) -> None:
        self.results[index] = value
        self.pending -= 1
        if self.pending == 0 and self.event is not None:
            self.event.set()

    async def wait(self) -> None:
        if self.pending:
            self.event = trio.Event()
            await self.event.wait()
            self.event = None


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Callable[..., Any]
    arity: int  # Redis convention: >0 exact, <0 at least -arity (the name counts)
    flags: tuple[str, ...]
    first_key: int = 0
    last_key: int = 0
    step: int = 0
    group: str = "generic"
    summary: str = ""

    def keys(self, args: list[bytes]) -> list[bytes]:
        if not self.first_key:
            return []
        last = self.last_key if self.last_key > 0 else len(args) + self.last_key
        return args[self.first_key : last + 1 : self.step]


TABLE: dict[bytes, Command] = {}


def command(name: str, arity: int, flags: str = "", keys: tuple[int, int, int] = (0, 0, 0),
            group: str = "generic", summary: str = "") -> Callable[[Callable[..., Any]], Any]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        TABLE[name.lower().encode()] = Command(name.lower(), fn, arity, tuple(flags.split()),
                                               *keys, group=group, summary=summary)
        return fn
    return register


# ---------------------------------------------------------------------------
# errors with Redis's texts


def err_arity(name: str) -> ReplyError:
    return ReplyError(f"ERR wrong number of arguments for '{name}' command")


SYNTAX = ReplyError("ERR syntax error")
NOT_INT = ReplyError("ERR value is not an integer or out of range")
NOT_FLOAT = ReplyError("ERR value is not a valid float")


def unknown_command(args: list[bytes]) -> ReplyError:
    name = args[0].decode(errors="replace")
    rest = "".join(f"'{a[:128].decode(errors='replace')}' " for a in args[1:])
    return ReplyError(f"ERR unknown command '{name[:128]}', with args beginning with: {rest}")


def unsupported(name: str) -> ReplyError:
    return ReplyError(
        f"ERR redquorum does not support '{name}': only string and keyspace commands are "
        "replicated (see the README's command list)"
    )


RESERVED = ReplyError(
    "ERR redquorum: keys starting with '__rq:' are reserved for the proxy's own bookkeeping"
)

# Real Redis commands that redquorum refuses by name rather than as unknown.
UNSUPPORTED = set(
    """hset hget hmset hmget hgetall hdel hexists hincrby hincrbyfloat hkeys hvals hlen hsetnx
    hstrlen hscan hrandfield lpush rpush lpop rpop llen lrange lindex lset lrem ltrim linsert
    lpos lmove blmove blpop brpop brpoplpush rpoplpush lmpop blmpop lpushx rpushx sadd srem
    smembers sismember smismember scard spop srandmember sinter sinterstore sunion sunionstore
    sdiff sdiffstore smove sscan sintercard zadd zrem zrange zrangebyscore zrevrange zscore
    zincrby zcard zcount zrank zrevrank zscan zpopmin zpopmax bzpopmin bzpopmax zrangestore
    zunion zunionstore zinter zinterstore zdiff zdiffstore zmscore zrandmember zlexcount
    zrangebylex zrevrangebylex zrevrangebyscore zremrangebyrank zremrangebyscore
    zremrangebylex zintercard zmpop bzmpop xadd xrange xrevrange xlen xread xreadgroup xgroup
    xack xclaim xautoclaim xpending xtrim xdel xinfo xsetid pfadd pfcount pfmerge pfdebug
    pfselftest geoadd geodist geohash geopos georadius georadiusbymember geosearch
    geosearchstore georadius_ro georadiusbymember_ro setbit getbit bitcount bitpos bitop
    bitfield bitfield_ro multi exec discard watch unwatch subscribe unsubscribe psubscribe
    punsubscribe publish pubsub ssubscribe sunsubscribe spublish eval evalsha eval_ro
    evalsha_ro script fcall fcall_ro function cluster readonly readwrite asking wait waitaof
    failover replicaof slaveof sync psync replconf move swapdb migrate restore restore-asking
    dump object sort sort_ro lcs monitor debug save bgsave bgrewriteaof lastsave shutdown
    slowlog latency memory module acl role lolwut sync config""".split()
)


def check_reserved(keys: list[bytes]) -> ReplyError | None:
    for key in keys:
        if key.startswith(RESERVED_PREFIX):
            return RESERVED
    return None


# ---------------------------------------------------------------------------
# small parsing helpers


def parse_int(data: bytes) -> int | None:
    """Redis's string2ll: no spaces, no '+', no leading zeros, within int64."""
    if not data or len(data) > 20:
        return None
    try:
        value = int(data)
    except ValueError:
        return None
    if b"%d" % value != data or not -MAX_INT64 - 1 <= value <= MAX_INT64:
        return None
    return value


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def value_of(obj: Versioned) -> bytes | None:
    best = obj.winner(now_ms())
    return None if best is None else best.value


def gather(count: int, done: Callable[[Any], None], combine: Callable[[list[Any]], Any]
           ) -> Callable[[int], Callable[[Any], None]]:
    """Join ``count`` callbacks into one: the first error wins, else ``combine(results)``."""
    results: list[Any] = [None] * count
    remaining = [count]

    def part(i: int) -> Callable[[Any], None]:
        def got(value: Any) -> None:
            results[i] = value
            remaining[0] -= 1
            if remaining[0] == 0:
                errors = [r for r in results if isinstance(r, ReplyError)]
                done(errors[0] if errors else combine(results))
        return got
    return part


def write(app: Proxy, s: Session, batch: Batch, key: bytes, op: bytes, op_args: list[bytes],
          convert: Callable[[bytes | None, Any], Any], context: bytes = b"*") -> object:
    done = batch.defer()

    def finish(result: Any) -> None:
        if isinstance(result, ReplyError):
            done(result)
        else:
            done(convert(result[0], result[1]))

    app.coordinator.write(key, s.w, context, op, op_args, finish)
    return DEFERRED


def read(app: Proxy, s: Session, batch: Batch, key: bytes,
         convert: Callable[[Versioned], Any]) -> object:
    done = batch.defer()

    def finish(result: Any) -> None:
        done(result if isinstance(result, ReplyError) else convert(result))

    app.coordinator.read(key, s.r, finish)
    return DEFERRED


# ---------------------------------------------------------------------------
# connection commands


@command("PING", -1, "fast", group="connection", summary="Returns the server's liveliness response.")
def cmd_ping(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) > 2:
        return err_arity("ping")
    return args[1] if len(args) == 2 else PONG


@command("ECHO", 2, "fast", group="connection", summary="Returns the given string.")
def cmd_echo(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return args[1]


@command("QUIT", -1, "fast", group="connection", summary="Closes the connection.")
def cmd_quit(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    s.closing = True
    return OK


@command("SELECT", 2, "fast", group="connection", summary="Changes the selected database.")
def cmd_select(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    db = parse_int(args[1])
    if db is None:
        return NOT_INT
    if db != 0:
        return ReplyError("ERR DB index is out of range")
    return OK


@command("AUTH", -2, "fast noauth", group="connection", summary="Authenticates the connection.")
def cmd_auth(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) > 3:
        return SYNTAX
    return app.authenticate(s, args[1] if len(args) == 2 else args[2],
                            None if len(args) == 2 else args[1])


@command("HELLO", -1, "fast noauth", group="connection", summary="Handshakes with the server.")
def cmd_hello(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    proto = s.proto
    if len(args) >= 2:
        ver = parse_int(args[1])
        if ver is None:
            return ReplyError("ERR Protocol version is not an integer or out of range")
        if ver not in (2, 3):
            return ReplyError("NOPROTO unsupported protocol version")
        proto = ver
    i = 2
    name = None
    while i < len(args):
        opt = args[i].lower()
        more = len(args) - i - 1
        if opt == b"auth" and more >= 2:
            result = app.authenticate(s, args[i + 2], args[i + 1])
            if isinstance(result, ReplyError):
                return result
            i += 3
        elif opt == b"setname" and more >= 1:
            name = args[i + 1]
            if not valid_client_name(name):
                return ReplyError("ERR Client names cannot contain spaces, newlines or special characters.")
            i += 2
        else:
            return ReplyError(f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'")
    if app.config.password and not s.authenticated:
        return ReplyError("NOAUTH HELLO must be called with the client already authenticated, "
                          "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                          "authenticate the client and select the RESP protocol version at the "
                          "same time")
    if name is not None:
        s.name = name
    s.proto = proto
    return {
        "server": "redis",
        "version": REDIS_VERSION,
        "proto": proto,
        "id": s.id,
        "mode": "standalone",
        "role": "master",
        "modules": [],
    }


def valid_client_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


@command("RESET", 1, "fast noauth", group="connection", summary="Resets the connection.")
def cmd_reset(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    s.reset(app)
    return Simple("RESET")


@command("CLIENT", -2, "", group="connection", summary="A container for client connection commands.")
def cmd_client(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    sub = args[1].lower()
    if sub == b"setname" and len(args) == 3:
        if not valid_client_name(args[2]) and args[2]:
            return ReplyError("ERR Client names cannot contain spaces, newlines or special characters.")
        s.name = args[2]
        return OK
    if sub == b"getname" and len(args) == 2:
        return s.name or None
    if sub == b"id" and len(args) == 2:
        return s.id
    if sub == b"setinfo" and len(args) == 4:
        attr = args[2].lower()
        if attr == b"lib-name":
            s.lib_name = args[3]
        elif attr == b"lib-ver":
            s.lib_ver = args[3]
        else:
            return ReplyError(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'")
        return OK
    if sub == b"info" and len(args) == 2:
        return Verbatim(app.client_line(s) + "\n")
    if sub == b"list":
        return Verbatim("".join(app.client_line(c) + "\n" for c in app.sessions.values()))
    if sub in (b"no-evict", b"no-touch", b"reply") and len(args) == 3:
        if args[2].lower() not in (b"on", b"off", b"skip"):
            return SYNTAX
        return OK
    if sub == b"help":
        return ["CLIENT <subcommand> [<arg> ...]. Subcommands are:",
                "ID", "GETNAME", "SETNAME <name>", "SETINFO <LIB-NAME|LIB-VER> <value>",
                "INFO", "LIST", "NO-EVICT (ON|OFF)", "NO-TOUCH (ON|OFF)"]
    if sub in (b"setname", b"getname", b"id", b"setinfo", b"info", b"no-evict", b"no-touch"):
        return ReplyError(f"ERR wrong number of arguments for 'client|{sub.decode()}' command")
    return ReplyError(f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try CLIENT HELP.")


# ---------------------------------------------------------------------------
# server commands


@command("INFO", -1, "", group="server", summary="Returns information and statistics about the server.")
def cmd_info(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return Verbatim(info.render(app, [a.decode(errors="replace").lower() for a in args[1:]]))


@command("TIME", 1, "fast", group="server", summary="Returns the server time.")
def cmd_time(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    now = time.time_ns() // 1000
    return [b"%d" % (now // 1_000_000), b"%d" % (now % 1_000_000)]


@command("COMMAND", -1, "", group="server", summary="Returns detailed information about all commands.")
def cmd_command(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) == 1:
        return [command_info(c) for c in TABLE.values()]
    sub = args[1].lower()
    if sub == b"count":
        return len(TABLE)
    if sub == b"list":
        return [c.name.encode() for c in TABLE.values()]
    if sub == b"info":
        return [command_info(TABLE[a.lower()]) if a.lower() in TABLE else None for a in args[2:]]
    if sub == b"docs":
        wanted = [a.lower() for a in args[2:]] or list(TABLE)
        return {c.decode(): command_docs(TABLE[c]) for c in wanted if c in TABLE}
    if sub == b"getkeys":
        if len(args) < 3:
            return err_arity("command|getkeys")
        target = TABLE.get(args[2].lower())
        if target is None:
            return ReplyError("ERR Invalid command specified")
        if not arity_ok(target, len(args) - 2):
            return ReplyError("ERR Invalid number of arguments specified for command")
        keys = target.keys(args[2:])
        if not keys:
            return ReplyError("ERR The command has no key arguments")
        return keys
    if sub == b"help":
        return ["COMMAND <subcommand> [<arg> ...]. Subcommands are:", "(no subcommand)", "COUNT",
                "DOCS [<command-name> ...]", "GETKEYS <full-command>", "INFO [<command-name> ...]",
                "LIST"]
    return ReplyError(f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try COMMAND HELP.")


def arity_ok(c: Command, argc: int) -> bool:
    return argc == c.arity if c.arity > 0 else argc >= -c.arity


def command_info(c: Command) -> list[Any]:
    flags = [Simple(f) for f in c.flags if f in ("write", "readonly", "fast", "noauth", "loading",
                                                  "stale", "denyoom")]
    specs = []
    if c.first_key:
        specs.append({
            "begin_search": {"type": "index", "spec": {"index": c.first_key}},
            "find_keys": {"type": "range", "spec": {"lastkey": c.last_key - c.first_key if c.last_key > 0 else c.last_key,
                                                     "keystep": c.step, "limit": 0}},
        })
    return [c.name, c.arity, flags, c.first_key, c.last_key, c.step, [], [], specs, []]


def command_docs(c: Command) -> dict[str, Any]:
    return {"summary": c.summary or c.name.upper(), "since": "1.0.0", "group": c.group}


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
                              _unwrap(part(i)))
    return DEFERRED


def _unwrap(done: Callable[[Any], None]) -> Callable[[Any], None]:
    return lambda result: done(result if isinstance(result, ReplyError) else result[1])


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


# ---------------------------------------------------------------------------
# keyspace


@command("DEL", -2, "write", (1, -1, 1), "generic", "Deletes one or more keys.")
def cmd_del(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()
    keys = args[1:]
    part = gather(len(keys), done, sum)
    for i, key in enumerate(keys):
        app.coordinator.write(key, s.w, b"*", b"del", [], _unwrap(part(i)))
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


# ---------------------------------------------------------------------------
# redquorum's own commands


@command("RQ.GET", 2, "readonly", (1, 1, 1), "redquorum", "Returns all live siblings of a key and its causal context.")
def cmd_rq_get(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read(app, s, batch, args[1], _context_reply)


def _context_reply(obj: Versioned) -> list[Any]:
    now = now_ms()
    return [clock.encode_context(obj.clock), [sib.value for sib in obj.live(now)]]


@command("RQ.SET", -4, "write denyoom", (1, 1, 1), "redquorum", "Writes a value with a causal context; concurrent writes become siblings.")
def cmd_rq_set(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    try:
        ctx = clock.decode_context(args[2])
    except BadContext:
        return BAD_CONTEXT
    expire_at = 0
    if len(args) > 4:
        if len(args) != 6 or args[4].upper() not in (b"EX", b"PX"):
            return SYNTAX
        number = parse_int(args[5])
        if number is None:
            return NOT_INT
        if number <= 0:
            return ReplyError("ERR invalid expire time in 'rq.set' command")
        expire_at = now_ms() + number * (1000 if args[4].upper() == b"EX" else 1)
    return write(app, s, batch, args[1], b"rqset", [args[3], b"%d" % expire_at],
                 _object_reply, context=clock.context_payload(ctx) if ctx else b"")


def _object_reply(blob: bytes | None, _: Any) -> Any:
    return _context_reply(clock.decode(blob))


BAD_CONTEXT = ReplyError("ERR redquorum: invalid context (pass the context of an RQ.GET or "
                         "RQ.SET reply unchanged, or an empty string)")


@command("RQ.DEL", 3, "write", (1, 1, 1), "redquorum", "Deletes what a causal context covers (a tombstone).")
def cmd_rq_del(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    try:
        ctx = clock.decode_context(args[2])
    except BadContext:
        return BAD_CONTEXT
    return write(app, s, batch, args[1], b"del", [], lambda blob, existed: existed,
                 context=clock.context_payload(ctx) if ctx else b"")


@command("RQ.CONSISTENCY", -1, "fast", group="redquorum", summary="Gets or sets this connection's read and write quorum.")
def cmd_rq_consistency(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    if len(args) == 1:
        return [s.r, s.w]
    if len(args) == 2 and args[1].upper() == b"RESET":
        s.r, s.w = app.config.r, app.config.w
        return OK
    if len(args) != 3:
        return err_arity("rq.consistency")
    r, w = parse_int(args[1]), parse_int(args[2])
    n = app.config.n
    if r is None or w is None:
        return NOT_INT
    if not (1 <= r <= n and 1 <= w <= n):
        return ReplyError(f"ERR redquorum: r and w must each be within 1..{n}")
    s.r, s.w = r, w
    return OK


@command("RQ.INSPECT", 2, "readonly", (1, 1, 1), "redquorum", "Shows each replica's copy of a key: clock, siblings, tombstone, TTL.")
def cmd_rq_inspect(app: Proxy, s: Session, args: list[bytes], batch: Batch) -> Any:
    done = batch.defer()

    def finish(entries: list[Any]) -> None:
        done([_inspect_entry(link, role, reply) for link, role, reply in entries])

    app.coordinator.inspect(args[1], finish)
    return DEFERRED


def _inspect_entry(link: Any, role: str, reply: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": link.id, "role": role, "address": link.address}
    if type(reply) is not list:
        entry.update(reachable=0, clock="", siblings=0, tombstone=0, pttl=-2,
                     error=getattr(reply, "reason", None) or getattr(reply, "text", "error"))
        return entry
    blob, pttl = reply
    try:
        obj = clock.decode(blob)
    except clock.CorruptObject as exc:
        entry.update(reachable=1, clock="", siblings=0, tombstone=0, pttl=pttl, error=str(exc))
        return entry
    now = now_ms()
    entry.update(
        reachable=1,
        clock=clock.clock_text(obj.clock),
        siblings=len(obj.siblings),
        tombstone=1 if obj.siblings and all(x.dead(now) for x in obj.siblings) else 0,
        pttl=pttl,
        live=len(obj.live(now)),
        bytes=len(blob) if blob else 0,
    )
    return entry
