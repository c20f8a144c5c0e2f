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

from ..protocol.resp import ReplyError
from ..replication import wire
from ..replication.clock import Versioned

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .session import Session

RESERVED_PREFIX = b"__rq:"
DEFERRED = object()
MAX_INT64 = 2**63 - 1
# The latest absolute expiry stored (ms, year 287,396): the replicas' Lua numbers are
# doubles, so a later one would be rounded there (the largest ones past int64).
MAX_EXPIRE_MS = 2**53 - 1


class Batch:
    """The replies of one client read, in order; deferred ones are filled by callbacks.

    When the last deferred reply arrives, ``on_done`` runs (proxy/clients.py sends the
    replies from there); it is set only after the whole batch is dispatched, so a reply
    filled during dispatch never finishes a batch early.
    """

    __slots__ = ("results", "names", "pending", "on_done", "written", "fenced")

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.names: list[bytes] = []  # the command name of each result, for metrics
        self.pending = 0
        self.on_done: Callable[[], None] | None = None
        self.written: set[bytes] | None = None  # keys the batch writes, made on the first
        # an EXEC was dispatched: every later command waits for the pending replies
        self.fenced = False

    def defer(self) -> Callable[[Any], None]:
        index = len(self.results)
        self.results.append(None)
        self.pending += 1
        return partial(self._complete, index)

    def _complete(self, index: int, value: Any) -> None:
        self.results[index] = value
        self.pending -= 1
        if self.pending == 0 and self.on_done is not None:
            self.on_done()


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
    writes: bool = False  # "write" in flags
    # keyless, and reads or writes the whole keyspace (KEYS, SCAN, FLUSHALL...) or changes
    # how replies are encoded (HELLO, RESET): waits for every reply before it in a batch
    barrier: bool = False
    # not queued between MULTI and EXEC: runs at once (EXEC, DISCARD, MULTI, WATCH, QUIT,
    # RESET, as Redis)
    in_multi: bool = False
    # CLIENT, COMMAND, CONFIG: statistics are kept per subcommand ("config|get"), as Redis
    container: bool = False

    def keys(self, args: list[bytes]) -> list[bytes]:
        if not self.first_key:
            return []
        last = self.last_key if self.last_key > 0 else len(args) + self.last_key
        return args[self.first_key : last + 1 : self.step]


def arity_ok(c: Command, argc: int) -> bool:
    return argc == c.arity if c.arity > 0 else argc >= -c.arity


TABLE: dict[bytes, Command] = {}
RUN_IN_MULTI = ("exec", "discard", "multi", "watch", "quit", "reset")
CONTAINERS = ("client", "command", "config")


def command(name: str, arity: int, flags: str = "", keys: tuple[int, int, int] = (0, 0, 0),
            group: str = "generic", summary: str = "") -> Callable[[Callable[..., Any]], Any]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        names = tuple(flags.split())
        barrier = not keys[0] and (name.lower() in ("hello", "reset", "exec")
                                   or "write" in names or "readonly" in names)
        TABLE[name.lower().encode()] = Command(name.lower(), fn, arity, names, *keys, group=group,
                                               summary=summary, writes="write" in names,
                                               barrier=barrier,
                                               in_multi=name.lower() in RUN_IN_MULTI,
                                               container=name.lower() in CONTAINERS)
        return fn
    return register


# ---------------------------------------------------------------------------
# errors with Redis's texts


class Rejected(ReplyError):
    """An error given before the command ran (arity, NOAUTH, reserved key, refused while
    queued in MULTI): INFO counts it in rejected_calls, not in calls."""


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
    geosearchstore georadius_ro georadiusbymember_ro subscribe unsubscribe psubscribe
    punsubscribe publish pubsub ssubscribe sunsubscribe spublish eval evalsha eval_ro
    evalsha_ro script fcall fcall_ro function cluster readonly readwrite asking wait waitaof
    failover replicaof slaveof sync psync replconf move swapdb migrate restore restore-asking
    dump object sort sort_ro monitor debug save bgsave bgrewriteaof lastsave shutdown
    slowlog latency memory module role lolwut sync config""".split()
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


def stored_expiry(ms: int) -> int:
    """An absolute expiry Redis accepted, as the replicas keep it: at most year 287,396."""
    return min(ms, MAX_EXPIRE_MS)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def value_of(obj: Versioned) -> bytes | None:
    best = obj.winner(now_ms())
    return None if best is None else best.value


def write(app: App, s: Session, batch: Batch, key: bytes, op: wire.Op,
          convert: Callable[[bytes | None, Any], Any], context: bytes = b"*") -> object:
    done = batch.defer()

    def finish(result: Any) -> None:
        if isinstance(result, ReplyError):
            done(result)
        else:
            done(convert(result[0], result[1]))

    app.coordinator.write(key, s.w, context, op, finish)
    return DEFERRED


def read(app: App, s: Session, batch: Batch, key: bytes,
         convert: Callable[[Versioned], Any]) -> object:
    done = batch.defer()

    def finish(result: Any) -> None:
        done(result if isinstance(result, ReplyError) else convert(result))

    app.coordinator.read(key, s.r, finish)
    return DEFERRED


def unwrap(done: Callable[[Any], None]) -> Callable[[Any], None]:
    return lambda result: done(result if isinstance(result, ReplyError) else result[1])



# ---------------------------------------------------------------------------
# argument parsing shared by the command families


def parse_int32(data: bytes) -> int | ReplyError:
    """Redis's getIntFromObjectOrReply: an int64 text within the C ``int`` range."""
    value = parse_int(data)
    if value is None:
        return NOT_INT
    if not -(2**31) <= value <= 2**31 - 1:
        return ReplyError("ERR value is out of range, value must between -2147483648 and 2147483647")
    return value
