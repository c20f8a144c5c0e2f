"""One anti-entropy round over real replica links, outside a serving proxy: what
``redquorum repair`` runs (proxy/replication/antientropy.py has the theory).

The links, reactor and flusher are the server's own; the round is the same code a proxy's
timer drives. Replicas whose digests are missing are rebuilt first (bounded steps until
they have a complete generation), since a round leaves them out until then; with
``rebuild`` every replica's are.
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
from .tls import replica_contexts

STEP = 0.02  # seconds between ticks of the round


async def run_round(config: Config, *, dry_run: bool = False, partitions: list[int] | None = None,
                    only: str | None = None, rebuild: bool = False, connect_timeout: float = 3.0,
                    progress: Callable[[RoundStats], None] | None = None) -> RoundStats:
    """Connect to every replica, run one full round, disconnect; the round's figures.
    ``rebuild``: first rebuild every replica's digests from its data (what changed behind
    the proxies' back is then seen at once)."""
    flusher = Flusher()
    reactor = Reactor(flusher)
    library = library_code()
    replica_tls = replica_contexts(config)
    links = {r.id: ReplicaLink(r.id, r.host, r.port, flusher=flusher,
                               timeout=max(config.replica_timeout, 2.0), library=library,
                               reactor=reactor, password=r.password, username=r.username,
                               tls=replica_tls.get(r.id) if r.tls else None)
             for r in config.replicas}
    coordinator = Coordinator(Ring(tuple(links), config.n), links, r=config.r, w=config.w,
                              mode=config.mode, tombstone_grace=config.tombstone_grace,
                              sibling_soft_limit=config.sibling_soft_limit,
                              sibling_hard_limit=config.sibling_hard_limit,
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
        if rebuild:
            await _rebuild_all(ae)
            await _rebuild_missing(ae, settled=("idle",))  # and the old generations deleted
        elif not dry_run:
            await _rebuild_missing(ae)
        stats = ae.start_round()
        while not stats.done:
            await trio.sleep(STEP)
            ae.tick(start_rounds=False)  # this round only
            if progress is not None:
                progress(stats)
        nursery.cancel_scope.cancel()
    return stats


async def _step(ae: AntiEntropy, every: float, replicas: set[str] | None = None) -> dict[str, str]:
    """One rebuild step on every up replica (or those named); their phases once all answered."""
    answered = trio.Event()
    phases: dict[str, str] = {}

    def done(got: dict[str, str]) -> None:
        phases.update(got)
        answered.set()
    ae.rebuild_tick(every=every, done=done, replicas=replicas)
    await answered.wait()
    return phases


async def _rebuild_all(ae: AntiEntropy) -> None:
    """A new digest generation on every up replica, built to the end. A replica still
    deleting an older generation finishes that first (phase 'dropping'), then starts."""
    pending = {ident for ident, link in ae.links.items() if link.up}
    deadline = time.monotonic() + 600
    while pending and time.monotonic() < deadline:
        phases = await _step(ae, every=-1, replicas=pending)
        pending = {ident for ident in pending if phases.get(ident, "built") != "built"}


async def _rebuild_missing(ae: AntiEntropy, settled: tuple[str, ...] = ("idle", "dropping")) -> None:
    """Step the rebuilds under way (and those of replicas with no complete digests) until
    every replica has a complete generation and none is building (``settled``: the phases
    that count as done)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        phases = await _step(ae, every=0)
        if all(phase in settled for phase in phases.values()):
            return
