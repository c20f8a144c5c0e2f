"""redquorum's own commands: RQ.GET, RQ.SET, RQ.DEL, RQ.CONSISTENCY, RQ.INSPECT.

Contexts are signed for their key (proxy/replication/contexts.py): RQ.GET and RQ.SET
answer signed ones, RQ.SET and RQ.DEL refuse any that does not verify.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from ..protocol.resp import OK, ReplyError
from ..replication import clock, wire
from ..replication.clock import BadContext, Versioned
from .strings import EXPIRE_TOKENS, expire_ms
from .table import DEFERRED, NOT_INT, SYNTAX, Batch, command, err_arity, now_ms, parse_int, read, write

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .session import Session


# ---------------------------------------------------------------------------
# redquorum's own commands


@command("RQ.GET", 2, "readonly", (1, 1, 1), "redquorum", "Returns all live siblings of a key and its causal context.")
def cmd_rq_get(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    if not app.contexts.ready:
        return NO_SECRET
    return read(app, s, batch, args[1], partial(_context_reply, app, args[1]))


def _context_reply(app: App, key: bytes, obj: Versioned) -> list[Any]:
    now = now_ms()
    return [app.contexts.sign(key, obj.clock), [sib.value for sib in obj.live(now)]]


def _client_context(app: App, key: bytes, data: bytes) -> dict[bytes, int] | ReplyError:
    if not app.contexts.ready:
        return NO_SECRET
    try:
        return app.contexts.verify(key, data)
    except BadContext:
        return BAD_CONTEXT


@command("RQ.SET", -4, "write denyoom", (1, 1, 1), "redquorum", "Writes a value with a causal context; concurrent writes become siblings.")
def cmd_rq_set(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    ctx = _client_context(app, args[1], args[2])
    if isinstance(ctx, ReplyError):
        return ctx
    expire_at = 0
    if len(args) > 4:
        if len(args) != 6 or args[4].upper() not in (b"EX", b"PX"):
            return SYNTAX
        expire_at = expire_ms(EXPIRE_TOKENS[args[4].upper()], args[5], "rq.set")
        if isinstance(expire_at, ReplyError):
            return expire_at
    convert = partial(_object_reply, app, args[1])
    if app.config.mode == "lww":  # one round trip, no object comes back: the value won
        value = args[3]
        convert = lambda blob, _: [b"", [value]]  # noqa: E731
    return write(app, s, batch, args[1], wire.client_set(args[3], expire_at),
                 convert, context=clock.context_payload(ctx) if ctx else b"")


def _object_reply(app: App, key: bytes, blob: bytes | None, _: Any) -> Any:
    return _context_reply(app, key, clock.decode(blob))


BAD_CONTEXT = ReplyError("ERR redquorum: invalid context (pass the context of an RQ.GET or "
                         "RQ.SET reply of the same key unchanged, or an empty string)")
NO_SECRET = ReplyError("ERR redquorum: contexts cannot be signed yet: no replica has been "
                       "reachable since the proxy started")


@command("RQ.DEL", 3, "write", (1, 1, 1), "redquorum", "Deletes what a causal context covers (a tombstone).")
def cmd_rq_del(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    ctx = _client_context(app, args[1], args[2])
    if isinstance(ctx, ReplyError):
        return ctx
    return write(app, s, batch, args[1], wire.delete(), lambda blob, existed: existed,
                 context=clock.context_payload(ctx) if ctx else b"")


@command("RQ.CONSISTENCY", -1, "fast", group="redquorum", summary="Gets or sets this connection's read and write quorum.")
def cmd_rq_consistency(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
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
    if w < app.config.min_w:
        # read-modify-write commands read n - min_w + 1 homes, enough to meet every write
        # acknowledged by min_w of them; a lower w would let them miss one
        return ReplyError(f"ERR redquorum: w={w} is below the cluster's min_w={app.config.min_w} "
                          "(start the proxies with --min-w to allow it)")
    s.r, s.w = r, w
    return OK


@command("RQ.INSPECT", 2, "readonly", (1, 1, 1), "redquorum", "Shows each replica's copy of a key: clock, siblings, tombstone, TTL.")
def cmd_rq_inspect(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
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
