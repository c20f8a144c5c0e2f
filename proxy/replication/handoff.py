"""Hinted handoff: a write that missed a home replica leaves a hint; the hint is delivered
when that replica answers again.

A hint is a field of the Redis hash ``__rq:hints:<replica id>`` on the replica that
coordinated the write: the key, with the object the coordinator made (LWW's one-round-trip
writes leave an empty object: the holder's current one is read instead). Keeping the
object, not just the key's name, is what makes a DEL missed during an outage safe at any
volume: the tombstone travels in the hint even after the holders have collected their own
copy (a delivered tombstone past its grace deletes the target's older value and is gone).
The holder's AOF keeps hints across a restart. Every second each proxy, for every pair of
up replicas (holder, target), walks the holder's hash with HSCAN, a page at a time and the
next page as soon as one is merged, so delivery keeps up with whatever an outage left.
Each object goes into the target through ``rq_merge`` (a merge, never a blind SET, so a
newer write that reached the target meanwhile is kept), and only then is the hint removed
(``rq_hint_done``, which keeps it if a newer write replaced it meanwhile): a proxy that
dies mid-delivery leaves the hint for the next one. Several proxies may deliver the same
hint; the merge makes that harmless.

Hints have a creation time (a sorted set next to the hash, wire.hint_times_key, scored
by the holder's clock when the key's first pending hint was left): each round counts the
hints per pair with ``rq_hint_stats``, which also answers the oldest one's age, and a
delivered hint's delay (creation to delivery) is observed in a histogram per target.

With a sloppy quorum a fallback holds a copy of the key as well as the hint for the home
it stood in for (left in the same atomic call, coordinator.py). Once the hint's object is
merged into the home, ``rq_hint_done`` drops the hint and, when the holder is not a home
of the key, the copy too if it still holds exactly the delivered object and no hint for
another replica still needs it: a write that reached the fallback meanwhile replaced the
hint and the copy together, and is delivered in a later page. A fallback that stood in
for two homes at different times holds two hints with different objects; when the one
delivered last carries an object older than the copy, ``rq_hint_done`` puts the copy in
that hint instead of dropping it, so the copy goes home and then goes (it is never left
with no hint to take it away). The copy never goes before its object is home, so a proxy
dying at any point loses nothing. Past the hint window
(``_drop``) a fallback's hint is not simply deleted, which would strand its copy: its
object is merged into the key's remaining homes first, then hint and copy go together.

A replica that comes back is "catching up" until a round finds no hint pending for it on
any up holder (or ``CATCH_UP_LIMIT`` passes): meanwhile it does not coordinate writes
while another home can (coordinator.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..protocol.resp import command
from . import wire
from .coordinator import Coordinator
from .counters import LocalHistogram
from .links import Link

log = logging.getLogger("redquorum.handoff")

PAGE = 256  # hints asked for per HSCAN (a page is merged before the next is asked for)
CATCH_UP_LIMIT = 10.0  # seconds a returning replica is kept from coordinating, at most
# upper edges (seconds) of the hint delivery delay histogram: from a blip to a day
DELAY_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 10800, 86400)


class Handoff:
    """``round`` every second (the server's timer calls it)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.links = coordinator.links
        self.pending: dict[tuple[str, str], int] = {}  # (holder, target) → hints held
        # (holder, target) → (age in s of the oldest hint with a known creation time, as
        # the holder answered, time.monotonic() then)
        self._oldest: dict[tuple[str, str], tuple[float, float]] = {}
        # target → creation-to-delivery delays of the hints delivered into it
        self.delivery_delay = {ident: LocalHistogram(DELAY_BUCKETS) for ident in self.links}
        self.replayed: dict[str, int] = {ident: 0 for ident in self.links}
        # target → (started at, replayed count then, pending then) while a replay runs
        self.replaying: dict[str, tuple[float, int, int]] = {}
        # target → (time, replayed count) at the start of the last round it was idle: a
        # replay's first hints go in the round that first counts them, before it is logged
        self._idle_mark: dict[str, tuple[float, int]] = {}
        self._walking: set[tuple[str, str]] = set()  # pairs with a page in flight
        self._round = 0
        self._counted: dict[tuple[str, str], int] = {}  # pair → round of its last count
        self._came_up: dict[str, tuple[int, float]] = {}  # target → (round, time) it came up
        self._expired: set[str] = set()  # targets past the hint window (logged once)

    def came_up(self, target: str) -> None:
        """``target``'s link is up again: it may lack what hints hold for it."""
        self._came_up[target] = (self._round, time.monotonic())
        self.coordinator.catching_up.add(target)

    def _check_caught_up(self) -> None:
        for target, (since_round, since) in list(self._came_up.items()):
            holders = [h for h in self.links.values() if h.up and h.id != target]
            counted = all(self._counted.get((h.id, target), -1) > since_round for h in holders)
            pending = sum(self.pending.get((h.id, target), 0) for h in holders)
            if (counted and not pending) or time.monotonic() - since > CATCH_UP_LIMIT:
                del self._came_up[target]
                self.coordinator.catching_up.discard(target)

    def pending_for(self) -> dict[str, int]:
        """Hints waiting, per target replica (as last counted)."""
        totals = {ident: 0 for ident in self.links}
        for (_, target), count in list(self.pending.items()):
            if target in totals:  # else a replica that left the cluster
                totals[target] += count
        return totals

    def oldest_ages(self) -> dict[str, float]:
        """Per target: the age of the oldest hint pending for it on any holder, from the
        hints' creation times as the holders last answered, aged since (0 when none)."""
        now = time.monotonic()
        ages = dict.fromkeys(self.links, 0.0)
        for pair, (age, at) in list(self._oldest.items()):
            if self.pending.get(pair):
                target = pair[1]
                ages[target] = max(ages[target], age + now - at)
        return ages

    def round(self) -> None:
        links = list(self.links.values())
        # the previous round's counts are all in by now: whole totals, not one holder's
        for target, pending in self.pending_for().items():
            self._replay_state(target, pending)
        self._check_caught_up()
        self._round += 1
        expired = [t for t in links if self.coordinator.beyond_hint_window(t)]
        self._note_expired(expired)
        for holder in links:
            if not holder.up:
                continue
            for target in links:
                if holder is target:
                    continue
                if target in expired:
                    self._drop(holder, target)
                    continue
                self._count(holder, target)
                if target.up and (holder.id, target.id) not in self._walking:
                    self._walking.add((holder.id, target.id))
                    self._page(holder, target, b"0")

    def _note_expired(self, expired: list[Link]) -> None:
        """One log line when a replica passes the hint window (it is down longer than the
        window: its hints are dropped and anti-entropy catches it up once it returns)."""
        for target in expired:
            if target.id not in self._expired:
                self._expired.add(target.id)
                log.warning("replica %s has been down longer than the hint window (%gs): its "
                            "hints are dropped; anti-entropy catches it up when it returns",
                            target.id, self.coordinator.hint_window,
                            extra={"event": "hint_window_passed", "replica": target.id})
        self._expired &= {t.id for t in expired}

    def _drop(self, holder: Link, target: Link) -> None:
        """Drop the hints ``holder`` keeps for ``target``, counting them. With nodes beyond
        the n homes a hint may belong to a fallback's copy, which nothing else would ever
        remove: those are walked page by page instead (``_retire``)."""
        def counted(reply: Any) -> None:
            if type(reply) is int and reply:
                self._count_dropped(target, reply)
        pair = (holder.id, target.id)
        self.pending[pair] = 0
        if len(self.links) <= self.coordinator.n:  # every node is a home of every key
            holder.request(wire.hints_drop(target.id), counted)
        elif pair not in self._walking:
            self._walking.add(pair)
            self._page(holder, target, b"0", retiring=True)

    def _count_dropped(self, target: Link, count: int) -> None:
        dropped = self.coordinator.hints_dropped
        dropped[target.id] = dropped.get(target.id, 0) + count

    def _count(self, holder: Link, target: Link) -> None:
        this_round = self._round

        def counted(reply: Any) -> None:
            if type(reply) is list and len(reply) == 2 and type(reply[0]) is int:
                pair = (holder.id, target.id)
                self.pending[pair] = reply[0]
                if type(reply[1]) is int and reply[1] >= 0:
                    self._oldest[pair] = (reply[1] / 1000, time.monotonic())
                else:
                    self._oldest.pop(pair, None)
                self._counted[pair] = this_round
        holder.request(wire.hint_stats(target.id), counted)

    def _replay_state(self, target: str, pending: int) -> None:
        """One log line when hints for an up replica start being replayed, one when none
        are left (hints for a replica that is down only accumulate)."""
        now, replayed_now = time.time(), self.replayed.get(target, 0)
        if target not in self.replaying:
            since, replayed_then = self._idle_mark.get(target, (now, replayed_now))
            self._idle_mark[target] = (now, replayed_now)
        if pending and target not in self.replaying and self.links[target].up:
            self.replaying[target] = (since, replayed_then, pending)
            log.info("hint replay into %s started: %d hints pending", target, pending,
                     extra={"event": "hint_replay_started", "replica": target, "pending": pending})
        elif not pending and target in self.replaying:
            started, replayed_before, pending_then = self.replaying.pop(target)
            replayed = replayed_now - replayed_before
            seconds = now - started
            self._idle_mark[target] = (now, replayed_now)
            log.info("hint replay into %s finished: %d hints replayed in %.1fs (%d were pending)",
                     target, replayed, seconds, pending_then,
                     extra={"event": "hint_replay_finished", "replica": target, "replayed": replayed,
                            "pending_at_start": pending_then, "seconds": round(seconds, 3)})

    # -- delivery ------------------------------------------------------------

    def _page(self, holder: Link, target: Link, cursor: bytes, retiring: bool = False) -> None:
        """The next page of ``holder``'s hints for ``target``: delivered into it or, once
        it is past the hint window (``retiring``), dropped (``_retire``)."""
        holder.request(command(b"HSCAN", wire.hints_key(target.id), cursor, b"COUNT", b"%d" % PAGE),
                       partial(self._scanned, holder, target, retiring))

    def _scanned(self, holder: Link, target: Link, retiring: bool, reply: Any) -> None:
        pair = (holder.id, target.id)
        if type(reply) is not list or len(reply) != 2 or type(reply[1]) is not list:
            self._walking.discard(pair)  # the holder failed: the next round starts over
            return
        cursor, flat = reply
        hints = list(zip(flat[::2], flat[1::2], strict=False))
        left = [len(hints)]

        def delivered() -> None:
            left[0] -= 1
            if left[0] == 0:
                self._next_page(holder, target, cursor, retiring)

        if not hints:
            self._next_page(holder, target, cursor, retiring)
        hand = self._retire if retiring else self.deliver
        for key, blob in hints:
            if blob:
                hand(holder, target, key, blob, delivered)
            else:  # an LWW hint: the holder's current object
                holder.get(key, self._read, (holder, target, key, delivered, hand))

    def _next_page(self, holder: Link, target: Link, cursor: bytes, retiring: bool) -> None:
        if cursor != b"0" and holder.up and (target.up or retiring):
            self._page(holder, target, cursor, retiring)
        else:
            self._walking.discard((holder.id, target.id))

    def _read(self, hint: tuple[Link, Link, bytes, Callable[[], None], Callable[..., None]],
              blob: Any) -> None:
        holder, target, key, delivered, hand = hint
        if type(blob) is bytes:
            hand(holder, target, key, blob, delivered, expected=b"")
            return
        if blob is None:  # the key is gone on the holder (collected, flushed): nothing to hand
            holder.request(wire.hint_done(target.id, key, b""), self._done_reply(target))
        delivered()  # a failed holder keeps the hint for a later round

    def _retire(self, holder: Link, target: Link, key: bytes, blob: bytes,
                delivered: Callable[[], None], expected: bytes | None = None) -> None:
        """Drop a hint for a replica past the hint window. A fallback's hint goes with
        its copy, once the object is merged into the key's other homes that are not past
        the window themselves (``_rehome``): an acknowledged write held only by fallbacks
        stays on the homes that remain."""
        hint = blob if expected is None else expected
        co = self.coordinator
        if holder in co.holders(key):
            holder.request(wire.hint_done(target.id, key, hint), self._dropped_reply(target))
            delivered()
            return
        others = [home for home in co.holders(key)
                  if home is not target and not co.beyond_hint_window(home)]
        self._rehome(holder, target, key, blob, delivered, hint, others,
                     self._dropped_reply(target))

    def _rehome(self, holder: Link, target: Link, key: bytes, blob: bytes,
                delivered: Callable[[], None], hint: bytes, homes: list[Link],
                on_done: Callable[[Any], None]) -> None:
        """Merge ``blob`` into every one of ``homes`` (all must be up, else the hint waits
        for a later round), then drop the hint, and the holder's copy when the holder is
        not a home of ``key``."""
        if not homes or not all(home.up for home in homes):
            delivered()
            return
        done = self._done_payload(holder, target, key, hint, blob)
        left = [len(homes)]
        failed = [False]

        def merged(reply: Any) -> None:
            failed[0] = failed[0] or type(reply) is not int
            left[0] -= 1
            if left[0] == 0:
                if not failed[0]:
                    holder.request(done, on_done)
                delivered()
        payload = self.coordinator.wire.merge(key, blob)
        for home in homes:
            home.request(payload, merged)

    def _dropped_reply(self, target: Link) -> Callable[[Any], None]:
        def counted(reply: Any) -> None:
            if type(reply) is list and reply and reply[0] == 1:
                self._count_dropped(target, 1)
        return counted

    def deliver(self, holder: Link, target: Link, key: bytes, blob: bytes,
                delivered: Callable[[], None], expected: bytes | None = None) -> None:
        """Merge ``blob`` into ``target``, then drop the hint if it still says ``expected``
        (the hint's own object unless given), and the holder's copy of ``blob`` if the
        holder is not a home of ``key`` (it held it as a fallback)."""
        hint = blob if expected is None else expected
        holders = self.coordinator.holders(key)
        if target not in holders:
            # a membership change moved the key away from ``target`` since the hint was
            # left: the object goes to the key's homes now, never to a node that dropped
            # (or will drop) the partition
            others = [home for home in holders if home is not holder]
            self._rehome(holder, target, key, blob, delivered, hint, others,
                         self._done_reply(target))
            return
        done = self._done_payload(holder, target, key, hint, blob)

        def merged(reply: Any) -> None:
            if type(reply) is int:
                self.replayed[target.id] = self.replayed.get(target.id, 0) + 1
                holder.request(done, self._done_reply(target))
            delivered()  # else: not home after all, and the hint stays for a later round
        target.request(self.coordinator.wire.merge(key, blob), merged)

    def _done_payload(self, holder: Link, target: Link, key: bytes, hint: bytes,
                      blob: bytes) -> bytes:
        if holder in self.coordinator.holders(key):
            return wire.hint_done(target.id, key, hint)
        others = [ident for ident in self.links if ident not in (holder.id, target.id)]
        return wire.hint_done(target.id, key, hint, copy=blob, others=others)

    def _done_reply(self, target: Link) -> Callable[[Any], None]:
        """rq_hint_done's answer: the delay of a dropped hint with a creation time."""
        def observe(reply: Any) -> None:
            if type(reply) is list and len(reply) == 3 and reply[0] == 1 and type(reply[1]) is int \
                    and reply[1] >= 0:
                self.delivery_delay[target.id].observe(reply[1] / 1000)
        return observe


def _ignore(reply: Any) -> None:
    pass
