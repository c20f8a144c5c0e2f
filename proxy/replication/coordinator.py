"""Quorum reads and writes over the replicas of a key, driven by reply callbacks.

Theory of operation
-------------------
1. The preference list of a key (proxy/ring.py) names its ``n`` home replicas.
2. Write (causal mode): the first *up* home replica coordinates. One atomic function
   call there (``rq_put``) reads the stored object, applies the operation to the current
   winner, drops the siblings the context covers, adds the new sibling with a fresh dot,
   stores and returns the new object's bytes, with the bytes it held before. Both go
   unchanged to the other homes (``rq_replace``): a home that held the same bytes as
   the coordinator stores the new object as it is (GET, compare, SET: the new object
   supersedes the old by construction), any other merges it as ``rq_merge`` does. A
   plain SET runs ``rq_set``, the same computation in a compact function of its own.
   The client is acknowledged after ``w`` acks, the coordinator's included. If the
   coordinator does not answer, the next up home coordinates; if it answered with an
   error about the command, the client gets it.
   Read-modify-write operations (INCR, APPEND, SET NX…) first read ``n - w + 1``
   homes, which always include one that acknowledged the latest write, and the
   coordinator syncs what they hold before applying the operation (``rq_put_synced``):
   a new coordinator after a failover never works on an older value.
   In ``lww`` mode blind writes (SET, DEL) skip the coordinator: every home keeps the
   higher (timestamp, actor) in one round trip (``rq_lww``). Read-modify-write ones run
   ``rq_put_lww`` and ``rq_replace_lww``, and reads resolve with ``clock.lww_resolve``:
   every path keeps the one newest sibling, its dot the whole clock.
3. A write that gets fewer than ``w`` acks answers ``-NOQUORUM``. It is not rolled back
   where it landed: a later read may or may not see it (docs/guarantees.md, "Failed writes").
4. Read: every home gets ``GET``; after ``r`` answers the objects are merged (sync) and
   the client is answered. When the first ``r`` replies are the same bytes, there is
   nothing to merge and one decode does.
5. Read repair: once every home has answered or failed (the link watchdog bounds how
   long that takes), a replica whose object differs from the merge of all replies gets
   the others' objects through ``rq_merge``, never a blind SET, so a write that landed
   in between is kept.

6. Sloppy quorum (``sloppy``, with more replicas than ``n``): a request's *targets* are
   the homes, each one that is down replaced by the next up fallback of the key's walk
   not already used (``targets``). A fallback runs the same function wrapped in
   ``rq_fallback``, which also leaves a hint for the home it stands in for in the same
   atomic call (handoff.py hands the copy home and drops it). Fallbacks count toward
   ``w`` and ``r``; they coordinate only when no home can; hints for targets that fail
   name the home, not the fallback; a read with fallbacks waits for every target, so an
   empty fallback never outvotes a home holding the key; read repair writes only into
   fallbacks that already hold a copy.

7. During a membership change (membership.py) reads ask the homes of one ring, writes go
   to the homes of the old ring and the new one and need ``w`` plus one ack per home the
   two do not share, so an acknowledged write has ``w`` acks in each ring; those writes
   use no fallbacks. ``place`` swaps the per-partition tables; an operation keeps the
   homes it started with.

8. Every operation is a small state machine built per request and driven by reply
   callbacks, not a task: it counts acks and failures in a ``Quorum`` (quorum.py), keeps
   its phase in one attribute (constants below), and answers ``done`` through one
   ``_finish``. Each class's docstring gives the events it accepts and their order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any
from zlib import crc32

from ..protocol.resp import ReplyError
from . import clock, wire
from .clock import CorruptObject
from .counters import SIBLING_BUCKETS, LocalHistogram
from .events import Events
from .links import DOWN, Link, ReplicaFailure, is_replica_error
from .quorum import Quorum, noquorum
from .ring import PARTITIONS, Ring

_PARTITION_MASK = PARTITIONS - 1

log = logging.getLogger("redquorum.coordinator")

Done = Callable[[Any], None]
# per target of a request, the home a fallback stands in for (None: the home itself);
# None altogether when every target is a home
Stands = tuple["Link | None", ...] | None


def clean_error(reply: ReplyError) -> ReplyError:
    """Drop the ``script: rq_put, on @user_function:NN.`` tail Redis adds to function errors."""
    text = reply.text
    cut = text.find(" script: ")
    return ReplyError(text[:cut]) if cut >= 0 else reply


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



class Coordinator:
    def __init__(
        self,
        ring: Ring,
        links: dict[str, Link],
        *,
        r: int,
        w: int,
        min_w: int | None = None,
        hint_window: float | None = None,
        mode: str,
        tombstone_grace: float,
        sibling_soft_limit: int,
        sibling_hard_limit: int,
        events: Events | None = None,
        actor: str = "proxy",
        sloppy: bool = False,
    ) -> None:
        self.ring = ring
        self.links = links
        self.n = ring.n
        self.r = r
        self.w = w
        # the lowest w any connection may write with: read-modify-write operations read
        # n - min_w + 1 homes, which always include one that acknowledged the latest write
        self.min_w = w if min_w is None else min_w
        self.mode = mode
        # past this many seconds down, a replica gets no more hints (handoff.py drops the
        # ones it has); None: no window
        self.hint_window = hint_window
        self.hints_stored: dict[str, int] = dict.fromkeys(links, 0)
        self.hints_dropped: dict[str, int] = dict.fromkeys(links, 0)
        # replicas that came back and may still lack writes hints will bring: they
        # coordinate writes only when no other home can (handoff.py keeps this set)
        self.catching_up: set[str] = set()
        self.events = events or Events()
        self.soft_limit = sibling_soft_limit
        self.actor = actor.encode()
        self.sibling_counts = LocalHistogram(SIBLING_BUCKETS)  # live siblings per read
        self.wire = wire.Payloads(mode=mode, grace_ms=int(tombstone_grace * 1000),
                                  hard_limit=sibling_hard_limit,
                                  actors=[link.actor for link in links.values()])
        self._sloppy = sloppy  # configured; on only while there are more nodes than n
        self.place(ring, ring.partition_homes())

    def place(self, ring: Ring, reads: Sequence[Sequence[str]],
              writes: Sequence[Sequence[str]] | None = None,
              extra: Sequence[int] | None = None) -> None:
        """Replace the placement tables (a membership change, membership.py): per
        partition, the homes reads ask, the homes writes go to and the acks writes need
        beyond w. Every id must have a link."""
        links = self.links
        self.ring = ring
        self.n = ring.n
        # per partition, the home links in preference order (resolved once)
        self._homes = [tuple(links[i] for i in homes) for homes in reads]
        self._write_homes = self._homes if writes is None else [
            tuple(links[i] for i in homes) for homes in writes]
        self._extra = [0] * PARTITIONS if extra is None else list(extra)
        # per partition, every link of the walk: the homes, then the fallbacks in order
        self._walks = [tuple(links[i] for i in ring._lists[p]) for p in range(PARTITIONS)]
        # a sloppy quorum needs somewhere to go beyond the homes
        self.sloppy = self._sloppy and len(ring.nodes) > ring.n

    def targets(self, key: bytes) -> tuple[tuple[Link, ...], Stands]:
        """The replicas a request for ``key`` goes to: its homes or, with a sloppy quorum,
        each home that is down replaced by the next up fallback of the key's walk not
        already used. The second item says, per position, which home a fallback stands in
        for (None where the home itself serves), or is None when no fallback is used."""
        return self._targets(crc32(key) & _PARTITION_MASK)

    def _targets(self, partition: int) -> tuple[tuple[Link, ...], Stands]:
        homes = self._homes[partition]
        if self.sloppy:
            for link in homes:
                if not link.up:
                    return self._substitute(partition)
        return homes, None

    def _substitute(self, partition: int) -> tuple[tuple[Link, ...], Stands]:
        homes = self._homes[partition]
        spare = (link for link in self._walks[partition][self.n:] if link.up)
        chosen: list[Link] = []
        stands: list[Link | None] = []
        for home in homes:
            fallback = None if home.up else next(spare, None)
            chosen.append(home if fallback is None else fallback)
            stands.append(None if fallback is None else home)
        if not any(stand is not None for stand in stands):
            return homes, None
        return tuple(chosen), tuple(stands)

    def _consult_fallbacks(self, partition: int, targets: tuple[Link, ...], stands: Stands
                           ) -> tuple[tuple[Link, ...], Stands]:
        """While a home of the partition is catching up (hints for it still pending), the
        fallbacks that stood in for it may hold acknowledged writes it lacks: a read then
        asks every other up fallback of the walk too, after the targets, and waits for all
        (``_Read`` never repairs these extra ones: they would get a copy without a hint)."""
        if not any(link.id in self.catching_up for link in self._homes[partition]):
            return targets, stands
        extra = tuple(link for link in self._walks[partition][self.n:]
                      if link.up and link not in targets)
        if not extra:
            return targets, stands
        return targets + extra, (stands or (None,) * len(targets)) + (None,) * len(extra)

    def as_fallback(self, payload: bytes, key: bytes, home: Link) -> bytes:
        """``payload`` for a fallback standing in for ``home``: it also leaves the hint
        that hands its copy home (one more hint stored for ``home``)."""
        self.hints_stored[home.id] = self.hints_stored.get(home.id, 0) + 1
        return wire.as_fallback(payload, key, home.id)

    def homes(self, key: bytes) -> tuple[Link, ...]:
        return self._homes[crc32(key) & _PARTITION_MASK]

    def holders(self, key: bytes) -> tuple[Link, ...]:
        """Every node that should hold ``key`` now (during a membership change, its old
        homes and its new): a copy anywhere else is a fallback's or a stray one."""
        return self._write_homes[crc32(key) & _PARTITION_MASK]

    def homes_of(self, partition: int) -> tuple[Link, ...]:
        """Every node that should hold the partition now (during a membership change,
        the old homes and the new): what anti-entropy keeps in step."""
        return self._write_homes[partition]

    # -- reads ---------------------------------------------------------------

    def read(self, key: bytes, r: int, done: Done, *, plain: bool = False) -> None:
        """``done`` gets the merged ``Versioned`` or a ``ReplyError``; with ``plain``,
        the value a plain GET answers (bytes or None) instead of the object."""
        partition = crc32(key) & _PARTITION_MASK
        homes = self._homes[partition]
        stands = None
        if self.sloppy:
            homes, stands = self._targets(partition)
            if self.catching_up:
                homes, stands = self._consult_fallbacks(partition, homes, stands)
        on_reply = _Read(self, key, homes, r, done, plain, stands).on_reply
        encoded = b"$%d\r\n%b\r\n" % (len(key), key)  # once for the n links
        for i, link in enumerate(homes):
            link.get(key, on_reply, i, encoded)

    def read_many(self, keys: Sequence[bytes], r: int, done: Done, *, plain: bool = False) -> None:
        """MGET: a quorum read per key (their GETs leave as one MGET per replica);
        ``done`` gets the list of merged objects (values with ``plain``), or the first error."""
        part = gather(len(keys), done, list)
        for i, key in enumerate(keys):
            self.read(key, r, part(i), plain=plain)

    # -- writes --------------------------------------------------------------

    def write(
        self,
        key: bytes,
        w: int,
        context: bytes,
        op: wire.Op,
        done: Done,
    ) -> None:
        """Run ``op`` (built by proxy/replication/wire.py) at the coordinator and spread
        the result.

        ``context``: b"*" for everything the coordinator holds (plain Redis writes),
        b"" for nothing seen, else a client's clock in the replica's msgpack form.
        ``done`` gets ``(new object bytes or None, op reply)`` or a ``ReplyError``.
        """
        partition = crc32(key) & _PARTITION_MASK
        homes = self._homes[partition]
        stands = None
        extra = self._extra[partition]
        if extra:  # a membership change: enough acks in the old homes and in the new
            homes = self._write_homes[partition]
            w += extra
        elif self.sloppy:
            homes, stands = self._targets(partition)
        if op.blind is None:  # read-modify-write: first see the latest acknowledged write
            _ReadForWrite(self, key, homes, w, context, op, done, stands).start()
        elif self.mode == "lww":
            _LwwWrite(self, key, homes, w, op.blind, done, stands).start()
        else:
            _Write(self, key, homes, w, context, op, done, stands=stands).start()

    def hint(self, holder: Link, target: Link, key: bytes, blob: bytes = b"") -> None:
        """Leave a hint on ``holder``: ``target`` missed a write of ``key``, whose object
        (as the coordinator made it) is ``blob``; b"" when only the holder's current object
        can say (LWW's one round trip). See handoff.py."""
        if self.beyond_hint_window(target):
            self.hints_dropped[target.id] = self.hints_dropped.get(target.id, 0) + 1
            return
        self.hints_stored[target.id] = self.hints_stored.get(target.id, 0) + 1
        holder.request(wire.hint(target.id, key, blob), _ignore)

    def beyond_hint_window(self, target: Link) -> bool:
        if self.hint_window is None:
            return False
        down = target.down_since
        return down is not None and time.monotonic() - down > self.hint_window

    # -- inspection ----------------------------------------------------------

    def inspect(self, key: bytes, done: Done) -> None:
        """(link, role, reply or failure) per home replica in preference order, then per
        fallback of the key's walk that holds it."""
        walk = self._walks[crc32(key) & _PARTITION_MASK]
        entries: list[Any] = [None] * len(walk)
        remaining = [len(walk)]
        payload = self.wire.inspect(key)

        def finish() -> None:
            homes = entries[: self.n]
            held = [e for e in entries[self.n:] if type(e[2]) is list and e[2] and e[2][0]]
            done(homes + held)

        def one(i: int) -> Done:
            def got(reply: Any) -> None:
                entries[i] = (walk[i], "home" if i < self.n else "fallback", reply)
                remaining[0] -= 1
                if remaining[0] == 0:
                    finish()
            return got

        for i, link in enumerate(walk):
            link.request(payload, one(i))


# The phases of the state machines below: module-level strings, so that a test of the
# phase is one global load and an identity comparison on the per-request hot path.
WAITING = "waiting"  # read: the answer is not decided yet
READING = "reading"  # read-for-write: gathering what n - min_w + 1 homes hold
WRITING = "writing"  # read-for-write: handed over to a _Write, which answers
COORDINATING = "coordinating"  # write: waiting for a home to make the new object
FANNING_OUT = "fanning out"  # write: the object is on its way to the other homes
ANSWERED = "answered"  # ``done`` was called; late replies may still arrive
REPAIRING = "repairing"  # read: every home is in, stale ones were sent the merge
DONE = "done"  # read: every home is in, none was stale
_ANSWERED = frozenset((ANSWERED, REPAIRING, DONE))


class _Machine:
    """What every quorum operation holds: the key, its homes, a ``Quorum`` counter, the
    phase, and ``done``, which ``_finish`` calls exactly once."""

    __slots__ = ("co", "key", "homes", "done", "quorum", "phase", "stands")

    co: Coordinator
    key: bytes
    homes: tuple[Link, ...]  # the targets: homes, and fallbacks standing in for some
    done: Done
    quorum: Quorum
    phase: str
    stands: Stands  # per target, the home a fallback stands in for (None: no fallback)

    def home_of(self, index: int) -> Link:
        """The home replica target ``index`` serves: itself, or the one it stands in for."""
        stands = self.stands
        if stands is not None and stands[index] is not None:
            return stands[index]  # type: ignore[return-value]
        return self.homes[index]

    def payload_for(self, index: int, payload: bytes) -> bytes:
        """``payload`` as target ``index`` runs it: a fallback also leaves its hint."""
        stands = self.stands
        if stands is not None and stands[index] is not None:
            return self.co.as_fallback(payload, self.key, stands[index])  # type: ignore[arg-type]
        return payload

    def _finish(self, result: Any) -> None:
        if self.phase in _ANSWERED:  # a bug: the client must not get two answers
            log.error("%s of %r answered twice; dropped the second answer %r",
                      type(self).__name__, self.key[:100], result)
            return
        self.phase = ANSWERED
        self.done(result)

    def _noquorum(self, op: str) -> None:
        self.co.events.quorum_failure(op)
        self._finish(self.quorum.error(op))

    def _settle(self, result: Any, op: str) -> None:
        """Answer ``result`` once the quorum is reached, NOQUORUM once it cannot be."""
        quorum = self.quorum
        if quorum.reached:
            self._finish(result)
        elif quorum.impossible:
            self._noquorum(op)


class _Read(_Machine):
    """A quorum read: every home gets GET; the merge of the first ``r`` objects answers.

    Events: ``on_reply(index, reply)`` once per home, in any order; a reply is the
    object's bytes, None (no object), or a failure (``ReplyError``, ``ReplicaFailure``).
    WAITING → ANSWERED once ``r`` homes answered with objects that decode (the merge,
    or with ``plain`` the value a GET answers) or once ``r`` can no longer be reached
    (NOQUORUM). With fallbacks among the targets the answer waits for every target (the
    link watchdog bounds how long): a fallback that holds nothing of the key must not
    outvote a home that holds it. Bytes that do not decode are found while the answer is built, before it
    is decided: those homes count as failed, and the read waits for more replies.
    ANSWERED → REPAIRING when the last home is in and some home's object differs from
    the merge of them all (it gets the others' objects through ``rq_merge``), else DONE.
    """

    __slots__ = ("plain", "blobs", "same", "replies")

    def __init__(self, co: Coordinator, key: bytes, homes: tuple[Link, ...], need: int,
                 done: Done, plain: bool = False, stands: Stands = None) -> None:
        self.co = co
        self.key = key
        self.homes = homes
        self.stands = stands
        self.done = done
        self.quorum = Quorum(need, len(homes))
        self.phase = WAITING
        self.plain = plain
        self.blobs: list[tuple[int, bytes | None]] = []
        self.same = True  # every object so far is the same bytes
        self.replies = 0

    def on_reply(self, index: int, reply: Any) -> None:
        self.replies += 1
        if type(reply) is bytes or reply is None:
            blobs = self.blobs
            if blobs and reply != blobs[0][1]:
                self.same = False
            blobs.append((index, reply))
            self.quorum.acks += 1
        else:
            self.quorum.fail(_why(self.homes[index], reply))
        if self.phase is WAITING and (self.stands is None or self.replies == len(self.homes)
                                      or self.quorum.impossible):
            self._decide()
        if self.replies == len(self.homes):
            self.phase = REPAIRING if self._repair() else DONE

    def _decide(self) -> None:
        quorum = self.quorum
        while quorum.reached:
            try:
                answer = self._answer()
            except CorruptObject:
                self._drop_undecodable()  # removes at least the object that raised
                continue
            self._finish(answer)
            return
        if quorum.impossible:
            self._noquorum("read")

    def _answer(self) -> Any:
        """The merged object (with ``plain``, the value); CorruptObject if one does not decode."""
        blobs = self.blobs
        co = self.co
        if self.same and self.plain:  # the usual GET: one sibling, nothing to merge
            blob = blobs[0][1]
            if blob is None:
                co.sibling_counts.observe(0)
                return None
            try:
                value = clock.plain_value(blob, time.time_ns() // 1_000_000)
            except CorruptObject:  # decode below judges, as _drop_undecodable does
                value = False
            if value is not False:
                co.sibling_counts.observe(1)
                return value
        if co.mode == "lww":  # one sibling, even where replicas hold more
            held = blobs[:1] if self.same else blobs
            merged = clock.lww_resolve([clock.decode(b) for _, b in held])
        elif self.same:
            merged = clock.decode(blobs[0][1])
        else:
            merged = clock.sync_all(clock.decode(b) for _, b in blobs)
        live = 1
        if len(merged.siblings) != 1:
            live = len(merged.live(time.time_ns() // 1_000_000))
            if live > co.soft_limit:
                co.events.siblings_over_soft_limit(self.key, live)
        co.sibling_counts.observe(live)
        if self.plain:
            best = merged.winner(time.time_ns() // 1_000_000)
            return None if best is None else best.value
        return merged

    def _drop_undecodable(self) -> None:
        """A replica holding bytes redquorum did not write counts as a failed replica."""
        good = []
        for i, blob in self.blobs:
            try:
                clock.decode(blob)
            except CorruptObject as exc:
                self.quorum.demote(f"{self.homes[i].id}: {exc}")
                log.warning("replica %s holds an undecodable object under %r", self.homes[i].id,
                            self.key[:100])
            else:
                good.append((i, blob))
        self.blobs = good
        self.same = all(blob == good[0][1] for _, blob in good)

    def _repair(self) -> bool:
        """Send the merge to every home whose object differs from it; True if any did."""
        blobs = self.blobs
        if len(blobs) < 2 or self.same:
            return False
        try:
            decoded = {i: clock.decode(b) for i, b in blobs}
        except CorruptObject:
            return False
        co = self.co
        if co.mode == "lww":
            merged = clock.lww_resolve(decoded.values())
        else:
            merged = clock.sync_all(decoded.values())
        distinct = {b for _, b in blobs if b}
        stale = False
        for i, obj in decoded.items():
            if obj == merged or i >= co.n:  # past n: a fallback consulted, never written
                continue
            own = dict(blobs)[i]
            others = [b for b in distinct if b != own]
            if not others:
                continue
            link = self.homes[i]
            stands = self.stands
            if own is None and stands is not None and stands[i] is not None:
                continue  # a fallback holding nothing gets no copy (nor a hint to hand it)
            stale = True
            co.events.read_repair(link.id, "missing" if own is None else "outdated", merged, obj)
            link.request(self.payload_for(i, co.wire.merge(self.key, *sorted(others))), _ignore)
        if stale:
            co.events.stale_read()
        return stale


def _ignore(reply: Any) -> None:
    pass


def _why(link: Link, reply: Any) -> str:
    if type(reply) is ReplicaFailure:
        return f"{link.id}: {reply.reason}"
    if isinstance(reply, ReplyError):
        return f"{link.id}: {reply.text}"
    return f"{link.id}: unexpected reply"


class _ReadForWrite(_Machine):
    """Read-modify-write operations first gather what n - min_w + 1 homes hold: that many
    always include a replica that acknowledged the latest write, so the coordinator
    (which syncs those objects before applying the operation) never increments, appends
    to or tests an older value than the latest acknowledged one after a failover.

    Events: ``on_reply(index, reply)`` once per home, in any order, as for ``_Read``.
    READING → WRITING once n - min_w + 1 homes answered (every target, when fallbacks
    stand in for some): a ``_Write`` carrying their distinct objects takes over and answers; READING → ANSWERED (NOQUORUM) once that
    many can no longer answer. Replies after READING are ignored.
    """

    __slots__ = ("w", "context", "op", "blobs")

    def __init__(self, co: Coordinator, key: bytes, homes: tuple[Link, ...], w: int,
                 context: bytes, op: wire.Op, done: Done, stands: Stands = None) -> None:
        self.co = co
        self.key = key
        self.homes = homes
        self.stands = stands
        self.done = done
        self.quorum = Quorum(len(homes) - co.min_w + 1, len(homes))
        self.phase = READING
        self.w = w
        self.context = context
        self.op = op
        self.blobs: list[bytes] = []

    def start(self) -> None:
        for i, link in enumerate(self.homes):
            link.get(self.key, self.on_reply, i)

    def on_reply(self, index: int, reply: Any) -> None:
        if self.phase is not READING:
            return
        quorum = self.quorum
        if type(reply) is bytes or reply is None:
            quorum.acks += 1
            if reply is not None and reply not in self.blobs:
                self.blobs.append(reply)
        else:
            quorum.fail(_why(self.homes[index], reply))
        if self.stands is not None and quorum.acks + quorum.failures < len(self.homes) \
                and not quorum.impossible:
            return  # with fallbacks among the targets, every target's object is synced
        if quorum.reached:
            self.phase = WRITING
            _Write(self.co, self.key, self.homes, self.w, self.context, self.op, self.done,
                   self.blobs, self.stands).start()
        elif quorum.impossible:
            self.co.events.quorum_failure("write")
            # the client asked for a write: the counts it gets are the write's
            self._finish(noquorum("write", 0, self.w, len(self.homes),
                                  f"its read of the current value failed: {quorum.why}"))


class _Write(_Machine):
    """A causal write: one home coordinates (``rq_put``/``rq_set``), the others take the
    object it made (``rq_replace``). Homes are tried in preference order, except that a
    home still catching up (hints for it pending since it came back, see handoff.py)
    coordinates only when no other home can: it may lack acknowledged writes, and a
    write it coordinates would be a sibling of them rather than their successor. Homes
    that failed before the coordinator answered get a hint with the new object.

    Events: ``on_coordinated(reply)`` for the one home asked to coordinate at a time,
    then ``on_ack(index, reply)`` once per other home, in any order.
    COORDINATING: a coordinator that is down or fails counts as a failed home and the
    next one in order is asked; none left, or the quorum impossible, → ANSWERED
    (NOQUORUM). An error about the command itself, or an operation that wrote nothing
    (SET NX on an existing key), → ANSWERED with that. Else → FANNING_OUT, the
    coordinator's object the first ack; → ANSWERED once ``w`` acked (NOQUORUM once they
    cannot). A home that fails after the coordinator answered gets a hint, in any phase.
    """

    __slots__ = ("context", "op", "synced", "order", "tried", "missed", "coordinator", "result")

    def __init__(self, co: Coordinator, key: bytes, homes: tuple[Link, ...], need: int,
                 context: bytes, op: wire.Op, done: Done,
                 synced: Sequence[bytes] | None = None, stands: Stands = None) -> None:
        self.co = co
        self.key = key
        self.homes = homes
        self.stands = stands
        self.done = done
        self.quorum = Quorum(need, len(homes))
        self.phase = COORDINATING
        self.context = context
        self.op = op
        self.synced = synced
        self.order = _coordinator_order(co, homes, stands)
        self.tried = 0  # how many of ``order`` were asked to coordinate
        self.missed: list[int] = []  # homes that failed before a coordinator answered
        self.coordinator = -1
        self.result: Any = None

    def start(self) -> None:
        self._coordinate_next()

    def _coordinate_next(self) -> None:
        homes = self.homes
        order = self.order
        while self.tried < len(order):
            index = order[self.tried]
            self.tried += 1
            link = homes[index]
            if not link.up:
                self._missed(index, DOWN)
                continue
            if self.quorum.impossible:
                break
            self.coordinator = index
            payload = self.co.wire.put(self.key, link.actor, self.context, self.op, self.synced)
            link.request(self.payload_for(index, payload), self.on_coordinated)
            return
        self._noquorum("write")

    def _missed(self, index: int, reply: Any) -> None:
        """A home failed before a coordinator answered (as coordinator, it counts too)."""
        self.quorum.fail(_why(self.homes[index], reply))
        self.missed.append(index)

    def on_coordinated(self, reply: Any) -> None:
        link = self.homes[self.coordinator]
        if type(reply) is not list:
            if is_replica_error(reply) or not isinstance(reply, ReplyError):
                self._missed(self.coordinator, reply)
                if isinstance(reply, ReplyError) and "Function not found" in reply.text:
                    link.fail("function library missing; reloading")
                self._coordinate_next()
            else:
                self._finish(clean_error(reply))
            return
        blob = reply[0]
        self.result = (blob, reply[1])
        self.quorum.acks = 1
        if blob is None:  # the operation wrote nothing (e.g. SET NX on an existing key)
            self._finish(self.result)
            return
        self.phase = FANNING_OUT
        for missed in self.missed:  # they failed before: hand off later
            self.co.hint(link, self.home_of(missed), self.key, blob)
        payload = self.co.wire.replace(self.key, blob, reply[2] or b"", reply[3])
        for index in self.order[self.tried:]:
            self.homes[index].request(self.payload_for(index, payload), partial(self.on_ack, index))
        if self.phase is FANNING_OUT:
            self._settle(self.result, "write")

    def on_ack(self, index: int, reply: Any) -> None:
        if type(reply) is int:
            self.quorum.acks += 1
        else:
            self.quorum.fail(_why(self.homes[index], reply))
            self.co.hint(self.homes[self.coordinator], self.home_of(index), self.key, self.result[0])
        if self.phase is FANNING_OUT:
            self._settle(self.result, "write")


_IN_ORDER = {size: tuple(range(size)) for size in range(1, 33)}


def _coordinator_order(co: Coordinator, homes: tuple[Link, ...], stands: Stands = None
                       ) -> tuple[int, ...]:
    """Preference order, homes still catching up after the others, fallbacks last (they
    coordinate only when no home can); the common case costs two tests."""
    if not co.catching_up and stands is None:
        return _IN_ORDER.get(len(homes)) or tuple(range(len(homes)))

    def rank(i: int) -> int:
        if stands is not None and stands[i] is not None:
            return 2
        return 1 if homes[i].id in co.catching_up else 0
    return tuple(sorted(range(len(homes)), key=rank))


class _LwwWrite(_Machine):
    """Last-write-wins: every home keeps the highest (timestamp, actor); one round trip.

    Events: ``on_ack(index, reply)`` once per home, in any order. FANNING_OUT from the
    start; → ANSWERED once ``w`` acked (NOQUORUM once they cannot). The first home to
    ack holds the hints for the homes that failed, before it or after.
    """

    __slots__ = ("existed", "payload", "holder", "missed")

    def __init__(self, co: Coordinator, key: bytes, homes: tuple[Link, ...], need: int,
                 sibling: tuple[bytes, bytes, bytes], done: Done, stands: Stands = None) -> None:
        self.co = co
        self.key = key
        self.homes = homes
        self.stands = stands
        self.done = done
        self.quorum = Quorum(need, len(homes))
        self.phase = FANNING_OUT
        self.existed = 0
        self.holder: Link | None = None  # the first home that took the write
        self.missed: list[Link] = []
        self.payload = co.wire.lww(key, co.actor, sibling)

    def start(self) -> None:
        for i, link in enumerate(self.homes):
            link.request(self.payload_for(i, self.payload), partial(self.on_ack, i))

    def on_ack(self, index: int, reply: Any) -> None:
        if type(reply) is int:
            self.quorum.acks += 1
            self.existed = max(self.existed, reply)
            if self.holder is None:
                self.holder = self.homes[index]
                for missed in self.missed:
                    self.co.hint(self.holder, missed, self.key)
        else:
            self.quorum.fail(_why(self.homes[index], reply))
            if self.holder is None:
                self.missed.append(self.home_of(index))
            else:
                self.co.hint(self.holder, self.home_of(index), self.key)
        if self.phase is FANNING_OUT:
            # No object bytes come back in one round trip: b"" stands for "written".
            self._settle((b"", self.existed), "write")
