"""One anti-entropy round over real replica links, outside a serving proxy: what
``redquorum repair`` runs (proxy/replication/antientropy.py has the theory).

The links, reactor and flusher are the server's own; the round is the same code a proxy's
timer drives. Replicas whose digests are missing are rebuilt first (bounded steps until
they have a complete generation), since a round leaves them out until then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from ..config import Config
from ..replication.antientropy import AntiEntropy, RoundStats
from ..replication.coordinator import Coordinator
from ..replication.ring import Ring
from .app import default_proxy_id, library_code
from .links import Flusher, ReplicaLink
from .reactor import Reactor

STEP = 0.02  # seconds between ticks of the round


async def run_round(config: Config, *, dry_run: bool = False, partitions: list[int] | None = None,
                    only: str | None = None, connect_timeout: float = 3.0,
                    progress: Callable[[RoundStats], None] | None = None) -> RoundStats:
    """Connect to every replica, run one full round, disconnect; the round's figures."""
    flusher = Flusher()
    reactor = Reactor(flusher)
    library = library_code()
    links = {r.id: ReplicaLink(r.id, r.host, r.port, flusher=flusher,
                               timeout=max(config.replica_timeout, 2.0), library=library,
                               reactor=reactor, password=r.password)
             for r in config.replicas}
    coordinator = Coordinator(Ring(tuple(links), config.n), links, r=config.r, w=config.w,
                              mode=config.mode, tombstone_grace=config.tombstone_grace,
                              actor=default_proxy_id())
    ae = AntiEntropy(coordinator, owner=f"repair-{default_proxy_id()}", interval=3600.0,
                     keys_per_second=config.antientropy_keys_per_second, dry_run=dry_run,
                     partitions=partitions, only=only, lease_ms=10_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        nursery.start_soon(reactor.run)
        for link in links.values():
            await nursery.start(link.run)
        with trio.move_on_after(connect_timeout):
            for link in links.values():
                await link.wait_ready()
        if not dry_run:
            await _rebuild_missing(ae, links)
        stats = ae.start_round()
        while not stats.done:
            await trio.sleep(STEP)
            ae.tick()
            if progress is not None:
                progress(stats)
        nursery.cancel_scope.cancel()
    return stats


async def _rebuild_missing(ae: AntiEntropy, links: dict[str, ReplicaLink]) -> None:
    """Step the rebuild of replicas that have no complete digests, until they do."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ae.rebuild_phase.clear()
        ae.rebuild_tick(every=0)
        while len(ae.rebuild_phase) < sum(1 for link in links.values() if link.up):
            await trio.sleep(STEP)
            if not any(link.up for link in links.values()):
                return
        if all(phase in ("idle", "dropping") for phase in ae.rebuild_phase.values()):
            return
