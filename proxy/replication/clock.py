"""Dotted version vectors as immutable values.

Theory of operation
-------------------
A stored object is a *dotted causal container*: a version vector ``clock`` (one
counter per replica actor: every event this object has seen) and a set of
``siblings``, each a value tagged with the *dot* ``(actor, counter)`` of the write that
made it. The rules, after Riak's dvvset and Preguiça et al.:

1. Invariant: every sibling's dot is covered by the clock (``clock[actor] >= counter``).
2. ``update`` (a write at actor ``a`` with context ``ctx``): drop the siblings whose dot
   ``ctx`` covers (the writer saw them), add the new value with dot
   ``(a, max(clock[a], ctx[a]) + 1)``, and join ``ctx`` into the clock. A dot is never
   reused, even by a coordinator that lost data, because ``ctx[a]`` came from a client.
3. ``sync`` (merge two replicas' states): the clock is the pointwise max; a sibling
   survives if the other side holds the same dot or has not seen it. Sync is
   commutative, associative and idempotent (tests/test_clock.py checks this with
   hypothesis), so replicas converge whatever order merges arrive in.
4. Two writes that did not see each other both survive as siblings. A plain GET
   answers the live sibling with the highest ``(timestamp, actor)``; ``RQ.GET`` answers
   all of them.
5. Deletes are tombstone siblings; expired values count as dead like tombstones, so
   a stale replica cannot bring either back while the tombstone grace lasts.

Who encodes: only the replica's Lua script (replicas/redquorum.lua) writes stored bytes,
so equal objects are equal bytes on every replica. Python decodes stored objects and
encodes only client contexts, which it also validates on the way back in.

Stored layout (msgpack, arrays only):
``[1, [actor, counter, ...], [[actor, counter, ts_us, tombstone, expire_at_ms, value], ...]]``
with actors sorted by bytes and siblings by dot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import msgpack

FORMAT = 1
CONTEXT_VERSION = 1
MAX_ACTOR = 64
MAX_COUNTER = 2**53 - 1  # Lua numbers are doubles

Clock = tuple[tuple[bytes, int], ...]


class Sibling(NamedTuple):
    # A NamedTuple, not a frozen dataclass: decoding builds one per sibling on every
    # read, and a frozen dataclass's __init__ cost 2 µs of a 2.6 µs decode.
    actor: bytes
    counter: int
    timestamp: int  # microseconds since the epoch
    tombstone: bool
    expire_at: int  # absolute milliseconds; 0 = never
    value: bytes

    @property
    def dot(self) -> tuple[bytes, int]:
        return (self.actor, self.counter)

    def dead(self, now_ms: int) -> bool:
        return self.tombstone or (self.expire_at != 0 and self.expire_at <= now_ms)


class Versioned(NamedTuple):
    clock: Clock
    siblings: tuple[Sibling, ...]

    def clock_map(self) -> dict[bytes, int]:
        return dict(self.clock)

    def live(self, now_ms: int) -> list[Sibling]:
        return [s for s in self.siblings if not s.dead(now_ms)]

    def winner(self, now_ms: int) -> Sibling | None:
        """The sibling a plain GET answers: the newest by (timestamp, actor) among all,
        tombstones and expired values included; None when that one is dead (a DEL or an
        expiry newer than a concurrent value wins, as the later command does in Redis)."""
        best = None
        for s in self.siblings:
            if best is None or (s.timestamp, s.actor) > (best.timestamp, best.actor):
                best = s
        if best is None or best.dead(now_ms):
            return None
        return best

    def newest_timestamp(self) -> int:
        return max((s.timestamp for s in self.siblings), default=0)

    def all_tombstones(self) -> bool:
        return bool(self.siblings) and all(s.tombstone for s in self.siblings)


EMPTY = Versioned((), ())


def normalise(clock: Mapping[bytes, int], siblings: Iterable[Sibling]) -> Versioned:
    return Versioned(
        tuple(sorted((a, c) for a, c in clock.items() if c > 0)),
        tuple(sorted(siblings, key=lambda s: s.dot)),
    )


# ---------------------------------------------------------------------------
# the verbs


def covers(clock: Mapping[bytes, int], sibling: Sibling) -> bool:
    return clock.get(sibling.actor, 0) >= sibling.counter


def join(a: Mapping[bytes, int], b: Mapping[bytes, int]) -> dict[bytes, int]:
    out = dict(a)
    for actor, counter in b.items():
        if out.get(actor, 0) < counter:
            out[actor] = counter
    return out


def descends(a: Mapping[bytes, int], b: Mapping[bytes, int]) -> bool:
    """True when ``a`` has seen everything ``b`` has."""
    return all(a.get(actor, 0) >= counter for actor, counter in b.items())


def sync(a: Versioned, b: Versioned) -> Versioned:
    """Merge two replicas' states (rule 3)."""
    if a == b:
        return a
    ca, cb = a.clock_map(), b.clock_map()
    dots_a = {s.dot for s in a.siblings}
    by_dot_b = {s.dot: s for s in b.siblings}
    kept = []
    for s in a.siblings:
        theirs = by_dot_b.get(s.dot)
        if theirs is not None:
            # a dot minted twice with other content (a replica lost a key without losing
            # its actor): every replica keeps the same one of the two, so they converge
            kept.append(theirs if lww_order(s) < lww_order(theirs) else s)
        elif not covers(cb, s):
            kept.append(s)
    kept += [s for s in b.siblings if s.dot not in dots_a and not covers(ca, s)]
    return normalise(join(ca, cb), kept)


def sync_all(objects: Iterable[Versioned]) -> Versioned:
    merged = EMPTY
    for obj in objects:
        merged = sync(merged, obj)
    return merged


def lww_order(s: Sibling) -> tuple[int, bytes, int, bool, int, bytes]:
    """Last-write-wins order: (timestamp, actor), then the rest of the sibling, so exact
    ties resolve the same way on every replica (the script's ``lww_less``)."""
    return (s.timestamp, s.actor, s.counter, s.tombstone, s.expire_at, s.value)


def lww_resolve(objects: Iterable[Versioned]) -> Versioned:
    """Last-write-wins: the newest sibling of all the objects, tombstones and expired
    values included, alone, its dot the whole clock (the script's ``rq_merge_lww``)."""
    best = None
    for obj in objects:
        for s in obj.siblings:
            if best is None or lww_order(s) > lww_order(best):
                best = s
    return EMPTY if best is None else Versioned((best.dot,), (best,))


def lww_update(obj: Versioned, actor: bytes, value: bytes, now_us: int, *,
               tombstone: bool = False, expire_at: int = 0) -> Versioned:
    """A read-modify-write in last-write-wins mode (the script's ``rq_put_lww``): one
    sibling, dot (actor, timestamp), its timestamp above every one held."""
    held = lww_resolve([obj]).siblings
    timestamp = max(now_us, held[0].timestamp + 1) if held else now_us
    return Versioned(((actor, timestamp),),
                     (Sibling(actor, timestamp, timestamp, tombstone, expire_at, value),))


def update(
    obj: Versioned,
    context: Mapping[bytes, int] | None,
    actor: bytes,
    value: bytes,
    now_us: int,
    *,
    tombstone: bool = False,
    expire_at: int = 0,
) -> Versioned:
    """A write at ``actor`` (rule 2). ``context=None`` means "everything held here".

    Python mirror of the Lua ``put``; the proxy itself lets the replica run it.
    """
    clock = obj.clock_map()
    ctx = clock if context is None else dict(context)
    kept = [s for s in obj.siblings if not covers(ctx, s)]
    counter = max(clock.get(actor, 0), ctx.get(actor, 0)) + 1
    timestamp = max(now_us, obj.newest_timestamp() + 1)
    new_clock = join(clock, ctx)
    new_clock[actor] = counter
    kept.append(Sibling(actor, counter, timestamp, tombstone, expire_at, value))
    return normalise(new_clock, kept)


# ---------------------------------------------------------------------------
# stored bytes (decode only: the replica script is the one encoder)


class CorruptObject(ValueError):
    pass


def decode(blob: bytes | None) -> Versioned:
    if not blob:
        return EMPTY
    try:
        raw = msgpack.unpackb(blob, raw=True, use_list=False)
        version, flat, sibs = raw
        if version != FORMAT:
            raise CorruptObject(f"unknown object format {version!r}")
        clock = tuple([(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)])
        siblings = tuple([Sibling(s[0], s[1], s[2], s[3] == 1, s[4], s[5]) for s in sibs])
    except CorruptObject:
        raise
    except Exception as exc:  # msgpack raises several types for bad input
        raise CorruptObject(f"undecodable stored object: {exc}") from None
    return Versioned(clock, siblings)


def plain_value(blob: bytes, now_ms: int) -> bytes | None | bool:
    """What a plain GET answers for a stored object of exactly one sibling, without
    building the object (a third of a GET's decoding cost); False for any other object,
    which takes ``decode``. Undecodable bytes raise ``CorruptObject`` as in ``decode``."""
    try:
        version, _, sibs = msgpack.unpackb(blob, raw=True, use_list=False)
        if version != FORMAT or len(sibs) != 1:
            return False
        _, _, _, tombstone, expire_at, value = sibs[0]
    except Exception as exc:  # msgpack raises several types for bad input
        raise CorruptObject(f"undecodable stored object: {exc}") from None
    if tombstone == 1 or (expire_at and expire_at <= now_ms):
        return None
    return value


# ---------------------------------------------------------------------------
# client contexts: opaque bytes clients hand back unchanged


class BadContext(ValueError):
    pass


def encode_context(clock: Clock | Mapping[bytes, int]) -> bytes:
    items = sorted(clock.items()) if isinstance(clock, Mapping) else list(clock)
    if not items:
        return b""
    flat: list[bytes | int] = []
    for actor, counter in items:
        flat += (actor, counter)
    return bytes([CONTEXT_VERSION]) + msgpack.packb(flat, use_bin_type=False)


def context_payload(clock: Mapping[bytes, int]) -> bytes:
    """The msgpack form the replica script reads (Lua's cmsgpack can't read bin types)."""
    flat: list[bytes | int] = []
    for actor, counter in sorted(clock.items()):
        flat += (actor, counter)
    return msgpack.packb(flat, use_bin_type=False)


def decode_context(data: bytes) -> dict[bytes, int]:
    """Validate a context from a client; garbage raises ``BadContext``, never trusted."""
    if not data:
        return {}
    if data[0] != CONTEXT_VERSION or len(data) > 64 * 1024:
        raise BadContext("invalid context")
    try:
        flat = msgpack.unpackb(data[1:], raw=True, use_list=True, max_array_len=8192)
    except Exception:
        raise BadContext("invalid context") from None
    if not isinstance(flat, list) or len(flat) % 2:
        raise BadContext("invalid context")
    clock: dict[bytes, int] = {}
    previous = b""
    for i in range(0, len(flat), 2):
        actor, counter = flat[i], flat[i + 1]
        if (
            not isinstance(actor, bytes)
            or not 0 < len(actor) <= MAX_ACTOR
            or type(counter) is not int
            or not 0 < counter <= MAX_COUNTER
            or (i and actor <= previous)
        ):
            raise BadContext("invalid context")
        clock[actor] = counter
        previous = actor
    return clock


def clock_text(clock: Clock) -> str:
    return ",".join(f"{a.decode(errors='replace')}:{c}" for a, c in clock)
