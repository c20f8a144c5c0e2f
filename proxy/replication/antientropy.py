"""Anti-entropy: replicas converge with no client reads, at a cost that follows how far
they diverge, not how much they hold (Riak's TicTac AAE).

Theory of operation
-------------------
Every replica keeps digests of what it stores, updated by the same function calls that
store objects (replicas/redquorum.lua, "Anti-entropy digests"): per ring partition a
*root*, per partition 64 *segment* digests, per segment its keys with one *entry* each
(48 bits of sha1 over the key and its stored bytes); segments and roots are XORs of
entries. The entries are stored; the roots are kept in the replica's memory and updated
by each write in O(1); segment digests are summed when asked for. Equal objects are
equal bytes (Lua is the only encoder), so two homes hold the same data for a partition
exactly when (up to hash collisions) their roots agree. A round:

1. asks every up replica for its roots, 256 partitions per call
   (``rq_aae_roots``); a replica whose digests are incomplete (no generation built yet)
   is left out;
2. for each partition whose homes disagree, takes a lease on the partition's first up
   home (``SET __rq:aae:lease:<p> <proxy> NX PX``, released when the partition is done):
   a partition another proxy is repairing is skipped, so several proxies never repeat
   each other's work;
3. asks the homes for that partition's segment digests (``rq_aae_segments``), then for
   the segments that differ, their keys' entries (``rq_aae_keys``);
4. reads only the keys whose entries differ (``rq_aae_objects``), merges what the homes
   hold, and sends each home whose object differs from the merge the others' objects
   through ``rq_merge`` — a merge, never a blind SET, so a write that lands meanwhile is
   kept, and a tombstone covers the value it deleted wherever it arrives. A home whose
   object already equals the merge gets its entry recomputed from its data
   (``rq_aae_refresh``): a key Redis dropped at its PXAT leaves the digests that way.

So with 20 of 20,000 keys diverged a round reads the roots, the segment digests of about
20 partitions, the keys of about 20 segments, and 20 objects per home. Objects read are
throttled to ``keys_per_second``: ``tick`` runs several times a second and refills a
budget; a partition starts only while it lasts, and one with many diverged keys reads
them 256 at a time, each chunk waiting for the budget. Rounds start every ``interval``.

Digests miss what happens behind the proxy's back (DEL or FLUSHALL on a replica,
eviction, a restore of older files): ``rebuild_tick`` drives every replica's periodic
rebuild of its digests from a SCAN of its data, in bounded steps; the replica decides
when one is due, and one whose digests are missing starts at once.

Everything here is callbacks on links, no I/O of its own: the server's timer calls
``tick`` and ``rebuild_tick``; ``redquorum repair`` drives one round with real links.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.resp import ReplyError, command
from . import clock, wire
from .clock import CorruptObject
from .coordinator import Coordinator
from .links import Link
from .ring import PARTITIONS

log = logging.getLogger("redquorum.antientropy")

ZERO = b"000000000000"  # an absent digest: XOR of nothing
LEASE_PREFIX = b"__rq:aae:lease:"
PARALLEL = 8  # partitions being repaired at once
OBJECTS_PER_CALL = 256  # keys per rq_aae_objects call
# Partitions' roots per rq_aae_roots call: a replica keeps them in memory (a tenth of a
# millisecond per call), except after a restart, when each is summed from its partition's
# entries once, at most 20,000 entries per call (about 5 ms: the replica serves nothing
# else meanwhile); a replica that has not summed them all sits the round out.
ROOTS_PER_CALL = 256


def lease_key(partition: int) -> bytes:
    return LEASE_PREFIX + b"%d" % partition


def _pairs(flat: Any) -> dict[bytes, bytes]:
    if type(flat) is not list:
        return {}
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def differing(maps: Iterable[dict[bytes, bytes]]) -> set[bytes]:
    """Fields on which the maps do not all agree (an absent field is a zero digest)."""
    maps = list(maps)
    fields: set[bytes] = set()
    for m in maps:
        fields.update(m)
    return {f for f in fields if len({m.get(f, ZERO) for m in maps}) > 1}


def odd_ones(values: dict[str, bytes]) -> list[str]:
    """The replicas whose value differs from the most common one (all of them on a tie)."""
    counts = Counter(values.values())
    top = counts.most_common()
    if len(top) > 1 and top[0][1] == top[1][1]:
        return list(values)
    return [ident for ident, v in values.items() if v != top[0][0]]


@dataclass
class RoundStats:
    """What one round found and did (the metrics, INFO and ``redquorum repair`` read it)."""

    started: float
    finished: float = 0.0
    replicas: list[str] = field(default_factory=list)  # compared (digests complete)
    partitions: int = 0  # compared
    partitions_diverged: int = 0
    partitions_leased: int = 0  # skipped: another proxy holds the lease
    segments_diverged: int = 0
    keys_compared: int = 0  # keys listed in diverged segments
    keys_diverged: int = 0  # keys whose entries differ
    keys_repaired: int = 0  # merges that changed a home
    repaired: dict[str, int] = field(default_factory=dict)
    segments_by_replica: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    done: bool = False

    @property
    def duration(self) -> float:
        return (self.finished or time.time()) - self.started

    @property
    def succeeded(self) -> bool:
        return self.done and self.errors == 0 and len(self.replicas) >= 2


class AntiEntropy:
    """Rounds of digest exchange; the server's timer calls ``tick`` and ``rebuild_tick``."""

    def __init__(self, coordinator: Coordinator, *, owner: str, interval: float = 10.0,
                 keys_per_second: float = 5000.0, rebuild_interval: float = 3600.0,
                 dry_run: bool = False, partitions: Iterable[int] | None = None,
                 only: str | None = None, lease_ms: int | None = None) -> None:
        self.co = coordinator
        self.links = coordinator.links
        self.owner = owner.encode()
        self.interval = interval
        self.keys_per_second = keys_per_second
        self.rebuild_interval = rebuild_interval
        self.dry_run = dry_run
        self.scope = sorted(set(partitions)) if partitions is not None else range(PARTITIONS)
        self.only = only  # compare and repair this replica only (redquorum repair --replica-id)
        self.lease_ms = lease_ms or max(1000, int(interval * 1000))
        self.round: RoundStats | None = None  # the one running, or the last
        self.last_success = 0.0
        self.rounds = 0
        self.repaired_total: dict[str, int] = {ident: 0 for ident in self.links}
        self.segments_diverged: dict[str, int] = {ident: 0 for ident in self.links}
        self.rebuild_phase: dict[str, str] = {}
        self._next_round = 0.0
        self._tokens = 0.0
        self._last_tick = 0.0
        self._queue: list[int] = []
        self._parked: list[Callable[[], None]] = []  # partitions waiting for budget to go on
        self._roots: dict[str, dict[bytes, bytes]] = {}
        self._roots_pending = 0
        self._in_flight = 0

    # -- driving -----------------------------------------------------------------------

    def tick(self, now: float | None = None, *, start_rounds: bool = True) -> None:
        """Refill the budget and go on with the round; with ``start_rounds``, start one
        when ``interval`` has passed since the last began."""
        try:
            self._tick(time.monotonic() if now is None else now, start_rounds)
        except Exception:  # a background duty's surprise must not take the proxy down
            log.exception("anti-entropy step failed")
            if self.round is not None and not self.round.done:
                self.round.errors += 1

    def _tick(self, now: float, start_rounds: bool) -> None:
        elapsed = now - self._last_tick if self._last_tick else 0.0
        self._last_tick = now
        burst = max(1.0, self.keys_per_second)  # at most a second's worth saved up
        self._tokens = min(burst, self._tokens + elapsed * self.keys_per_second)
        if start_rounds and not self.active and now >= self._next_round:
            self._next_round = now + self.interval
            self.start_round()
        self._advance()

    @property
    def active(self) -> bool:
        return self.round is not None and not self.round.done

    @property
    def partitions_left(self) -> int | None:
        """Diverged partitions of the round still queued or being repaired; None while
        its roots are being read."""
        if self.round is None or self.round.done:
            return 0
        if self._roots_pending:
            return None
        return len(self._queue) + self._in_flight

    def start_round(self) -> RoundStats:
        stats = self.round = RoundStats(started=time.time())
        self._roots = {}
        self._queue = []
        self._parked = []
        up = [link for link in self.links.values() if link.up]
        self._roots_pending = len(up) * (PARTITIONS // ROOTS_PER_CALL)
        if not up:
            self._finish()
            return stats
        incomplete: set[str] = set()
        for first in range(0, PARTITIONS, ROOTS_PER_CALL):
            payload = wire.aae_roots(first, ROOTS_PER_CALL)
            for link in up:
                link.request(payload, self._rooted(link, stats, incomplete))
        return stats

    def _rooted(self, link: Link, stats: RoundStats, incomplete: set[str]) -> Callable[[Any], None]:
        def got(reply: Any) -> None:
            if stats is not self.round:
                return
            if type(reply) is list and len(reply) >= 2 and reply[0] == 1:
                self._roots.setdefault(link.id, {}).update(_pairs(reply[1]))
            else:  # digests incomplete, or no answer: this replica sits the round out
                incomplete.add(link.id)
                if type(reply) is not list:
                    stats.errors += 1
            self._roots_pending -= 1
            if self._roots_pending == 0:
                for ident in incomplete:
                    self._roots.pop(ident, None)
                self._plan(stats)
        return got

    def _plan(self, stats: RoundStats) -> None:
        roots = self._roots
        stats.replicas = sorted(roots)
        for p in self.scope:
            homes = [link for link in self.co.homes_of(p) if link.id in roots]
            if len(homes) < 2 or (self.only and self.only not in {h.id for h in homes}):
                continue
            stats.partitions += 1
            key = b"%d" % p
            if len({roots[h.id].get(key, ZERO) for h in homes}) > 1:
                stats.partitions_diverged += 1
                self._queue.append(p)
        self._queue.reverse()  # popped from the end: partitions in order
        self._advance()

    def _advance(self) -> None:
        stats = self.round
        if stats is None or stats.done or self._roots_pending:
            return
        while self._parked and self._tokens > 0:
            self._parked.pop(0)()
        while self._queue and self._in_flight < PARALLEL and self._tokens > 0:
            self._in_flight += 1
            self._tokens -= 1  # its digests are work too: a partition costs a key's worth
            _Partition(self, stats, self._queue.pop()).start()
        if not self._queue and self._in_flight == 0:
            self._finish()

    def partition_done(self, stats: RoundStats) -> None:
        if stats is self.round:
            self._in_flight -= 1
            self._advance()

    def spend(self, keys: int) -> None:
        self._tokens -= keys

    def when_budget(self, go_on: Callable[[], None]) -> None:
        """Run ``go_on`` now if the budget allows, else once ticks have refilled it."""
        if self._tokens > 0:
            go_on()
        else:
            self._parked.append(go_on)

    def _finish(self) -> None:
        stats = self.round
        if stats is None or stats.done:
            return
        stats.done = True
        stats.finished = time.time()
        self.rounds += 1
        for ident in self.segments_diverged:
            self.segments_diverged[ident] = stats.segments_by_replica.get(ident, 0)
        if stats.succeeded:
            self.last_success = stats.finished
        if stats.keys_repaired or stats.errors:
            log.info("anti-entropy round: %d partitions differed, %d segments, %d keys repaired, "
                     "%d errors", stats.partitions_diverged, stats.segments_diverged,
                     stats.keys_repaired, stats.errors)

    # -- digest rebuilds ----------------------------------------------------------------

    def rebuild_tick(self, every: float | None = None, count: int | None = None,
                     done: Callable[[dict[str, str]], None] | None = None,
                     replicas: Iterable[str] | None = None) -> None:
        """One bounded rebuild step on every up replica (or those named in ``replicas``; a
        no-op where none is due); ``done`` gets each one's phase once all have answered."""
        every_ms = int((self.rebuild_interval if every is None else every) * 1000)
        count = count or max(100, int(self.keys_per_second))
        now = b"%d" % (time.time_ns() // 1_000_000)
        payload = wire.aae_rebuild(now, every_ms, count)
        chosen = None if replicas is None else set(replicas)
        up = [link for link in self.links.values()
              if link.up and (chosen is None or link.id in chosen)]
        phases: dict[str, str] = {}
        remaining = [len(up)]
        if not up and done is not None:
            done(phases)
        for link in up:
            link.request(payload, self._rebuilt(link, phases, remaining, done))

    def _rebuilt(self, link: Link, phases: dict[str, str], remaining: list[int],
                 done: Callable[[dict[str, str]], None] | None) -> Callable[[Any], None]:
        def got(reply: Any) -> None:
            if type(reply) is list and reply:
                phase = reply[0].decode() if type(reply[0]) is bytes else str(reply[0])
                self.rebuild_phase[link.id] = phases[link.id] = phase
            remaining[0] -= 1
            if remaining[0] == 0 and done is not None:
                done(phases)
        return got


class _Partition:
    """One diverged partition: lease, segments, keys, objects, merges."""

    __slots__ = ("ae", "stats", "p", "homes", "waiting", "replies", "dead", "writes", "fetched",
                 "holder")

    def __init__(self, ae: AntiEntropy, stats: RoundStats, p: int) -> None:
        self.ae = ae
        self.stats = stats
        self.p = p
        self.homes = [link for link in ae.co.homes_of(p) if link.id in ae._roots and link.up]
        self.waiting = 0
        self.replies: dict[str, Any] = {}
        self.dead = False
        self.writes = 0  # merges and refreshes sent, not answered yet
        self.holder: Link | None = None  # where this proxy holds the partition's lease
        self.fetched = False  # every diverged key has been read and its writes sent

    def start(self) -> None:
        if self.ae.dry_run:
            self._segments()
            return
        holder = self.homes[0] if self.homes else None
        if holder is None:
            self._end()
            return
        holder.request(command(b"SET", lease_key(self.p), self.ae.owner, b"NX", b"PX",
                               b"%d" % self.ae.lease_ms), self._leased)

    def _leased(self, reply: Any) -> None:
        if reply is None:
            self.stats.partitions_leased += 1
            self._end()
        elif reply == b"OK":
            self.holder = self.homes[0]
            self._segments()
        else:
            self.stats.errors += 1
            self._end()

    def _ask(self, payload: bytes, then: Callable[[], None]) -> None:
        """Send ``payload`` to every home; ``then`` runs once all replied."""
        self.replies = {}
        self.waiting = len(self.homes)
        for link in self.homes:
            link.request(payload, self._one(link.id, then))

    def _one(self, ident: str, then: Callable[[], None]) -> Callable[[Any], None]:
        def got(reply: Any) -> None:
            if type(reply) is list:
                self.replies[ident] = reply
            else:
                self.stats.errors += 1
            self.waiting -= 1
            if self.waiting == 0:
                self._answered(then)
        return got

    def _answered(self, then: Callable[[], None]) -> None:
        self.homes = [h for h in self.homes if h.id in self.replies]
        if len(self.homes) < 2:
            self._end()
            return
        try:
            then()
        except Exception:  # one partition's surprise must not stop the round
            log.exception("anti-entropy failed on partition %d", self.p)
            self.stats.errors += 1
            self._end()

    def _segments(self) -> None:
        self._ask(wire.aae_segments(self.p), self._compare_segments)

    def _compare_segments(self) -> None:
        segs = {ident: _pairs(reply) for ident, reply in self.replies.items()}
        diverged = sorted(differing(segs.values()), key=int)
        if self.ae.only:
            diverged = [s for s in diverged
                        if segs[self.ae.only].get(s, ZERO) != _common(segs, s, self.ae.only)] \
                if self.ae.only in segs else []
        stats = self.stats
        stats.segments_diverged += len(diverged)
        for s in diverged:
            for ident in odd_ones({i: m.get(s, ZERO) for i, m in segs.items()}):
                stats.segments_by_replica[ident] = stats.segments_by_replica.get(ident, 0) + 1
        if not diverged:
            self._end()
            return
        self._ask(wire.aae_keys([(self.p, s) for s in diverged]), self._compare_keys)

    def _compare_keys(self) -> None:
        entries: dict[str, dict[bytes, bytes]] = {}
        for ident, reply in self.replies.items():
            merged: dict[bytes, bytes] = {}
            for flat in reply:
                merged.update(_pairs(flat))
            entries[ident] = merged
        listed: set[bytes] = set()
        for m in entries.values():
            listed.update(m)
        keys = sorted(differing(entries.values()))
        self.stats.keys_compared += len(listed)
        self.stats.keys_diverged += len(keys)
        if not keys or self.ae.dry_run:
            self.ae.spend(len(keys))
            self._end()
            return
        self._fetch(keys)

    def _fetch(self, keys: list[bytes]) -> None:
        """Read and merge ``keys`` a chunk at a time, each chunk paid from the budget."""
        chunk, rest = keys[:OBJECTS_PER_CALL], keys[OBJECTS_PER_CALL:]
        self.ae.spend(len(chunk))

        def merge_then_next() -> None:
            self._merge(chunk)
            if rest:
                self.ae.when_budget(lambda: self._fetch(rest))
            else:
                self.fetched = True
                self._written()
        self._ask(wire.aae_objects(chunk), merge_then_next)

    def _merge(self, keys: list[bytes]) -> None:
        co = self.ae.co
        for i, key in enumerate(keys):
            blobs = {h.id: self.replies[h.id][i] for h in self.homes}
            held = {ident: b for ident, b in blobs.items() if b is not None}
            try:
                decoded = {ident: clock.decode(b) for ident, b in held.items()}
            except CorruptObject:
                self.stats.errors += 1
                log.warning("anti-entropy: undecodable object under %r", key[:100])
                continue
            merged = None
            if decoded:  # what every home should hold: as reads resolve (coordinator.py)
                merged = (clock.lww_resolve(decoded.values()) if co.mode == "lww"
                          else clock.sync_all(decoded.values()))
            distinct = set(held.values())
            for link in self.homes:
                if self.ae.only and link.id != self.ae.only:
                    continue
                own = blobs[link.id]
                others = sorted(b for b in distinct if b != own)
                self.writes += 1
                if merged is not None and decoded.get(link.id) != merged and others:
                    link.request(co.wire.merge(key, *others), self._repaired(link.id))
                else:  # holds the merge already: its entry may be what is stale
                    link.request(wire.aae_refresh(key), self._refreshed)

    def _written(self) -> None:
        """The partition is done once its reads are over and every write has answered."""
        if self.fetched and self.writes == 0:
            self._end()

    def _refreshed(self, reply: Any) -> None:
        self.writes -= 1
        if type(reply) is not int:
            self.stats.errors += 1
        self._written()

    def _repaired(self, ident: str) -> Callable[[Any], None]:
        def got(reply: Any) -> None:
            self.writes -= 1
            if type(reply) is int:
                if reply:
                    self.stats.keys_repaired += 1
                    self.stats.repaired[ident] = self.stats.repaired.get(ident, 0) + 1
                    self.ae.repaired_total[ident] = self.ae.repaired_total.get(ident, 0) + 1
            else:
                self.stats.errors += 1
                if isinstance(reply, ReplyError):
                    log.warning("anti-entropy merge on %s failed: %s", ident, reply.text)
            self._written()
        return got

    def _end(self) -> None:
        if self.dead:
            return
        self.dead = True
        if self.holder is None:
            self.ae.partition_done(self.stats)
            return
        # done: another proxy may look at the partition again at once (the partition ends
        # when the release is answered, so `redquorum repair` leaves no lease behind)
        self.holder.request(wire.aae_release(lease_key(self.p), self.ae.owner), self._released)

    def _released(self, reply: Any) -> None:
        self.ae.partition_done(self.stats)


def _common(segs: dict[str, dict[bytes, bytes]], s: bytes, but: str) -> bytes | None:
    """The value the other homes agree on for segment ``s`` (None when they do not)."""
    values = {m.get(s, ZERO) for ident, m in segs.items() if ident != but}
    return values.pop() if len(values) == 1 else None

