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
from .links import Link
from .wire import hints_key

log = logging.getLogger("redquorum.handoff")

PAGE = 256  # hints asked for per HSCAN (a page is merged before the next is asked for)
CATCH_UP_LIMIT = 10.0  # seconds a returning replica is kept from coordinating, at most


class Handoff:
    """``round`` every second (the server's timer calls it)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.links = coordinator.links
        self.pending: dict[tuple[str, str], int] = {}  # (holder, target) → hints held
        self.replayed: dict[str, int] = {ident: 0 for ident in self.links}
        # target → when this proxy first counted hints for it since its count was last 0
        self.pending_since: dict[str, float] = {}
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
        """Per target: how long hints have been pending without a break, as this proxy
        counted them (0 when none). Hints carry no timestamp, so this is a lower bound on
        the oldest hint's age: the time since the count went from 0 to more."""
        now = time.time()
        return {ident: now - self.pending_since[ident] if ident in self.pending_since else 0.0
                for ident in self.links}

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
        """Drop the hints ``holder`` keeps for ``target``, counting them."""
        def counted(reply: Any) -> None:
            if type(reply) is int and reply:
                dropped = self.coordinator.hints_dropped
                dropped[target.id] = dropped.get(target.id, 0) + reply
        self.pending[(holder.id, target.id)] = 0
        holder.request(command(b"HLEN", hints_key(target.id)), counted)
        holder.request(command(b"DEL", hints_key(target.id)), _ignore)

    def _count(self, holder: Link, target: Link) -> None:
        this_round = self._round

        def counted(reply: Any) -> None:
            if type(reply) is int:
                self.pending[(holder.id, target.id)] = reply
                self._counted[(holder.id, target.id)] = this_round
                self._recount(target.id)
        holder.request(command(b"HLEN", hints_key(target.id)), counted)

    def _recount(self, target: str) -> None:
        total = sum(count for (_, t), count in self.pending.items() if t == target)
        if total and target not in self.pending_since:
            self.pending_since[target] = time.time()
        elif not total:
            self.pending_since.pop(target, None)

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

    def _page(self, holder: Link, target: Link, cursor: bytes) -> None:
        holder.request(command(b"HSCAN", hints_key(target.id), cursor, b"COUNT", b"%d" % PAGE),
                       partial(self._scanned, holder, target))

    def _scanned(self, holder: Link, target: Link, reply: Any) -> None:
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
                self._next_page(holder, target, cursor)

        if not hints:
            self._next_page(holder, target, cursor)
        for key, blob in hints:
            if blob:
                self.deliver(holder, target, key, blob, delivered)
            else:  # an LWW hint: the holder's current object
                holder.get(key, self._read, (holder, target, key, delivered))

    def _next_page(self, holder: Link, target: Link, cursor: bytes) -> None:
        if cursor != b"0" and holder.up and target.up:
            self._page(holder, target, cursor)
        else:
            self._walking.discard((holder.id, target.id))

    def _read(self, hint: tuple[Link, Link, bytes, Callable[[], None]], blob: Any) -> None:
        holder, target, key, delivered = hint
        if type(blob) is bytes:
            self.deliver(holder, target, key, blob, delivered, expected=b"")
            return
        if blob is None:  # the key is gone on the holder (collected, flushed): nothing to hand
            holder.request(wire.hint_done(target.id, key, b""), _ignore)
        delivered()  # a failed holder keeps the hint for a later round

    def deliver(self, holder: Link, target: Link, key: bytes, blob: bytes,
                delivered: Callable[[], None], expected: bytes | None = None) -> None:
        """Merge ``blob`` into ``target``, then drop the hint if it still says ``expected``
        (the hint's own object unless given)."""
        hint = blob if expected is None else expected

        def merged(reply: Any) -> None:
            if type(reply) is int:
                self.replayed[target.id] = self.replayed.get(target.id, 0) + 1
                holder.request(wire.hint_done(target.id, key, hint), _ignore)
            delivered()  # else: not home after all, and the hint stays for a later round
        target.request(self.coordinator.wire.merge(key, blob), merged)


def _ignore(reply: Any) -> None:
    pass
