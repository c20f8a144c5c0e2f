"""The freshness canary: replication lag for a store that has no replication log.

Leader-based replication reports lag as a log position; leaderless replication has no
single position to compare. So every ``heartbeat_interval`` the proxy writes its own
heartbeat (the current time) under the reserved prefix through the normal write path,
then reads each replica's copy directly. A replica's lag is the age of the newest
heartbeat it holds, computed when asked (so a dead replica's lag keeps growing rather
than freezing at its last value). Each proxy has its own heartbeat key, so several
proxies never read each other's beats as their own.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import clock, wire
from .coordinator import Coordinator

log = logging.getLogger("redquorum.health")

HEARTBEAT_PREFIX = b"__rq:hb:"
HEARTBEAT_TTL_MS = 3_600_000  # heartbeats of proxies gone for good clean themselves up


class Canary:
    """``beat`` every heartbeat interval (the server's timer calls it)."""

    def __init__(self, coordinator: Coordinator, proxy_id: str, w: int) -> None:
        self.coordinator = coordinator
        self.w = w
        self.key = HEARTBEAT_PREFIX + proxy_id.encode()
        started = time.time()
        # Until a replica shows a heartbeat, its lag counts from this proxy's start.
        self.seen: dict[str, float] = {ident: started for ident in coordinator.links}
        self.beats = 0
        self.failed_beats = 0

    def lag(self, replica: str, now: float | None = None) -> float:
        return max(0.0, (now or time.time()) - self.seen[replica])

    def lags(self) -> dict[str, float]:
        now = time.time()
        return {replica: self.lag(replica, now) for replica in self.seen}

    def beat(self) -> None:
        now_us = time.time_ns() // 1000
        expire_at = now_us // 1000 + HEARTBEAT_TTL_MS
        self.coordinator.write(self.key, self.w, b"*",
                               wire.set_value(b"%d" % now_us, expire_at=expire_at), self._written)

    def _written(self, result: Any) -> None:
        self.beats += 1
        if not isinstance(result, tuple):
            self.failed_beats += 1
        # Read each replica's own copy once the write has had its chance to land.
        for link in self.coordinator.links.values():
            link.get(self.key, self._observed, link.id)

    def _observed(self, replica: str, reply: Any) -> None:
        if type(reply) is not bytes:
            return
        try:
            newest = clock.decode(reply).winner(0)
        except clock.CorruptObject:
            return
        if newest is None:
            return
        try:
            beat = int(newest.value) / 1e6
        except ValueError:
            return
        if beat > self.seen.get(replica, 0.0):
            self.seen[replica] = beat
