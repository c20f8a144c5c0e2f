"""Hinted handoff: a write that missed a home replica leaves a hint; the hint is replayed
when that replica answers again.

A hint is the key's name in a Redis set ``__rq:hints:<replica id>`` on the replica that
coordinated the write (it holds the new object, and its AOF keeps the hint across a
restart). Every ``interval`` each proxy, for every pair of up replicas (holder, target),
takes a handful of hints for the target from the holder (SPOP is atomic: several proxies
never replay the same hint twice), reads the key's current object on the holder and
merges it into the target with ``rq_merge`` — a merge, never a blind SET, so a newer
write that reached the target meanwhile is kept. A replay that fails puts its hint back
(best effort: if the holder itself fails in between, read repair is the fallback).

Hints are per key, not per write: ten missed writes of one key are one hint, and the
replay ships the holder's latest object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..protocol.resp import command
from .coordinator import Coordinator, hints_key
from .links import Link

log = logging.getLogger("redquorum.handoff")

BATCH = 64  # hints taken per (holder, target) pair and round


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

    def pending_for(self) -> dict[str, int]:
        """Hints waiting, per target replica (as last counted)."""
        totals = {ident: 0 for ident in self.links}
        for (_, target), count in list(self.pending.items()):
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
        for holder in links:
            if not holder.up:
                continue
            for target in links:
                if holder is target:
                    continue
                self._count(holder, target)
                if target.up:
                    holder.request(command(b"SPOP", hints_key(target.id), b"%d" % BATCH),
                                   self._taken(holder, target))

    def _count(self, holder: Link, target: Link) -> None:
        def counted(reply: Any) -> None:
            if type(reply) is int:
                self.pending[(holder.id, target.id)] = reply
                self._recount(target.id)
        holder.request(command(b"SCARD", hints_key(target.id)), counted)

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

    def _taken(self, holder: Link, target: Link) -> Callable[[Any], None]:
        def taken(keys: Any) -> None:
            if type(keys) is not list:
                return
            for key in keys:
                holder.get(key, self._read, (holder, target, key))
        return taken

    def _read(self, hint: tuple[Link, Link, bytes], blob: Any) -> None:
        holder, target, key = hint
        if type(blob) is bytes:
            self.replay(holder, target, key, blob)
        elif blob is not None:  # the holder failed: the hint goes back for a later round
            holder.request(command(b"SADD", hints_key(target.id), key), _ignore)
        # None: the key is gone (a collected tombstone, a flush): nothing to hand off

    def replay(self, holder: Link, target: Link, key: bytes, blob: bytes) -> None:
        def merged(reply: Any) -> None:
            if type(reply) is int:
                self.replayed[target.id] = self.replayed.get(target.id, 0) + 1
            else:  # not home yet after all: keep the hint for a later round
                holder.request(command(b"SADD", hints_key(target.id), key), _ignore)
        target.request(self.coordinator.merge_payload(key, blob), merged)


def _ignore(reply: Any) -> None:
    pass
