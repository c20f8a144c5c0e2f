"""Keyspace-wide commands over every replica: SCAN's cursor, KEYS, DBSIZE, RANDOMKEY, FLUSHDB.

Theory of operation
-------------------
1. No replica holds "the" keyspace: a key lives on its ``n`` home replicas, and a write
   acknowledged by ``w`` of them may be missing on the others until repair. So the
   keyspace-wide commands walk **every replica** (in replica-id order, so a cursor means
   the same thing to every proxy with the same replicas) and take the union.
2. Each replica answers through the function ``rq_scan`` (replicas/redquorum.lua): one
   Redis SCAN step, keeping only keys a client may see, i.e. not the proxy's own
   ``__rq:`` bookkeeping and not dead objects (every sibling a tombstone or expired, at
   the proxy's clock).
3. SCAN's cursor encodes (replica index, that replica's own SCAN cursor, replicas
   skipped): ``replica_cursor << 16 | skipped << 8 | index``. Cursor 0 starts at the
   first replica; the cursor moves to the next replica when one finishes, and the walk
   answers 0 after the last. Redis's guarantee carries over: a key present during the
   whole walk is returned at least once (once per replica holding it: duplicates are
   allowed, and each reply is de-duplicated).
4. A replica that is down when the walk reaches it is skipped, at most ``w - 1`` times per
   walk: a key acknowledged by ``w`` replicas is then still on one that was walked.
   More than that answers ``-NOQUORUM`` rather than silently missing keys.
5. KEYS and DBSIZE walk every replica to the end (large COUNT steps, so replicas never
   block on one long call) and answer the distinct keys: DBSIZE is O(keys), not O(1).
6. A replica that missed a DEL (it was down) shows the key until read repair reaches it:
   keyspace listings are eventually consistent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..protocol.resp import OK, ReplyError
from ..protocol.resp import command as request
from ..replication import wire
from ..replication.links import ReplicaFailure
from .table import now_ms

if TYPE_CHECKING:  # pragma: no cover
    from ..replication.links import Link as ReplicaLink
    from .app import App

Done = Callable[[Any], None]

WALK_COUNT = b"1000"  # SCAN COUNT of the steps KEYS and DBSIZE take
MAX_CURSOR = 2**64 - 1
INVALID_CURSOR = ReplyError("ERR invalid cursor")


def replicas(app: App) -> list[ReplicaLink]:
    return [app.links[i] for i in sorted(app.links)]


def allowed_skips(app: App) -> int:
    return max(app.config.w - 1, 0)


def parse_cursor(text: bytes) -> int | None:
    """Redis's parseScanCursorOrReply (strtoul): '' is 0, '-1' wraps, spaces are refused."""
    if text[:1].isspace():
        return None
    body = text
    negative = False
    if body[:1] in (b"+", b"-"):
        negative = body[:1] == b"-"
        body = body[1:]
    if not body:
        return 0 if not text else None
    if not body.isdigit():
        return None
    value = int(body)
    if value > MAX_CURSOR:
        return None
    return (-value) % 2**64 if negative else value


def encode_cursor(index: int, replica_cursor: int, skipped: int) -> int:
    return replica_cursor << 16 | skipped << 8 | index


def decode_cursor(cursor: int) -> tuple[int, int, int]:
    return cursor & 0xFF, cursor >> 16, (cursor >> 8) & 0xFF


def _noquorum(what: str, skipped: list[str], allowed: int) -> ReplyError:
    return ReplyError(
        f"NOQUORUM {what} must walk every replica but {', '.join(skipped)} "
        f"{'is' if len(skipped) == 1 else 'are'} unreachable (at most {allowed} may be skipped)")


def _why(link: ReplicaLink, reply: Any) -> str:
    if isinstance(reply, ReplicaFailure):
        return f"{link.id} ({reply.reason})"
    if isinstance(reply, ReplyError):
        return f"{link.id} ({reply.text})"
    return link.id


# ---------------------------------------------------------------------------
# SCAN


def scan_step(app: App, cursor: int, count: int, pattern: bytes, done: Done) -> None:
    """One SCAN call: ``done([next cursor bytes, keys])`` or a ReplyError."""
    links = replicas(app)
    index, replica_cursor, skipped = decode_cursor(cursor)
    allowed = allowed_skips(app)
    count_arg = b"%d" % count

    def visit(index: int, replica_cursor: int, skipped: int) -> None:
        if index >= len(links):
            done([b"0", []])
            return
        link = links[index]

        def got(reply: Any) -> None:
            if type(reply) is not list:
                if skipped + 1 > allowed:
                    done(_noquorum("SCAN", [_why(link, reply)], allowed))
                    return
                visit(index + 1, 0, skipped + 1)
                return
            next_cursor = int(reply[0])
            keys = list(dict.fromkeys(reply[1]))
            if next_cursor == 0:
                following = index + 1
                cursor = 0 if following >= len(links) else encode_cursor(following, 0, skipped)
            else:
                cursor = encode_cursor(index, next_cursor, skipped)
            done([b"%d" % cursor, keys])

        link.request(wire.scan_step(now_ms(), b"%d" % replica_cursor, count_arg, pattern), got)

    visit(index, replica_cursor, skipped)


# ---------------------------------------------------------------------------
# KEYS, DBSIZE: whole walks


def walk(app: App, pattern: bytes, what: str, done: Done) -> None:
    """Every visible key matching ``pattern`` on every reachable replica: ``done(set)``."""
    links = replicas(app)
    allowed = allowed_skips(app)
    skipped = [link.id for link in links if not link.up]
    if len(skipped) > allowed:
        done(_noquorum(what, skipped, allowed))
        return
    walking = [link for link in links if link.up]
    if not walking:
        done(set())
        return
    found: set[bytes] = set()
    remaining = [len(walking)]

    def finish_one(failure: str | None) -> None:
        if failure is not None:
            skipped.append(failure)
        remaining[0] -= 1
        if remaining[0] == 0:
            done(_noquorum(what, skipped, allowed) if len(skipped) > allowed else found)

    def step(link: ReplicaLink, cursor: bytes) -> None:
        def got(reply: Any) -> None:
            if type(reply) is not list:
                finish_one(_why(link, reply))
                return
            found.update(reply[1])
            if reply[0] == b"0":
                finish_one(None)
            else:
                step(link, reply[0])

        link.request(wire.scan_step(now_ms(), cursor, WALK_COUNT, pattern), got)

    for link in walking:
        step(link, b"0")


# ---------------------------------------------------------------------------
# RANDOMKEY


def random_key(app: App, done: Done) -> None:
    """A visible key from a random reachable replica (the next one when it has none)."""
    links = [link for link in replicas(app) if link.up]
    if not links:
        done(ReplyError("NOQUORUM RANDOMKEY needs a reachable replica, none is"))
        return
    random.shuffle(links)

    def ask(i: int) -> None:
        if i >= len(links):
            done(None)
            return

        def got(reply: Any) -> None:
            if type(reply) is bytes:
                done(reply)
            else:  # None (nothing there) or a failure: ask the next replica
                ask(i + 1)

        links[i].request(wire.random_key(now_ms()), got)

    ask(0)


# ---------------------------------------------------------------------------
# FLUSHDB, FLUSHALL


def flush(app: App, name: str, option: bytes | None, done: Done) -> None:
    """FLUSHDB on every replica; refused while one is unreachable, so a stale replica
    cannot bring flushed keys back through repair."""
    links = replicas(app)
    down = [link.id for link in links if not link.up]
    if down:
        done(ReplyError(f"ERR redquorum: {name} must reach every replica and "
                        f"{', '.join(down)} {'is' if len(down) == 1 else 'are'} down; "
                        "nothing was flushed"))
        return
    payload = request(b"FLUSHDB", option) if option else request(b"FLUSHDB")
    failed: list[str] = []
    remaining = [len(links)]

    def one(link: ReplicaLink) -> Done:
        def got(reply: Any) -> None:
            if reply != b"OK":
                failed.append(_why(link, reply))
            remaining[0] -= 1
            if remaining[0] == 0:
                if failed:
                    done(ReplyError(f"ERR redquorum: {name} failed on {', '.join(failed)} and "
                                    "reached the other replicas; run it again"))
                else:
                    done(OK)
        return got

    for link in links:
        link.request(payload, one(link))
