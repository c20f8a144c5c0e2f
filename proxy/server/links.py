"""Pipelined connections to the replicas, with callbacks instead of tasks.

Each ``ReplicaLink`` owns one TCP connection to one redis-server. A request is bytes
plus a callback; replies come back in order, so the link keeps a FIFO of callbacks
and calls each with the reply (or a ``ReplicaFailure``). Per request there is no task,
no Event and no cancel scope: those dominated a naive proxy's profile. Instead:

* requests are appended to a buffer and the link is marked dirty; at the end of the
  reactor's pass (proxy/reactor.py), or once per scheduling round for requests made
  elsewhere, the ``Flusher`` sends each dirty link's buffer with one non-blocking
  ``send``. A writer task only wakes for what the kernel did not take. Consecutive
  GETs, from any clients, leave as one MGET; consecutive write function calls
  (``wire.Call``: rq_set, rq_replace, rq_merge…) as one ``rq_many``, whose reply is
  handed out entry by entry, an entry's error to its own request alone.
* replies are read from the reactor's pass, not by a task per link.
* a watchdog per link times the oldest request from when it was queued; past the
  replica timeout the link fails every pending request, closes the socket (so no late
  reply can be mistaken for another request's) and reconnects with backoff. While it is
  down, requests fail at once, so a dead replica costs one timeout, not one per request.
* on every (re)connect the link loads the replica function library, so a replica that
  restarted empty gets it back before it serves.

Every request gets exactly one callback: that guarantee is what lets client batches
wait without a deadline of their own.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import select
import socket
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ..protocol.resp import ReplyError, ReplyParser, encode_command
from ..replication import wire
from ..replication.counters import LocalHistogram, RoundTripSamples
from ..replication.links import CLOSED, DOWN, SHUTTING_DOWN, TIMEOUT, ReplicaFailure
from .tls import TlsSocket

if TYPE_CHECKING:  # pragma: no cover
    import ssl

    from .reactor import Reactor

log = logging.getLogger("redquorum.backend")
_READABLE = select.EPOLLIN | select.EPOLLRDHUP

Callback = Callable[[Any], None]


class Flusher:
    """Sends every link's queued requests once per scheduling round.

    Whoever queues the first request of a round wakes the flusher task; trio runs it
    after the tasks already runnable in this round, so the requests of all the clients
    served in one round leave in one write per replica. (Flushing after each client's
    batch instead cost three send() calls per operation: half the proxy's CPU.)
    """

    __slots__ = ("dirty", "held", "_lot")

    def __init__(self) -> None:
        self.dirty: list[ReplicaLink] = []
        self.held = False  # the reactor (proxy/reactor.py) flushes at the end of its pass
        self._lot = trio.lowlevel.ParkingLot()

    def mark(self, link: ReplicaLink) -> None:
        if not self.dirty and not self.held:
            self._lot.unpark()
        self.dirty.append(link)

    def flush(self) -> None:
        dirty = self.dirty
        while dirty:
            link = dirty.pop()
            link._flush()

    async def run(self) -> None:
        while True:
            if self.dirty:
                await trio.lowlevel.checkpoint()
            else:
                await self._lot.park()
            self.flush()


class _GetGroup:
    """Consecutive GETs queued on one link, sent as one GET or MGET."""

    __slots__ = ("keys", "callbacks", "tags")

    def __init__(self) -> None:
        self.keys: list[bytes] = []  # each as a RESP bulk string, ready to send
        self.callbacks: list[Callable[[Any, Any], None]] = []
        self.tags: list[Any] = []

    def encode(self) -> bytes:
        keys = self.keys
        if len(keys) == 1:
            return b"*2\r\n$3\r\nGET\r\n" + keys[0]
        return b"*%d\r\n$4\r\nMGET\r\n%b" % (len(keys) + 1, b"".join(keys))

    def deliver(self, reply: Any) -> None:
        callbacks = self.callbacks
        if len(callbacks) == 1:
            callbacks[0](self.tags[0], reply)
            return
        if type(reply) is not list or len(reply) != len(callbacks):
            reply = [reply] * len(callbacks)  # an error or a failure: every key gets it
        for callback, tag, value in zip(callbacks, self.tags, reply, strict=True):
            try:
                callback(tag, value)
            except Exception:  # one operation's bug must not starve the others
                log.exception("callback failed")


LIBRARY_DIGEST_MARK = b"@LIBRARY_DIGEST@"  # where the library's code takes its digest
WRITE_GROUP_LIMIT = 256  # calls per rq_many: bounds how long one call keeps the replica busy


class _WriteGroup:
    """Consecutive write function calls queued on one link, sent as one rq_many: the
    replica reads the digest state and its actor once per call, not once per write
    (wire.py)."""

    __slots__ = ("entries", "callbacks", "width")

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.callbacks: list[Callback] = []
        self.width = 0

    def encode(self) -> bytes:
        return wire.many(self.entries, self.width)

    def deliver(self, reply: Any) -> None:
        callbacks = self.callbacks
        if type(reply) is not list or len(reply) != len(callbacks):
            reply = [reply] * len(callbacks)  # an error or a failure: every call gets it
        for callback, value in zip(callbacks, reply, strict=True):
            try:
                callback(value)
            except Exception:  # one operation's bug must not starve the others
                log.exception("callback failed")


class ReplicaLink:
    def __init__(
        self,
        replica_id: str,
        host: str,
        port: int,
        *,
        flusher: Flusher,
        timeout: float,
        library: bytes,
        password: str | None = None,
        username: str | None = None,
        tls: ssl.SSLContext | None = None,
        reactor: Reactor,
        on_state: Callable[[ReplicaLink, bool], None] | None = None,
    ) -> None:
        self.id = replica_id
        self.actor = replica_id.encode()  # prefixes the actors the replica writes under
        self.epoch = ""  # the actor its current process writes under (rq_actor)
        self.host = host
        self.port = port
        self.up = False
        self.timeout = timeout
        self.last_error = "not connected yet"
        self.connected_since = 0.0
        self.down_since: float | None = time.monotonic()  # None while up (hint window)
        self._flusher = flusher
        # the library as loaded, carrying its own digest (which rq_library answers)
        self._library_digest = hashlib.sha1(library).hexdigest().encode()
        self._library = library.replace(LIBRARY_DIGEST_MARK, self._library_digest)
        self._password = password
        self._username = username
        self.tls = tls  # replaced on a certificate reload; used from the next connect
        self._on_state = on_state
        self._reactor = reactor  # replies are read from its pass
        self.latency = LocalHistogram()  # queueing to reply, every request
        self.round_trips = RoundTripSamples()  # one reply in EVERY, GETs as reads, the rest writes
        self._sample_in = RoundTripSamples.EVERY  # replies until the next sample
        self._sock: socket.socket | TlsSocket | None = None
        self._out: list[bytes | _GetGroup | _WriteGroup] = []
        self._gets: _GetGroup | None = None  # the GET group still open for more keys
        self._writes: _WriteGroup | None = None  # the write group still open for more calls
        self._backlog = b""
        self._pending: deque[tuple[Callback, float]] = deque()
        self._parser = ReplyParser()
        self._scope: trio.CancelScope | None = None
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._ready = trio.Event()
        self._dirty = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def in_flight(self) -> int:
        return len(self._pending)

    # -- the hot path ------------------------------------------------------

    def request(self, payload: bytes, callback: Callback) -> None:
        """Queue ``payload``; ``callback`` gets its reply. Sent at the next flush.
        Consecutive ``wire.Call``s leave as one rq_many (one entry each)."""
        if not self.up:
            callback(DOWN)
            return
        self._gets = None  # a later GET must not jump ahead of this request
        if type(payload) is wire.Call:
            group = self._writes
            if group is None or len(group.callbacks) == WRITE_GROUP_LIMIT:
                group = self._writes = _WriteGroup()
                self._queue(group, group.deliver)
            group.entries.append(payload.entry)
            group.width += payload.width
            group.callbacks.append(callback)
            return
        self._writes = None  # nor a later write
        self._queue(payload, callback)

    def get(self, key: bytes, callback: Callable[[Any, Any], None], tag: Any,
            encoded: bytes | None = None) -> None:
        """Queue a GET of ``key``; ``callback(tag, reply)`` gets its reply. Consecutive
        GETs (from any client) leave as one MGET, whose reply is handed out key by key:
        one request, one reply to parse and one callback from the link instead of one
        per key. (The tag saves a closure per call.) ``encoded``: the key as a RESP bulk
        string, when the caller sends it to several links."""
        if not self.up:
            callback(tag, DOWN)
            return
        self._writes = None  # a later write must not jump ahead of this GET
        group = self._gets
        if group is None:
            group = self._gets = _GetGroup()
            self._queue(group, group.deliver)
        group.keys.append(encoded or b"$%d\r\n%b\r\n" % (len(key), key))
        group.callbacks.append(callback)
        group.tags.append(tag)

    def _queue(self, part: bytes | _GetGroup | _WriteGroup, callback: Callback) -> None:
        """``part`` goes out at the next flush; ``callback`` gets its reply."""
        self._out.append(part)
        self._pending.append((callback, time.monotonic()))
        if not self._dirty:
            self._dirty = True
            self._flusher.mark(self)

    def _flush(self) -> None:
        self._dirty = False
        self._gets = None
        self._writes = None
        out = self._out
        if not out or self._sock is None:
            return
        data = b"".join([part if isinstance(part, bytes) else part.encode() for part in out])
        out.clear()
        if self._backlog:
            self._backlog += data
            return
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(CLOSED, f"send failed: {exc}")
            return
        if sent < len(data):
            self._backlog = data[sent:]
            self._writer_lot.unpark()
        elif type(self._sock) is TlsSocket and self._sock.backlog:
            self._writer_lot.unpark()  # ciphertext the kernel did not take

    def _deliver(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        pending = self._pending
        latency = self.latency  # observed inline: a method call per reply showed in profiles
        counts, bounds = latency.counts, latency.bounds
        now = time.monotonic()
        waited = 0.0
        sample_in = self._sample_in
        while True:
            reply = parser.gets()
            if reply is False or pending is not self._pending:  # or a callback failed the link
                break
            callback, queued = pending.popleft()
            counts[bisect_left(bounds, now - queued)] += 1
            waited += now - queued
            sample_in -= 1
            if not sample_in:
                sample_in = self._sample(callback, now - queued)
            try:
                callback(reply)
            except Exception:  # a bug in one operation must not kill the link
                log.exception("callback for replica %s failed", self.id)
        latency.total += waited
        self._sample_in = sample_in

    def _sample(self, callback: Callback, seconds: float) -> int:
        """Record one round trip; returns how many replies until the next sample.

        Every GET and MGET reads; every other request (rq_put, rq_set, rq_replace,
        rq_merge, hints; the rare scan or inspection) counts as a write. The gap is
        random: a fixed one would alias with a client's regular pattern (SET, GET, SET,
        GET… sampled every 8th reply records only GETs)."""
        if type(getattr(callback, "__self__", None)) is _GetGroup:
            self.round_trips.reads.append(seconds)
        else:
            self.round_trips.writes.append(seconds)
        return self.round_trips.next_gap()

    # -- lifetime ----------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, and reconnect with backoff forever (until cancelled)."""
        started = False
        backoff = 0.05
        while True:
            try:
                sock = await self._connect()
            except (OSError, trio.TooSlowError, ReplyError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                if not started:
                    task_status.started()
                    started = True
                    log.warning("replica %s (%s) is not reachable: %s", self.id, self.address,
                                self.last_error, extra={"event": "replica_down", "replica": self.id,
                                                        "address": self.address,
                                                        "reason": self.last_error})
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            self._sock = sock
            self._parser = ReplyParser()
            self._set_up(True)
            if not started:
                task_status.started()
                started = True
            try:
                async with trio.open_nursery() as nursery:
                    self._scope = nursery.cancel_scope
                    self._reactor.watch(sock.fileno(), _READABLE, partial(self._on_readable, sock))
                    self._on_readable(sock, 0)  # what arrived before the watch
                    nursery.start_soon(self._writer, sock)
                    nursery.start_soon(self._watchdog)
            finally:
                self._scope = None
                if self.up:  # cancelled from outside: fail what is pending
                    self._fail(CLOSED, SHUTTING_DOWN)
            await trio.sleep(backoff)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def _set_up(self, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        if up:
            self.connected_since = time.time()
            self.down_since = None
            self._ready.set()
            log.info("replica %s (%s) is up", self.id, self.address,
                     extra={"event": "replica_up", "replica": self.id, "address": self.address})
        else:
            self.down_since = time.monotonic()
            self._ready = trio.Event()
            level = logging.INFO if self.last_error == SHUTTING_DOWN else logging.WARNING
            log.log(level, "replica %s (%s) is down: %s", self.id, self.address, self.last_error,
                    extra={"event": "replica_down", "replica": self.id, "address": self.address,
                           "reason": self.last_error})
        if self._on_state is not None:
            self._on_state(self, up)

    def _fail(self, failure: ReplicaFailure, why: str) -> None:
        """Close the connection and fail every pending request; ``run`` reconnects."""
        self.last_error = why
        self._set_up(False)
        sock, self._sock = self._sock, None
        if sock is not None:
            self._reactor.unwatch(sock.fileno())
            trio.lowlevel.notify_closing(sock)  # the writer task may be waiting on it
            sock.close()
        self._out.clear()
        self._gets = None
        self._writes = None
        self._backlog = b""
        pending = list(self._pending)
        self._pending.clear()  # a _deliver running below us must find nothing more to answer
        self._pending = deque()
        if self._scope is not None:
            self._scope.cancel()
        for callback, _ in pending:
            try:
                callback(failure)
            except Exception:
                log.exception("callback for replica %s failed", self.id)

    def fail(self, why: str) -> None:
        """Declare the link broken (e.g. the replica lost its function library)."""
        if self.up:
            self._fail(CLOSED, why)

    def _on_readable(self, sock: socket.socket | TlsSocket, events: int) -> None:
        """From the reactor's pass: read everything there is (edge-triggered)."""
        while sock is self._sock:
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                return
            except OSError as exc:
                self._fail(CLOSED, f"receive failed: {exc}")
                return
            if not data:
                self._fail(CLOSED, "replica closed the connection")
                return
            try:
                self._deliver(data)
            except Exception as exc:  # the reply stream itself is broken: start over
                log.exception("replica %s sent an unreadable reply", self.id)
                self._fail(CLOSED, f"unreadable reply: {exc}")
                return
            if len(data) < 262144:
                return  # drained (a recv more would only say EAGAIN): the next arrival is an edge

    async def _writer(self, sock: socket.socket | TlsSocket) -> None:
        """Sends the backlog a full socket left behind (and, over TLS, the ciphertext the
        kernel did not take). ``_fail`` may close the socket from another task (the
        watchdog, the reactor's pass) while this one waits on it: trio then raises
        ClosedResourceError here, which ends this task and nothing else."""
        tls = sock if type(sock) is TlsSocket else None
        while True:
            if not self._backlog and not (tls and tls.backlog):
                await self._writer_lot.park()
                continue
            try:
                await trio.lowlevel.wait_writable(sock)
            except trio.ClosedResourceError:
                return  # the link failed under us (_fail): its failure, not the proxy's
            if sock is not self._sock:
                return
            try:
                if tls is not None and not tls.flush():
                    continue
                if not self._backlog:
                    continue
                sent = sock.send(self._backlog)
            except BlockingIOError:
                continue
            except OSError as exc:
                self._fail(CLOSED, f"send failed: {exc}")
                return
            self._backlog = self._backlog[sent:]

    async def _watchdog(self) -> None:
        tick = min(0.05, self.timeout / 4)
        while True:
            await trio.sleep(tick)
            pending = self._pending
            if not pending or time.monotonic() - pending[0][1] <= self.timeout:
                continue
            # Replies may be sitting unread because the proxy was busy: read first.
            self._drain()
            if self._pending and time.monotonic() - self._pending[0][1] > self.timeout:
                self._fail(TIMEOUT, f"no reply within {self.timeout:g}s")
                return

    def _drain(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data = sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return
            if not data:
                return
            self._deliver(data)

    # -- connecting --------------------------------------------------------

    async def _connect(self) -> socket.socket | TlsSocket:
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with trio.fail_after(max(self.timeout, 1.0)):
                code = sock.connect_ex(address)
                if code not in (0, errno.EINPROGRESS):
                    raise OSError(code, f"connect to {self.address}: {errno.errorcode.get(code)}")
                await trio.lowlevel.wait_writable(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, f"connect to {self.address}: {errno.errorcode.get(code)}")
                if self.tls is not None:
                    tls = TlsSocket(sock, self.tls, server_side=False, server_hostname=self.host)
                    await _tls_handshake(tls)
                    await self._handshake(tls)
                    return tls
                await self._handshake(sock)
            return sock
        except BaseException:
            sock.close()
            raise

    async def _handshake(self, sock: socket.socket | TlsSocket) -> None:
        """Authenticate, name the connection, load the function library where the replica
        runs another version (loading it again would drop what it keeps in memory), and
        learn the actor this replica's process writes under."""
        commands = []
        if self._password:
            auth = [self._username] if self._username else []
            commands.append(encode_command("AUTH", *auth, self._password))
        commands.append(encode_command("CLIENT", "SETNAME", "redquorum"))
        commands.append(wire.library())
        replies = await _exchange(sock, commands)
        _refused(replies[:-1])
        loaded = replies[-1]  # an error: no library, or one older than rq_library
        commands = []
        if loaded != self._library_digest:
            commands.append(encode_command("FUNCTION", "LOAD", "REPLACE", self._library))
        # A new redis-server process writes under a new actor (replicas/redquorum.lua,
        # "Actor epochs"): started here, before any write of this connection.
        commands.append(wire.actor(self.id))
        replies = await _exchange(sock, commands)
        _refused(replies)
        if type(replies[-1]) is bytes:
            self.epoch = replies[-1].decode(errors="replace")


def _refused(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, ReplyError):
            raise ReplyError(f"handshake: {reply.text}")


async def _exchange(sock: socket.socket | TlsSocket, commands: list[bytes]) -> list[Any]:
    """Send ``commands`` and read their replies (errors among them) during a handshake."""
    data = b"".join(commands)
    while data or (type(sock) is TlsSocket and sock.backlog):
        await trio.lowlevel.wait_writable(sock)
        try:
            if type(sock) is TlsSocket and not sock.flush():
                continue
            data = data[sock.send(data):] if data else data
        except BlockingIOError:
            continue
    parser = ReplyParser()
    replies: list[Any] = []
    while len(replies) < len(commands):
        await trio.lowlevel.wait_readable(sock)
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            continue
        if not chunk:
            raise OSError(errno.ECONNRESET, "replica closed the connection during handshake")
        parser.feed(chunk)
        while (reply := parser.gets()) is not False:
            replies.append(reply)
    return replies


async def _tls_handshake(tls: TlsSocket) -> None:
    """The client side of a TLS handshake over the link's non-blocking socket."""
    while not tls.handshake():
        if tls.backlog:
            await trio.lowlevel.wait_writable(tls)
            tls.flush()
        else:
            await trio.lowlevel.wait_readable(tls)
    while tls.backlog:
        await trio.lowlevel.wait_writable(tls)
        tls.flush()
