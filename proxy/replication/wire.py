"""The replica wire format: the operations a write applies, and the FCALL payloads that
carry them, built in one place from named arguments.

replicas/redquorum.lua is the other half: each ``OPS.<name>`` there takes the arguments
an ``Op`` below lists, in that order, and each payload builder names its function's
argument order once. Callers never assemble argument lists themselves.

The payloads of the hot path (``Payloads.put``, ``merge``, ``replace``) are formatted
with their constant parts encoded once, which halved their cost against ``command``.

The write functions' payloads are ``Call``s: the FCALL as bytes, plus the same call as
one entry of ``rq_many`` with the crc32 of its key (the ring's partition hash, which
the replica's digests need too). A replica link sends the consecutive Calls one pass of
the reactor queues for it as one ``rq_many`` (proxy/server/links.py), within which the
replica reads what every write needs (the digest state, its actor) once, and takes the
crc32 instead of computing it in Lua; anything else may send a Call as the plain bytes
it is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple
from zlib import crc32

from ..protocol.resp import command
from .calls import Call


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


_COUNTS = [bulk(b"%d" % count) for count in range(64)]
_FCALL_HEADS = [b"*%d\r\n$5\r\nFCALL\r\n" % (count + 1) for count in range(64)]


def fcall(body: bytes, count: int, key: bytes) -> Call:
    """The Call whose ``body`` is ``function 1 key args…``, ``count`` strings. (The crc
    travels as ten digits, zero-padded: one format, no length to compute.)"""
    if count < 64:
        call = Call(_FCALL_HEADS[count] + body)
        head = _COUNTS[count]
    else:
        call = Call(b"*%d\r\n$5\r\nFCALL\r\n%b" % (count + 1, body))
        head = bulk(b"%d" % count)
    call.entry = b"".join((head, b"$10\r\n%010d\r\n" % crc32(key), body))
    call.width = count + 2
    return call


def many(entries: Sequence[bytes], width: int) -> bytes:
    """rq_many 0 | entry…: ``entries`` (``Call.entry``) of ``width`` strings in all."""
    return b"*%d\r\n$5\r\nFCALL\r\n$7\r\nrq_many\r\n$1\r\n0\r\n%b" % (
        width + 3, b"".join(entries))


class Op(NamedTuple):
    """An operation the coordinating replica applies to a key's current value (rq_put).

    ``plain``: for a plain SET, ``(value, expire_at)`` as the compact rq_set takes them;
    ``blind``: for a write that does not depend on the current value, the sibling LWW
    writes in one round trip, ``(tombstone, expire_at, value)``; None for the others."""

    name: bytes
    args: tuple[bytes, ...]
    plain: tuple[bytes, bytes] | None = None
    blind: tuple[bytes, bytes, bytes] | None = None


def set_value(value: bytes, *, expire_at: int | None = None, keep_ttl: bool = False,
              condition: bytes = b"", get_old: bool = False) -> Op:
    """SET and its family: ``expire_at`` absolute ms (None: no expiry, or the current one
    with ``keep_ttl``), ``condition`` b"NX"/b"XX", ``get_old`` answers the old value."""
    mode = b"at" if expire_at is not None else b"keep" if keep_ttl else b""
    at = b"%d" % expire_at if expire_at is not None else b"0"
    args = (value, mode, at, condition, b"1" if get_old else b"0")
    if condition or get_old or keep_ttl:
        return Op(b"set", args)
    return Op(b"set", args, plain=(value, at), blind=(b"0", at, value))


def delete() -> Op:
    """A tombstone; the reply says whether a live value was there."""
    return _DELETE


_DELETE = Op(b"del", (), blind=(b"1", b"0", b""))


def client_set(value: bytes, expire_at: int) -> Op:
    """RQ.SET's write: ``expire_at`` absolute ms or 0; the context decides what it replaces."""
    at = b"%d" % expire_at
    return Op(b"rqset", (value, at), blind=(b"0", at, value))


def incr_by(amount: int) -> Op:
    return Op(b"incrby", (b"%d" % amount,))


def append(piece: bytes) -> Op:
    return Op(b"append", (piece,))


def set_range(offset: int, piece: bytes) -> Op:
    return Op(b"setrange", (b"%d" % offset, piece))


def set_bit(offset: int, on: bool) -> Op:
    return Op(b"setbit", (b"%d" % offset, b"1" if on else b"0"))


def get_delete() -> Op:
    return Op(b"getdel", ())


def get_and_expire(expire_at: int | None, error: bytes = b"") -> Op:
    """GETEX: a new absolute expiry (None: persist). Redis answers nil for a missing key
    before it checks the expiry, so an invalid one travels as ``error``."""
    if expire_at is None:
        return Op(b"getex", (b"persist", b"0", error))
    return Op(b"getex", (b"at", b"%d" % expire_at, error))


def expire(expire_at: int, conditions: Sequence[bytes] = ()) -> Op:
    """EXPIRE and friends: an absolute expiry in ms, with any of NX, XX, GT, LT."""
    return Op(b"expire", (b"at", b"%d" % expire_at, b",".join(sorted(conditions))))


def persist() -> Op:
    return Op(b"expire", (b"persist", b"0", b""))


def compare_and_set(value: bytes, *, expect_dot: tuple[bytes, bytes] | None = None,
                    expect_none: bool = False) -> Op:
    """Writes ``value`` (keeping the expiry) only if the current winner is still the one
    the proxy computed from: the sibling of ``expect_dot`` (actor, counter), or no value
    with ``expect_none``. Neither: only peek (answers the current winner to retry with)."""
    if expect_dot is not None:
        return Op(b"cas", (b"dot", expect_dot[0], expect_dot[1], value))
    if expect_none:
        return Op(b"cas", (b"none", b"", b"0", value))
    return Op(b"cas", (b"peek", b"", b"0", b""))


class Payloads:
    """The FCALLs of one proxy's settings: mode, tombstone grace, sibling hard limit."""

    def __init__(self, *, mode: str, grace_ms: int, hard_limit: int, actors: Sequence[bytes]) -> None:
        self.grace_ms = b"%d" % grace_ms
        self.hard_limit = b"%d" % hard_limit
        lww = mode == "lww"
        self.merge_function = b"rq_merge_lww" if lww else b"rq_merge"
        # last-write-wins keeps one sibling on every path, fan-outs and RMW writes included
        self.replace_function = b"rq_replace_lww" if lww else b"rq_replace"
        self.put_synced_function = b"rq_put_lww" if lww else b"rq_put_synced"
        self._merge_one = b"%b$1\r\n1\r\n" % bulk(self.merge_function)
        self._grace_bulk = bulk(self.grace_ms)
        self._replace_head = b"%b$1\r\n1\r\n" % bulk(self.replace_function)
        self._limits_bulk = self._grace_bulk + bulk(self.hard_limit)
        # the arguments of rq_put that repeat (actors, contexts, operations, option
        # values), encoded once: formatting them on every write was half its payload's cost
        self._constant = {a: bulk(a) for a in [*actors, b"*", b"", b"0", b"1", b"at", b"keep",
                                               b"NX", b"XX", b"set", b"del", b"rqset", b"incrby",
                                               b"append", b"setrange", b"getdel", b"getex",
                                               b"expire", b"cas", b"setbit", b"persist"]}

    def put(self, key: bytes, actor: bytes, context: bytes, op: Op,
            synced: Sequence[bytes] | None = None) -> bytes:
        """rq_put key | actor now_us context grace_ms hard_limit op op-args… at the
        coordinator (rq_put_synced with the objects a quorum read found; rq_set for a plain
        SET, the most common write, in its own compact function).

        ``context``: b"*" for everything the coordinator holds (plain Redis writes), b""
        for nothing seen, else a client's clock in the replica's msgpack form."""
        now = b"%d" % (time.time_ns() // 1000)
        constant = self._constant.get
        if op.plain is not None and context == b"*" and synced is None:
            value, expire_at = op.plain
            return fcall(b"".join([b"$6\r\nrq_set\r\n$1\r\n1\r\n", bulk(key),
                                   constant(actor) or bulk(actor), bulk(now), self._limits_bulk,
                                   bulk(value), constant(expire_at) or bulk(expire_at)]), 9, key)
        args = op.args
        if synced is None:
            head = b"$6\r\nrq_put\r\n$1\r\n1\r\n$%d\r\n%b\r\n" % (len(key), key)
            count = 9 + len(args)
        else:  # the objects a quorum read found come first
            head = command(self.put_synced_function, b"1", key, b"%d" % len(synced), *synced)
            head = head[head.index(b"\n") + 1:]
            count = 9 + len(args) + 1 + len(synced)
        parts = [head, constant(actor) or bulk(actor), bulk(now),
                 constant(context) or bulk(context), self._limits_bulk,
                 constant(op.name) or bulk(op.name)]
        for arg in args:
            parts.append(constant(arg) or bulk(arg))
        return fcall(b"".join(parts), count, key)

    def merge(self, key: bytes, *blobs: bytes) -> bytes:
        """rq_merge key | grace_ms object…: sync the objects into the stored one."""
        if len(blobs) == 1:  # the hot case: a repair of one object, a hint
            blob = blobs[0]
            return fcall(b"%b$%d\r\n%b\r\n%b$%d\r\n%b\r\n" % (
                self._merge_one, len(key), key, self._grace_bulk, len(blob), blob), 5, key)
        body = command(self.merge_function, b"1", key, self.grace_ms, *blobs)
        return fcall(body[body.index(b"\n") + 1:], 4 + len(blobs), key)

    def replace(self, key: bytes, blob: bytes, before: bytes, expire_at: int,
                entry: bytes | None = None) -> bytes:
        """rq_replace key | grace_ms new old pxat [entry]: a write's fan-out; stores ``blob``
        as it is where the home holds what the coordinator held ``before`` it (the Lua says
        why that is exact), else merges it. ``entry``: blob's anti-entropy digest entry as
        the coordinator computed it, which spares each home a sha1 of the object."""
        expiry = b"%d" % expire_at
        body = b"%b$%d\r\n%b\r\n%b$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
            self._replace_head, len(key), key, self._grace_bulk, len(blob), blob,
            len(before), before, len(expiry), expiry)
        if entry:
            return fcall(body + b"$%d\r\n%b\r\n" % (len(entry), entry), 8, key)
        return fcall(body, 7, key)

    def lww(self, key: bytes, actor: bytes, sibling: tuple[bytes, bytes, bytes]) -> bytes:
        """rq_lww key | actor ts_us grace_ms tombstone expire_at value: one round trip."""
        tombstone, expire_at, value = sibling
        body = command(b"rq_lww", b"1", key, actor, b"%d" % (time.time_ns() // 1000),
                       self.grace_ms, tombstone, expire_at, value)
        return fcall(body[body.index(b"\n") + 1:], 9, key)

    def inspect(self, key: bytes) -> bytes:
        """rq_inspect key: {stored bytes or false, PTTL}."""
        return command(b"FCALL", b"rq_inspect", b"1", key)


HINTS_PREFIX = b"__rq:hints:"
HINT_TIMES_PREFIX = b"__rq:hint-times:"


def hints_key(target: str) -> bytes:
    """The hash, on a replica that coordinated a write (or stood in for ``target`` as a
    fallback), of the keys ``target`` missed, each with the object to hand it."""
    return HINTS_PREFIX + target.encode()


def hint_times_key(target: str) -> bytes:
    """The sorted set next to ``hints_key``: each hinted key, scored by when its hint was
    first left (ms, the holder's clock)."""
    return HINT_TIMES_PREFIX + target.encode()


def hint(target: str, key: bytes, blob: bytes) -> bytes:
    """rq_hint hints times | key object: ``target`` missed a write of ``key`` whose object
    is ``blob`` (b"": the holder's current object says)."""
    return command(b"FCALL", b"rq_hint", b"2", hints_key(target), hint_times_key(target), key, blob)


def hint_done(target: str, key: bytes, blob: bytes, copy: bytes | None = None,
              others: Sequence[str] = ()) -> bytes:
    """rq_hint_done: drop the hint unless a newer one replaced it; with ``copy`` (the
    holder is not a home of ``key``), delete the holder's copy too if it is still exactly
    ``copy`` and no hint for one of ``others`` still needs it."""
    keys = [hints_key(target), hint_times_key(target)]
    args = [key, blob]
    if copy is not None:
        keys += [key, *(hints_key(other) for other in others)]
        args.append(copy)
    return command(b"FCALL", b"rq_hint_done", b"%d" % len(keys), *keys, *args)


def hint_stats(target: str) -> bytes:
    """rq_hint_stats: {hints held for ``target``, ms since the oldest was left, or -1}."""
    return command(b"FCALL", b"rq_hint_stats", b"2", hints_key(target), hint_times_key(target))


def hints_drop(target: str) -> bytes:
    """rq_hints_drop: delete every hint held for ``target``, answering how many there were."""
    return command(b"FCALL", b"rq_hints_drop", b"2", hints_key(target), hint_times_key(target))


_FCALL = b"$5\r\nFCALL\r\n"


def as_fallback(payload: bytes, key: bytes, home: str) -> bytes:
    """The same single-key FCALL (rq_put, rq_set, rq_replace, rq_merge, rq_lww…) run by
    ``rq_fallback`` on a replica standing in for ``home``: it also leaves the hint that
    hands the object it then holds to ``home``, in the same atomic call."""
    header_end = payload.index(b"\r\n")
    count = int(payload[1:header_end])
    at = header_end + 2
    if not payload.startswith(_FCALL, at):
        raise ValueError("not an FCALL")
    at += len(_FCALL)
    name_end = payload.index(b"\r\n", at)
    length = int(payload[at + 1:name_end])
    name = payload[name_end + 2:name_end + 2 + length]
    at = name_end + 2 + length + 2
    if not payload.startswith(b"$1\r\n1\r\n", at):
        raise ValueError("not a single-key FCALL")
    at += 7
    key_bulk = bulk(key)
    if not payload.startswith(key_bulk, at):
        raise ValueError("another key")
    rest = payload[at + len(key_bulk):]
    head = b"*%d\r\n%b%b$1\r\n3\r\n%b%b%b%b" % (
        count + 3, _FCALL, bulk(b"rq_fallback"), key_bulk, bulk(hints_key(home)),
        bulk(hint_times_key(home)), bulk(name))
    return head + rest


def library() -> bytes:
    """rq_library: the digest of the function library the replica has loaded."""
    return command(b"FCALL", b"rq_library", b"0")


def actor(replica_id: str) -> bytes:
    """rq_actor replica_id: the actor the replica's current process mints dots under."""
    return command(b"FCALL", b"rq_actor", b"0", replica_id.encode())


# -- the keyspace walks (proxy/commands/scan.py) --------------------------------


def scan_step(now_ms: int, cursor: bytes, count: bytes, pattern: bytes) -> bytes:
    """rq_scan now_ms cursor count pattern: {next cursor, the visible keys of one step}."""
    return command(b"FCALL", b"rq_scan", b"0", b"%d" % now_ms, cursor, count, pattern)


def random_key(now_ms: int) -> bytes:
    """rq_randomkey now_ms: a random visible key, or nil."""
    return command(b"FCALL_RO", b"rq_randomkey", b"0", b"%d" % now_ms)


# -- anti-entropy digests (proxy/replication/antientropy.py) --------------------


def aae_roots(first: int, count: int) -> bytes:
    """rq_aae_roots first count: the roots of ``count`` partitions from ``first``."""
    return command(b"FCALL", b"rq_aae_roots", b"0", b"%d" % first, b"%d" % count)


def aae_rebuild(now_ms: bytes, every_ms: int, count: int) -> bytes:
    """rq_aae_rebuild now_ms every_ms count: one bounded step of a digest rebuild."""
    return command(b"FCALL", b"rq_aae_rebuild", b"0", now_ms, b"%d" % every_ms, b"%d" % count)


def aae_segments(partition: int) -> bytes:
    """rq_aae_segments partition: the partition's segment digests."""
    return command(b"FCALL", b"rq_aae_segments", b"0", b"%d" % partition)


def aae_keys(segments: Sequence[tuple[int, bytes]]) -> bytes:
    """rq_aae_keys partition segment …: the keys and entries of those segments."""
    args: list[bytes] = []
    for partition, segment in segments:
        args += [b"%d" % partition, segment]
    return command(b"FCALL", b"rq_aae_keys", b"0", *args)


def aae_objects(keys: Sequence[bytes]) -> bytes:
    """rq_aae_objects key…: the stored objects of those keys."""
    return command(b"FCALL", b"rq_aae_objects", b"%d" % len(keys), *keys)


def aae_refresh(key: bytes) -> bytes:
    """rq_aae_refresh key: recompute the key's digest entry from what it holds."""
    return command(b"FCALL", b"rq_aae_refresh", b"1", key)


def aae_release(lease: bytes, owner: bytes) -> bytes:
    """rq_aae_release lease owner: drop the partition's lease if this proxy holds it."""
    return command(b"FCALL", b"rq_aae_release", b"1", lease, owner)


# -- cluster membership (proxy/replication/membership.py) -----------------------


def members_get(key: bytes) -> bytes:
    """The membership record a replica holds: [version, record] (nils when none)."""
    return command(b"HMGET", key, b"version", b"record")


def members_put(key: bytes, version: int, record: bytes) -> bytes:
    """rq_members_put key | version record: keep the higher record; answers the one held."""
    return command(b"FCALL", b"rq_members_put", b"1", key, b"%d" % version, record)


def drop_partitions(cursor: bytes, count: int, mask: bytes) -> bytes:
    """rq_drop_partitions cursor count mask: one SCAN step deleting the objects of the
    partitions set in ``mask``; answers [next cursor, deleted]."""
    return command(b"FCALL", b"rq_drop_partitions", b"0", cursor, b"%d" % count, mask)
