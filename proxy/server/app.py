"""The proxy process: replica links, the coordinator, the listener and the command
dispatcher; client connections are served by proxy/clients.py.

Every command of a client batch goes through ``dispatch``: table lookup, AUTH, arity,
reserved keys, then the handler, which answers at once or defers its reply to a replica
callback, unless it has to wait for the replies before it (``dispatch`` returns False).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import trio

from .. import __version__
from ..commands.acl import build_users
from ..commands.commanddata import CommandData
from ..commands.dispatch import BatchCounter
from ..commands.dispatch import dispatch as dispatch_command
from ..commands.session import Session
from ..commands.table import TABLE, Batch
from ..config import Config, parse_address
from ..protocol.resp import ReplyError
from ..replication.antientropy import AntiEntropy
from ..replication.canary import Canary
from ..replication.contexts import ContextSigner, SecretKeeper
from ..replication.coordinator import Coordinator, Events
from ..replication.counters import CommandStats, InfoStats, LocalHistogram
from ..replication.follower import Follower
from ..replication.handoff import DELAY_BUCKETS, Handoff
from ..replication.links import SHUTTING_DOWN
from ..replication.membership import Node, Record, placement
from ..replication.ring import PARTITIONS
from .clients import ClientConn
from .links import Flusher, ReplicaLink
from .listener import bind_listener
from .reactor import Reactor
from .tls import TlsSocket, replica_contexts, server_context

log = logging.getLogger("redquorum.server")

HANDOFF_INTERVAL = 1.0  # seconds between hint replay rounds
ANTIENTROPY_TICK = 0.1  # seconds between anti-entropy steps (rounds start every interval)
REBUILD_TICK = 1.0  # seconds between steps of the replicas' digest rebuilds
SECRET_INTERVAL = 1.0  # seconds between reads of the context secret on the replicas
SWEEP_INTERVAL = 1.0  # seconds between checks of idle clients and stalled output
MEMBERSHIP_INTERVAL = 1.0  # seconds between reads of the cluster's membership record
MEMBERSHIP_START_WAIT = 2.0  # seconds a starting proxy waits for the record, then for links
MAX_CLIENTS_REACHED = b"-ERR max number of clients reached\r\n"


async def every(interval: float, tick: Callable[[], None]) -> None:
    """Run ``tick`` now and then every ``interval`` seconds (the background duties of
    proxy/replication are plain calls, so that layer does no I/O of its own)."""
    while True:
        tick()
        await trio.sleep(interval)

WRONGPASS = ReplyError("WRONGPASS invalid username-password pair or user is disabled.")
AUTH_LOG_BURST = 10  # failed authentications logged one by one per AUTH_LOG_WINDOW...
AUTH_LOG_WINDOW = 10.0  # ...seconds; past that, one line says how many were not logged


def library_code() -> bytes:
    from importlib import resources

    return resources.files("redquorum.replicas").joinpath("redquorum.lua").read_bytes()


class Proxy:
    """Everything one proxy process holds: config, replica links, coordinator, clients."""

    def __init__(self, config: Config, events: Events | None = None) -> None:
        from ..replication.ring import Ring

        self.config = config
        self.users = build_users(config)
        self.auth_failures = 0
        self._auth_log_window = 0.0
        self._auth_logged = 0
        self._auth_unlogged = 0
        self.started = time.time()
        self.flusher = Flusher()
        self.reactor = Reactor(self.flusher)
        self.tls_context = server_context(config) if config.tls else None
        self.replica_tls = replica_contexts(config)
        self.proxy_id = default_proxy_id()
        self.events = events or Events()
        self._library = library_code()
        self.links: dict[str, ReplicaLink] = {
            r.id: self._make_link(r.id, r.host, r.port) for r in config.replicas}
        self._link_scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._membership_difference = ""
        self.ring = Ring(tuple(self.links), config.n)
        self._quorum_lost: dict[str, bool] | None = None  # per op; None until links started
        self.coordinator = Coordinator(
            self.ring, self.links, r=config.r, w=config.w, mode=config.mode,
            tombstone_grace=config.tombstone_grace,
            sibling_soft_limit=config.sibling_soft_limit,
            sibling_hard_limit=config.sibling_hard_limit, min_w=config.min_w,
            hint_window=config.hint_window, events=self.events,
            actor=self.proxy_id, sloppy=config.sloppy_quorum)
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self.total_connections = 0
        self.total_commands = 0
        self.rejected_connections = 0
        self.output_limit_closes = 0
        limit = config.output_limit
        # unsent reply bytes past which a client's next requests wait (clients.py)
        self.output_hold = limit.soft or limit.hard
        self.listen_address: tuple[str, int] | None = None
        self.canary = Canary(self.coordinator, self.proxy_id, config.w)
        self.handoff = Handoff(self.coordinator)
        self.antientropy = AntiEntropy(
            self.coordinator, owner=self.proxy_id, interval=config.antientropy_interval,
            keys_per_second=config.antientropy_keys_per_second,
            rebuild_interval=config.antientropy_rebuild_interval)
        self.contexts = ContextSigner(config.context_secret)
        self.secret_keeper = SecretKeeper(self.contexts, list(self.links.values()))
        proposal = Record.initial([Node(r.id, r.address) for r in config.replicas], config.n)
        self.membership = Follower(self.links, self.proxy_id, proposal, self._apply_membership)
        self.command_stats = CommandStats(tuple(sorted({c.name for c in TABLE.values()})) + ("other",))
        self.info_stats = InfoStats(self.command_stats)
        self.batch_counter = BatchCounter(self.command_stats, self.info_stats)
        self.clients: dict[int, ClientConn] = {}
        self.commanddata = CommandData()  # COMMAND INFO/DOCS, read from a replica in run()

    # -- lifetime ------------------------------------------------------------

    async def run(self, listener: socket.socket | None = None, *,
                  task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect to the replicas and serve clients until cancelled."""
        lsock = listener or bind_listener(self.config.listen)
        self.listen_address = lsock.getsockname()[:2]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.flusher.run)
                nursery.start_soon(self.reactor.run)
                self._nursery = nursery
                for link in list(self.links.values()):
                    await nursery.start(self._run_link, link)
                await self._follow_membership(nursery)
                self._quorum_lost = {}
                self._check_quorums()  # every link has tried once: a quorum lost from the start shows
                nursery.start_soon(self.commanddata.keep_loading, self.config.replicas,
                                   self.replica_tls)
                with trio.move_on_after(1.0):  # complete COMMAND answers right from the start
                    await self.commanddata.wait_tried()
                nursery.start_soon(every, SECRET_INTERVAL, self.secret_keeper.refresh)
                with trio.move_on_after(1.0):  # RQ.GET and RQ.SET need it
                    while not self.contexts.ready:
                        await trio.sleep(0.005)
                nursery.start_soon(self._accept_loop, lsock)
                nursery.start_soon(every, self.config.heartbeat_interval, self.canary.beat)
                nursery.start_soon(every, HANDOFF_INTERVAL, self.handoff.round)
                if self.config.antientropy_enabled:
                    nursery.start_soon(every, ANTIENTROPY_TICK, self.antientropy.tick)
                    nursery.start_soon(every, REBUILD_TICK, self.antientropy.rebuild_tick)
                nursery.start_soon(every, SWEEP_INTERVAL, self.sweep_clients)
                task_status.started(self.listen_address)
        finally:
            lsock.close()
            for client in list(self.clients.values()):
                client.close()

    async def _accept_loop(self, lsock: socket.socket) -> None:
        while True:
            try:
                conn, addr = lsock.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(lsock)
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("cannot accept a client: %s", exc)
                    await trio.sleep(0.1)
                    continue
                raise
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client_arrived(conn, addr)

    # -- membership ---------------------------------------------------------------

    def _make_link(self, ident: str, host: str, port: int) -> ReplicaLink:
        """A link to a replica: the configured one's credentials and TLS, or for a node
        the configuration does not name (one that joined), the first replica's."""
        configured = {r.id: r for r in self.config.replicas}
        like = configured.get(ident) or self.config.replicas[0]
        return ReplicaLink(ident, host, port, flusher=self.flusher,
                           timeout=self.config.replica_timeout, library=self._library,
                           reactor=self.reactor, password=like.password, username=like.username,
                           tls=self.replica_tls.get(like.id) if like.tls else None,
                           on_state=self._replica_state)

    async def _run_link(self, link: ReplicaLink, *, task_status: Any = trio.TASK_STATUS_IGNORED
                        ) -> None:
        if self.links.get(link.id) is not link:  # it left before this task started
            task_status.started()
            return
        with trio.CancelScope() as scope:  # cancelled when the node leaves the cluster
            self._link_scopes[link.id] = scope
            await link.run(task_status=task_status)

    async def _follow_membership(self, nursery: trio.Nursery) -> None:
        """Read the cluster's membership record before serving (waiting a little for it,
        and for links to nodes it names that the configuration does not), then poll it."""
        with trio.move_on_after(MEMBERSHIP_START_WAIT):
            while self.membership.applied is None and any(link.up for link in self.links.values()):
                self.membership.poll()
                await trio.sleep(0.05)
        if self.membership.applied is None:
            log.warning("no replica answered with the cluster's membership record: placing keys "
                        "by the configuration until one does")
        configured = {r.id for r in self.config.replicas}
        with trio.move_on_after(MEMBERSHIP_START_WAIT):  # the configured ones have tried once
            for link in [link for i, link in self.links.items() if i not in configured]:
                await link.wait_ready()
        nursery.start_soon(every, MEMBERSHIP_INTERVAL, self.membership.poll)

    def _apply_membership(self, record: Record) -> None:
        """Follow a newer membership record: links for new nodes, the coordinator's
        placement, then links to nodes no longer in it closed."""
        self._note_membership_difference(record)
        for ident in record.linked:
            if ident not in self.links:
                host, port = parse_address(record.address_of(ident), f"replica {ident}")
                link = self._make_link(ident, host, port)
                self.links[ident] = link
                if self._nursery is not None:
                    self._nursery.start_soon(self._run_link, link)
        placed = placement(record)
        self.coordinator.place(placed.ring, placed.reads, placed.writes, placed.extra)
        self.ring = placed.ring
        for ident in [i for i in self.links if i not in record.linked]:
            self.links.pop(ident)
            scope = self._link_scopes.pop(ident, None)
            if scope is not None:
                scope.cancel()
        self._links_changed()
        log.info("cluster membership %s applied", record.describe(),
                 extra={"event": "membership_applied", "version": record.version,
                        "phase": record.phase, "nodes": ",".join(record.linked)})
        if self._quorum_lost is not None:
            self._check_quorums()

    def _links_changed(self) -> None:
        """Every component that keeps something per replica sees the new set."""
        ids = set(self.links)
        self.secret_keeper.links = list(self.links.values())
        started = time.time()
        for per_replica, fresh in ((self.canary.seen, lambda: started),
                                   (self.antientropy.repaired_total, int),
                                   (self.antientropy.segments_diverged, int),
                                   (self.handoff.replayed, int),
                                   (self.handoff.delivery_delay,
                                    lambda: LocalHistogram(DELAY_BUCKETS)),
                                   (self.coordinator.hints_stored, int),
                                   (self.coordinator.hints_dropped, int)):
            for ident in ids - set(per_replica):
                per_replica[ident] = fresh()
            for ident in set(per_replica) - ids:
                del per_replica[ident]
        for pair in [pair for pair in self.handoff.pending if not set(pair) <= ids]:
            del self.handoff.pending[pair]
        changed = getattr(self.events, "replicas_changed", None)
        if changed is not None:
            changed(sorted(ids))

    def _note_membership_difference(self, record: Record) -> None:
        """A warning, once per difference, when the configuration names other replicas
        (or another n) than the cluster's record: keys are placed as the record says.
        Addresses are not compared: a replica the configuration names is reached at the
        configured address (a proxy may have its own route to it, a relay or another
        name), a node it does not name at the record's."""
        configured = {r.id: r.address for r in self.config.replicas}
        cluster = {ident: record.address_of(ident) for ident in record.new}
        parts = []
        missing = sorted(set(configured) - set(cluster))
        extra = sorted(set(cluster) - set(configured))
        if missing:
            parts.append("configured but not members: " +
                         ", ".join(f"{i}={configured[i]}" for i in missing))
        if extra:
            parts.append("members not configured: " + ", ".join(f"{i}={cluster[i]}" for i in extra))
        if record.n != self.config.n:
            parts.append(f"the cluster's n is {record.n}, configured {self.config.n}")
        difference = "; ".join(parts)
        if difference and difference != self._membership_difference:
            log.warning("the configured replicas differ from the cluster's membership "
                        "(version %d): %s. Keys are placed as the cluster's membership says",
                        record.version, difference,
                        extra={"event": "membership_differs", "version": record.version,
                               "difference": difference})
        self._membership_difference = difference

    # -- replica states ---------------------------------------------------------

    def _replica_state(self, link: ReplicaLink, up: bool) -> None:
        if self.links.get(link.id) is not link:  # closed: the node left the cluster
            return
        if up:
            self.handoff.came_up(link.id)
        forward = getattr(self.events, "replica_state", None)
        if forward is not None:
            forward(link, up)
        if self._quorum_lost is not None and link.last_error != SHUTTING_DOWN:
            self._check_quorums()

    def _check_quorums(self) -> None:
        """One log line when an operation's quorum becomes impossible for some keys (a
        partition with fewer than w or r homes up, or with a sloppy quorum nodes of its
        walk), one when it is possible for all again."""
        assert self._quorum_lost is not None
        up = {ident for ident, link in self.links.items() if link.up}
        down = sorted(set(self.links) - up)
        for op, need in (("read", self.config.r), ("write", self.config.w)):
            short = self.ring.partitions_short(up, need, sloppy=self.coordinator.sloppy)
            if (short > 0) == self._quorum_lost.get(op, False):
                continue
            self._quorum_lost[op] = short > 0
            fields = {"op": op, "needed": need, "replicas_up": len(up), "replicas": len(self.links),
                      "down": ",".join(down)}
            if short:
                share = short / PARTITIONS
                log.warning("%s quorum lost for %.0f%% of keys (%d of %d replicas up; down: %s)",
                            op, 100 * share, len(up), len(self.links), ", ".join(down),
                            extra={"event": "quorum_lost", "keys_share": round(share, 4), **fields})
            else:
                log.info("%s quorum regained for all keys (%d of %d replicas up)", op, len(up),
                         len(self.links), extra={"event": "quorum_regained", **fields})

    # -- clients ----------------------------------------------------------------

    def _client_arrived(self, conn: socket.socket, addr: Any) -> None:
        if len(self.clients) >= self.config.maxclients:
            self._refuse(conn)
            return
        ident = next(self._ids)
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        session = Session(ident, peer, self)
        self.sessions[ident] = session
        self.total_connections += 1
        count_connection = getattr(self.events, "client_connected", None)
        if count_connection:
            count_connection(1)
        if self.tls_context is not None:
            tls = TlsSocket(conn, self.tls_context, server_side=True)
            client = ClientConn(self, self.reactor, tls, session, tls)
        else:
            client = ClientConn(self, self.reactor, conn, session)
        self.clients[ident] = client
        client.open()

    def _refuse(self, conn: socket.socket) -> None:
        """Redis's answer past ``maxclients``: one error line, then close."""
        self.rejected_connections += 1
        if self.tls_context is None:  # a TLS client could not read a plain error line
            try:
                conn.send(MAX_CLIENTS_REACHED)
            except OSError:
                pass
        conn.close()

    def sweep_clients(self) -> None:
        """Close clients idle longer than ``timeout`` (as Redis: neither read from nor
        written to; a client waiting for replicas is not idle) and those whose output
        stayed over the soft limit."""
        now = time.monotonic()
        self._log_unlogged_auth_failures(now)
        idle = self.config.timeout
        for client in list(self.clients.values()):
            if client.closed:
                continue
            if client.over_soft_since and client.check_output_limits(now):
                continue
            if idle and client.batch is None and now - client.active > idle:
                client.close()

    def reload_tls(self) -> None:
        """Read the certificates again (SIGHUP): new connections, and replica links as
        they reconnect, use them; open connections keep theirs."""
        from ..config import ConfigError

        try:
            context = server_context(self.config) if self.config.tls else None
            replicas = replica_contexts(self.config)
        except ConfigError as exc:
            log.error("TLS reload failed, keeping the certificates in use: %s", exc)
            return
        self.tls_context = context
        self.replica_tls = replicas
        for ident, link in self.links.items():
            if ident in replicas:
                link.tls = replicas[ident]
        log.info("TLS certificates reloaded")

    def _log_unlogged_auth_failures(self, now: float) -> None:
        """Once the window that silenced them is over, say how many failures went unlogged."""
        if self._auth_unlogged and now - self._auth_log_window > AUTH_LOG_WINDOW:
            log.warning("%d more failed authentications were not logged one by one",
                        self._auth_unlogged)
            self._auth_unlogged = 0

    def output_limit_closed(self) -> None:
        self.output_limit_closes += 1

    def client_gone(self, session: Session) -> None:
        self.clients.pop(session.id, None)
        if self.sessions.pop(session.id, None) is None:
            return
        count_connection = getattr(self.events, "client_connected", None)
        if count_connection:
            count_connection(-1)

    def record_batch(self, batch: Batch, seconds: float) -> None:
        self.batch_counter.record(batch, seconds)

    def dispatch(self, session: Session, args: list[bytes], batch: Batch) -> bool:
        """One command of ``batch`` (proxy/commands/dispatch.py)."""
        return dispatch_command(self, session, args, batch)

    # -- helpers for commands ---------------------------------------------------

    def authenticate(self, session: Session, password: bytes, user: bytes | None) -> Any:
        """Redis's AUTH: ``user`` None is AUTH <password>, for the default user."""
        from ..protocol.resp import OK

        name = "default" if user is None else user.decode(errors="replace")
        found = self.users.get(name)
        if user is None and found is not None and found.nopass and found.enabled:
            return ReplyError("ERR AUTH <password> called without any password configured "
                              "for the default user. Are you sure your configuration is correct?")
        if found is not None and found.enabled and found.check_password(password):
            session.user = found
            session.authenticated = True
            return OK
        self._auth_failed(session, name)
        return WRONGPASS

    def _auth_failed(self, session: Session, name: str) -> None:
        """Count it; log it with the client's address, at most AUTH_LOG_BURST lines per
        AUTH_LOG_WINDOW (a flood of wrong passwords must not flood the log)."""
        self.auth_failures += 1
        count = getattr(self.events, "auth_failure", None)
        if count:
            count()
        now = time.monotonic()
        if now - self._auth_log_window > AUTH_LOG_WINDOW:
            self._log_unlogged_auth_failures(now)
            self._auth_log_window = now
            self._auth_logged = 0
        if self._auth_logged < AUTH_LOG_BURST:
            self._auth_logged += 1
            user = name if name in self.users else "(unknown user)"
            log.warning("failed authentication from %s as %s", session.addr, user[:64])
        else:
            self._auth_unlogged += 1

    def client_line(self, s: Session) -> str:
        age = int(time.time() - s.created)
        flags, multi = ("x", len(s.multi)) if s.multi is not None else ("N", -1)
        return (f"id={s.id} addr={s.addr} laddr={_fmt(self.listen_address)} fd=-1 "
                f"name={s.name.decode(errors='replace')} age={age} idle=0 flags={flags} db=0 "
                f"sub=0 psub=0 ssub=0 multi={multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 "
                f"obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=NULL user={s.user.name} redir=-1 "
                f"resp={s.proto} lib-name={s.lib_name.decode(errors='replace')} "
                f"lib-ver={s.lib_ver.decode(errors='replace')}")

    def version(self) -> str:
        return __version__


def default_proxy_id() -> str:
    """Unique per process: heartbeats and LWW actors of several proxies never collide."""
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{secrets.token_hex(2)}"


def _fmt(addr: tuple[str, int] | None) -> str:
    return f"{addr[0]}:{addr[1]}" if addr else ""
