"""``redquorum join`` and ``leave``: a membership change driven phase by phase from the
command line (proxy/replication/membership.py has the theory and the phases).

The driver writes each phase into the cluster's record, waits until every live proxy
reports it applied it, and does the phase's work: after ``joining``/``leaving`` it copies
every partition the new ring gains to its new homes with anti-entropy exchanges between
the gaining node and the partition's old homes (the digests find what is missing, merges
copy it, ``--rate`` keys per second at most); after ``cleanup`` it deletes, from every node
that lost partitions, the keys of those partitions (``rq_drop_partitions``, a SCAN step at
a time, through the digests' hook), and hands the writes that hints for a node that left
(and hints it holds) carry to their keys' homes, dropping each hint with its fallback copy
(no proxy delivers hints for, or from, a node the record no longer names). Everything it does is idempotent, and the record says
where it was: run again after an interruption, it resumes from the recorded phase.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..config import Config, ConfigError, parse_address
from ..protocol.resp import command
from ..replication import wire
from ..replication.antientropy import AntiEntropy
from ..replication.coordinator import Coordinator
from ..replication.membership import (
    APPLIED_KEY,
    CLEANUP,
    JOINING,
    LEAVING,
    MEMBERS_KEY,
    PROGRESS_KEY,
    STABLE,
    SWITCHED,
    BadRecord,
    Node,
    Record,
    best,
    gains,
    losses,
    partition_mask,
    ring_of,
)
from ..replication.ring import Ring
from .app import default_proxy_id, library_code
from .links import Flusher, ReplicaLink
from .reactor import Reactor
from .repair import _rebuild_missing
from .tls import replica_contexts

log = logging.getLogger("redquorum.membership")

PROXY_SILENT = 10.0  # seconds without a report after which a proxy counts as gone
APPLIED_FORGET = 3600.0  # reports older than this are deleted
APPLY_TIMEOUT = 120.0  # seconds to wait for live proxies to apply a phase
TRANSFER_ROUNDS = 20  # anti-entropy rounds a transfer may take (leases held elsewhere)
STEP = 0.05
RETIRE_PASSES = 3  # walks over a holder's hints for a node that left


class ChangeFailed(Exception):
    pass


@dataclass
class Progress:
    """What a change reports as it goes (the CLI draws it, ``redquorum ring`` reads it)."""

    version: int
    phase: str
    step: str  # waiting, transfer, cleanup, done
    done: int = 0
    total: int = 0
    keys: int = 0
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "phase": self.phase, "step": self.step,
                "done": self.done, "total": self.total, "keys": self.keys,
                "message": self.message}


class Change:
    def __init__(self, config: Config, report: Callable[[Progress], None], rate: float) -> None:
        self.config = config
        self.report = report
        self.rate = rate
        self.flusher = Flusher()
        self.reactor = Reactor(self.flusher)
        self.library = library_code()
        self.tls = replica_contexts(config)
        self.links: dict[str, ReplicaLink] = {}
        self.nursery: trio.Nursery | None = None
        self.ignored: set[str] = set()  # proxies not heard from lately (said once)
        self.copied = 0  # keys the transfer's merges changed, over its rounds

    # -- links ---------------------------------------------------------------------

    async def link(self, ident: str, address: str) -> ReplicaLink:
        """A link to ``ident`` (the configured address and credentials when configured)."""
        if ident in self.links:
            return self.links[ident]
        configured = {r.id: r for r in self.config.replicas}
        like = configured.get(ident) or self.config.replicas[0]
        host, port = (like.host, like.port) if ident in configured else \
            parse_address(address, f"replica {ident}")
        link = ReplicaLink(ident, host, port, flusher=self.flusher,
                           timeout=max(self.config.replica_timeout, 2.0), library=self.library,
                           reactor=self.reactor, password=like.password, username=like.username,
                           tls=self.tls.get(like.id) if like.tls else None)
        self.links[ident] = link
        assert self.nursery is not None
        await self.nursery.start(link.run)
        with trio.move_on_after(3.0):
            await link.wait_ready()
        return link

    async def ask(self, link: ReplicaLink, payload: bytes) -> Any:
        got: list[Any] = []
        answered = trio.Event()

        def callback(reply: Any) -> None:
            got.append(reply)
            answered.set()
        link.request(payload, callback)
        await answered.wait()
        return got[0]

    async def ask_all(self, payload: bytes, ids: list[str] | None = None) -> dict[str, Any]:
        chosen = [self.links[i] for i in (ids if ids is not None else list(self.links))]
        replies: dict[str, Any] = {}

        async def one(link: ReplicaLink) -> None:
            replies[link.id] = await self.ask(link, payload)
        async with trio.open_nursery() as nursery:
            for link in chosen:
                nursery.start_soon(one, link)
        return replies

    async def holds_keys(self, link: ReplicaLink) -> bool:
        """Whether the replica holds any key but the proxies' own (``__rq:``)."""
        cursor = b"0"
        while True:
            reply = await self.ask(link, command(b"SCAN", cursor, b"COUNT", b"1000"))
            if type(reply) is not list:
                raise ChangeFailed(f"cannot read {link.id}'s keys: {reply}")
            cursor, keys = reply
            if any(not key.startswith(b"__rq:") for key in keys):
                return True
            if cursor == b"0":
                return False

    # -- the record ------------------------------------------------------------------

    async def read_record(self) -> Record | None:
        records = []
        for reply in (await self.ask_all(wire.members_get(MEMBERS_KEY))).values():
            if type(reply) is list and len(reply) == 2 and type(reply[1]) is bytes:
                try:
                    records.append(Record.decode(reply[1]))
                except BadRecord as exc:
                    log.warning("%s", exc)
        return best(records)

    async def write_record(self, record: Record) -> None:
        """Send ``record`` to every node it names; a higher record already held anywhere
        means another change raced this one: stop."""
        for node in record.nodes:
            await self.link(node.id, node.address)
        ids = sorted({x.id for x in record.nodes} | set(self.links))
        replies = await self.ask_all(wire.members_put(MEMBERS_KEY, record.version, record.encode()),
                                     ids)
        written = 0
        for ident, reply in replies.items():
            if type(reply) is not list:
                continue
            if reply[1] != record.encode():
                raise ChangeFailed(f"replica {ident} holds a newer membership record: another "
                                   "change is running")
            written += 1
        if written == 0:
            raise ChangeFailed("no replica took the membership record")

    # -- proxies ---------------------------------------------------------------------

    async def wait_applied(self, record: Record) -> None:
        """Until every proxy heard from in the last PROXY_SILENT seconds reports
        ``record``'s version (or a later one), then a replica timeout more, so that
        operations begun under the previous phase are over."""
        deadline = time.monotonic() + APPLY_TIMEOUT
        progress = Progress(record.version, record.phase, "waiting")
        while True:
            reports = await self.proxy_reports()
            now = time.time()
            behind = []
            for proxy, (version, at) in sorted(reports.items()):
                if now - at > PROXY_SILENT:
                    if proxy not in self.ignored:
                        self.ignored.add(proxy)
                        progress.message = (f"ignoring proxy {proxy}: not heard from for "
                                            f"{now - at:.0f}s")
                        self.report(progress)
                    continue
                if version < record.version:
                    behind.append(proxy)
            if not behind:
                break
            if time.monotonic() > deadline:
                raise ChangeFailed(f"proxies {', '.join(behind)} did not apply version "
                                   f"{record.version} within {APPLY_TIMEOUT:.0f}s")
            message = (f"waiting for {len(behind)} of {len(reports)} proxies to apply version "
                       f"{record.version}: {', '.join(behind)}")
            if message != progress.message:  # said once, not every poll
                progress.message = message
                progress.total = len(reports)
                progress.done = len(reports) - len(behind)
                self.report(progress)
            await trio.sleep(0.2)
        await trio.sleep(max(1.0, self.config.replica_timeout))

    async def proxy_reports(self) -> dict[str, tuple[int, float]]:
        """Per proxy, its newest report (version applied, when) over every replica."""
        reports: dict[str, tuple[int, float]] = {}
        now = time.time()
        for ident, reply in (await self.ask_all(command(b"HGETALL", APPLIED_KEY))).items():
            if type(reply) is not list:
                continue
            for proxy, value in zip(reply[::2], reply[1::2], strict=False):
                try:
                    version_text, at_text = value.split()
                    version, at = int(version_text), float(at_text)
                except ValueError:
                    continue
                name = proxy.decode(errors="replace")
                if now - at > APPLIED_FORGET:
                    self.links[ident].request(command(b"HDEL", APPLIED_KEY, proxy), _ignore)
                    continue
                if name not in reports or at > reports[name][1]:
                    reports[name] = (version, at)
        return reports

    async def publish(self, progress: Progress) -> None:
        """The progress, where ``redquorum ring`` reads it."""
        fields = [str(v).encode() for pair in progress.as_dict().items() for v in pair]
        fields += [b"updated", b"%.3f" % time.time()]
        await self.ask_all(command(b"HSET", PROGRESS_KEY, *fields))

    # -- phases ------------------------------------------------------------------------

    async def transfer(self, record: Record) -> None:
        """Copy every partition the new ring gains to the nodes that gain it."""
        old, new = ring_of(record.old, record.n), ring_of(record.new, record.n)
        todo = gains(old, new)
        progress = Progress(record.version, record.phase, "transfer", total=len(todo))
        if not todo:
            return
        old_homes = old.partition_homes()
        involved = sorted({i for p in todo for i in (*old_homes[p], *todo[p])})
        down = [i for i in involved if not self.links[i].up]
        if down:
            raise ChangeFailed(f"replicas {', '.join(down)} are down: the transfer needs every "
                               "old home and every new one")
        coordinator = Coordinator(new, dict(self.links), r=self.config.r, w=self.config.w,
                                  mode=self.config.mode,
                                  tombstone_grace=self.config.tombstone_grace,
                                  sibling_soft_limit=self.config.sibling_soft_limit,
                                  sibling_hard_limit=self.config.sibling_hard_limit,
                                  actor=default_proxy_id())
        writes = [old_homes[p] + todo.get(p, ()) for p in range(len(old_homes))]
        coordinator.place(old, old_homes, writes)
        for _ in range(TRANSFER_ROUNDS):
            ae = AntiEntropy(coordinator, owner=f"transfer-{default_proxy_id()}", interval=3600.0,
                             keys_per_second=self.rate, partitions=list(todo), lease_ms=10_000)
            await _rebuild_missing(ae)
            stats = ae.start_round()
            last = 0.0
            while not stats.done:
                await trio.sleep(STEP)
                ae.tick(start_rounds=False)
                left = ae.partitions_left
                progress.done = len(todo) - (len(todo) if left is None else left)
                progress.keys = self.copied + stats.keys_repaired
                if time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    self.report(progress)
                    await self.publish(progress)
            self.copied += stats.keys_repaired
            missing = [i for i in involved if i not in stats.replicas]
            if not missing and stats.errors == 0 and stats.partitions_leased == 0:
                progress.done = len(todo)
                progress.keys = self.copied
                self.report(progress)
                await self.publish(progress)
                return
            # a proxy held some partitions' leases, a replica's digests were being rebuilt,
            # or a request failed: another round (it compares only what still differs)
            await trio.sleep(0.5)
        why = f"replicas {', '.join(missing)} took no part (down, or digests incomplete)" \
            if missing else "errors, or partitions leased elsewhere"
        raise ChangeFailed(f"the transfer did not complete ({why}); run the command again "
                           "to resume")

    async def cleanup(self, record: Record) -> None:
        """Delete, from every node that lost partitions, the keys of those partitions."""
        old, new = ring_of(record.old, record.n), ring_of(record.new, record.n)
        lost = losses(old, new)
        progress = Progress(record.version, record.phase, "cleanup", total=len(lost))
        count = max(10, min(1000, int(self.rate * 0.1)))
        for ident, partitions in sorted(lost.items()):
            link = await self.link(ident, record.address_of(ident))
            mask = partition_mask(partitions)
            cursor = b"0"
            last = 0.0
            while True:
                reply = await self.ask(link, wire.drop_partitions(cursor, count, mask))
                if type(reply) is not list:
                    raise ChangeFailed(f"replica {ident} failed while dropping keys: {reply}")
                cursor, deleted = reply[0], reply[1]
                progress.keys += deleted
                if time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    self.report(progress)
                    await self.publish(progress)
                if cursor == b"0":
                    break
                await trio.sleep(count / self.rate if self.rate > 0 else 0)
            progress.done += 1
        for gone in sorted(set(record.old) - set(record.new)):
            # no proxy delivers hints for, or held by, a node outside the record
            for holder in record.new:
                await self.retire_hints(new, gone, self.links[holder])
            for target in sorted({x.id for x in record.nodes} - {gone}):
                await self.retire_hints(new, target, self.links[gone])
        self.report(progress)

    async def retire_hints(self, ring: Ring, target: str, holder: ReplicaLink) -> None:
        """Hand the writes ``holder``'s hints for ``target`` hold to the keys' homes in
        ``ring``, then drop each hint, and with it the holder's copy when it held the key
        only as a fallback (deleting the hints would strand those copies)."""
        payloads = self.payloads()
        for _ in range(RETIRE_PASSES):  # a hint whose copy moved on is kept for another pass
            cursor = b"0"
            while True:
                reply = await self.ask(holder, command(b"HSCAN", wire.hints_key(target), cursor,
                                                       b"COUNT", b"256"))
                if type(reply) is not list or len(reply) != 2 or type(reply[1]) is not list:
                    raise ChangeFailed(f"cannot read {holder.id}'s hints for {target}: {reply}")
                cursor, flat = reply
                for key, hint in zip(flat[::2], flat[1::2], strict=False):
                    await self.rehome(payloads, ring, target, holder, key, hint)
                if cursor == b"0":
                    break
            if await self.ask(holder, command(b"HLEN", wire.hints_key(target))) == 0:
                return
        await self.ask(holder, wire.hints_drop(target))

    async def rehome(self, payloads: wire.Payloads, ring: Ring, target: str,
                     holder: ReplicaLink, key: bytes, hint: bytes) -> None:
        blob = hint or await self.ask(holder, command(b"GET", key))  # LWW: the holder's object
        homes = ring.preference_list(key)
        if type(blob) is bytes:
            for home in homes:
                merged = await self.ask(self.links[home], payloads.merge(key, blob))
                if type(merged) is not int:
                    raise ChangeFailed(f"cannot hand writes hinted for {target} to {home}: "
                                       f"{merged}; run the command again")
        fallback = holder.id not in homes and type(blob) is bytes
        others = [i for i in self.links if i not in (holder.id, target)]
        await self.ask(holder, wire.hint_done(target, key, hint, copy=blob if fallback else None,
                                              others=others))

    def payloads(self) -> wire.Payloads:
        return wire.Payloads(mode=self.config.mode,
                             grace_ms=int(self.config.tombstone_grace * 1000),
                             hard_limit=self.config.sibling_hard_limit, actors=[])


async def run_change(config: Config, *, join: Node | None = None, leave: str | None = None,
                     rate: float, report: Callable[[Progress], None]) -> Record:
    """Start (or resume) the change and drive it to the end; the final record.

    A refusal or failure (ChangeFailed, ConfigError) comes out as itself, not inside the
    nursery's exception group, so the command prints it as one line."""
    change = Change(config, report, rate)
    try:
        async with trio.open_nursery() as nursery:
            change.nursery = nursery
            nursery.start_soon(change.flusher.run)
            nursery.start_soon(change.reactor.run)
            record = await _drive(change, config, join, leave)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        said, other = group.split((ChangeFailed, ConfigError))
        if said is None or other is not None:
            raise
        raise _first_leaf(said) from None
    return record


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _drive(change: Change, config: Config, join: Node | None,
                 leave: str | None) -> Record:
    """Phase after phase from the record found (written first if no replica holds one)."""
    report = change.report
    for r in config.replicas:
        await change.link(r.id, r.address)
    record = await change.read_record()
    if record is None:
        record = Record.initial([Node(r.id, r.address) for r in config.replicas], config.n)
        await change.write_record(record)
    record = await _begin(change, record, join, leave)
    for node in record.nodes:  # a resumed change's joiner is in no configuration
        await change.link(node.id, node.address)
    while record.phase != STABLE:
        report(Progress(record.version, record.phase, "phase", message=record.describe()))
        await change.wait_applied(record)
        if record.phase in (JOINING, LEAVING):
            await change.transfer(record)
        elif record.phase == CLEANUP:
            await change.cleanup(record)
        record = record.advanced()
        await change.write_record(record)
    await change.publish(Progress(record.version, record.phase, "done",
                                  message=record.describe()))
    report(Progress(record.version, record.phase, "done", message=record.describe()))
    return record


async def _begin(change: Change, record: Record, join: Node | None, leave: str | None) -> Record:
    """The record to drive: a new change, or the one this command started before."""
    if join is not None:
        ours = join.id in record.new and join.id not in record.old
        if ours and record.phase in (JOINING, SWITCHED, CLEANUP):
            if record.address_of(join.id) != join.address:
                raise ConfigError(f"{join.id} is joining at {record.address_of(join.id)}, "
                                  f"not {join.address}")
            return record  # resume
        if record.phase == STABLE and join.id in record.new:
            return record  # nothing to do
        newcomer = await change.link(join.id, join.address)
        if not newcomer.up:
            raise ChangeFailed(f"cannot reach {join.id} at {join.address}: {newcomer.last_error}")
        if await change.holds_keys(newcomer):
            raise ChangeFailed(f"{join.id} at {join.address} holds keys: join an empty "
                               "redis-server (FLUSHALL it first), or its old values could "
                               "come back over newer deletes")
        try:
            new = record.joining(join)
        except BadRecord as exc:
            raise ChangeFailed(str(exc)) from None
    else:
        assert leave is not None
        ours = leave in record.old and leave not in record.new
        if ours and record.phase in (LEAVING, SWITCHED, CLEANUP):
            return record
        if record.phase == STABLE and leave not in record.new:
            raise ChangeFailed(f"{leave} is not a member")
        try:
            new = record.leaving(leave)
        except BadRecord as exc:
            raise ChangeFailed(str(exc)) from None
    await change.write_record(new)
    return new


def _ignore(reply: Any) -> None:
    pass
