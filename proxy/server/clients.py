"""Client connections, served from the reactor (proxy/reactor.py), not a task each.

Each client socket is registered once in the reactor's epoll set. When it is readable,
the connection reads, parses and dispatches from the reactor's pass; a batch whose
replies arrive later is answered from the replica callback that completes it. A client
costs no task switch at all (a task per client cost two and an ``epoll_ctl`` per request).

A connection's life, batch by batch:

* read what the socket holds (one ``recv`` per turn: a client that floods the proxy
  goes to the back of the queue instead of starving the others);
* parse it into commands; the commands of one read form a batch, dispatched before
  anything is sent to the replicas (the requests of every client served in a reactor
  pass leave together at its end, one write per replica);
* when the batch's last deferred reply arrives, all its replies leave in one ``send``
  in order, and the next batch starts;
* a client that ends its side, QUITs or breaks the protocol gets its unsent replies,
  then the connection closes.

Within a batch, a command touching a key an earlier pending write of the same batch
touches starts a new batch, so a client always reads its own pipelined writes.

Limits, so that one client cannot take the proxy's memory or the replica links:

* one batch in flight per client, of at most ``allowance`` commands: the allowance
  starts small, doubles while batches' replies stay under ``REPLY_BUDGET`` bytes and
  shrinks to fit the budget when they do not (five clients pipelining GETs of 1 MiB
  values once filled the replica links for seconds, and other clients' writes timed out);
* unsent replies (Redis's output buffer) are bounded as Redis bounds a normal client's
  (``client-output-buffer-limit``): over the hard limit, or over the soft limit for
  longer than its seconds, the connection is closed. Past the soft limit nothing more
  is read from the client until its replies drain (the memory stays bounded even with
  the limit's seconds far away);
* until a client has authenticated (when a password or users are set), requests are
  held to Redis's pre-authentication sizes (10 arguments, 16 KiB each).
"""

from __future__ import annotations

import logging
import select
import socket
import time
from typing import TYPE_CHECKING

from ..commands.dispatch import dispatch
from ..commands.table import Batch
from ..protocol.resp import ProtocolError, ReplyError, RequestParser, encode

if TYPE_CHECKING:  # pragma: no cover
    from .app import Proxy, Session
    from .reactor import Reactor
    from .tls import TlsSocket

log = logging.getLogger("redquorum.clients")

MAX_BATCH = 512
FIRST_ALLOWANCE = 4  # commands in a new client's first batch
REPLY_BUDGET = 256 * 1024  # bytes of replies one client's batch aims to stay under
RECV_SIZE = 65536
READ_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
HANGUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
EVENTS = select.EPOLLIN | select.EPOLLRDHUP
# EPOLLOUT only while replies wait for room: registered for good, every ACK that freed
# send buffer space woke the reactor for nothing, about once per request.
EVENTS_SENDING = EVENTS | select.EPOLLOUT
EMPTY = memoryview(b"")


class ClientConn:
    """One client socket: its parser, its batch in flight and its unsent replies."""

    __slots__ = ("app", "reactor", "sock", "fd", "session", "parser", "batch", "carry",
                 "out", "queued", "unsent", "over_soft_since", "readable", "closed", "started",
                 "active", "error", "allowance", "restricted", "tls", "hangup", "ended")

    def __init__(self, app: Proxy, reactor: Reactor, sock: socket.socket | TlsSocket,
                 session: Session, tls: TlsSocket | None = None) -> None:
        self.app = app
        self.reactor = reactor
        self.sock = sock  # the TlsSocket itself for a TLS client: the same calls
        self.tls = tls
        self.fd = sock.fileno()
        self.session = session
        self.parser = RequestParser()
        self.batch: Batch | None = None  # dispatched, replies pending
        self.carry: list[bytes] | None = None  # parsed, waits for the batch before it
        self.out = EMPTY  # replies the kernel has not taken yet
        self.queued: list[bytes] = []  # replies behind ``out``
        self.unsent = 0  # bytes in out and queued: Redis's output buffer
        self.over_soft_since = 0.0  # when unsent passed the soft limit (0: it is under)
        self.readable = True  # edge-triggered: data may be waiting until recv says EAGAIN
        # the peer closed (its end, at least): a read after the data will say so, and no
        # new edge will come to ask for it
        self.hangup = False
        self.ended = False  # a read said the client will send nothing more
        self.closed = False
        self.started = 0.0
        self.active = time.monotonic()  # the last read or write (idle timeout)
        self.error: ProtocolError | None = None  # answered, then the connection closes
        self.allowance = FIRST_ALLOWANCE
        self.restricted = False  # the parser holds Redis's pre-authentication limits

    # -- events --------------------------------------------------------------

    def on_event(self, events: int) -> None:
        if events & READ_EVENTS:
            self.readable = True
            if events & HANGUP:
                self.hangup = True
        if events & select.EPOLLOUT:
            if self.tls is not None and self.tls.backlog:
                self._flush_tls()
            if self.out:
                self._send_more()
            if not self.out and not self.closed and not (self.tls and self.tls.backlog):
                self.reactor.modify(self.fd, EVENTS)  # all out: stop watching for room
            if self.over_soft_since and not self.closed:
                self.check_output_limits(time.monotonic())
        if not self.closed:
            self.advance()

    def advance(self) -> None:
        """Do what can be done now: run buffered batches, then read once."""
        try:
            self._advance()
        except Exception:
            log.exception("client %s: internal error; closing the connection", self.session.addr)
            self.close()

    def _advance(self) -> None:
        budget = 1
        hold = self.app.output_hold
        while not self.closed:
            if self.batch is not None:
                return  # waiting for replicas
            if self.session.closing or self.error is not None or self.ended:
                if not self.unsent:
                    self.close()
                return  # its replies leave first, then the connection closes
            if self.unsent > hold:
                return  # waiting for the client to read its replies
            if self._run_batch():
                continue
            if not self.readable:
                return
            if not budget:
                self.reactor.later(self.advance)
                return
            budget -= 1
            try:
                data = self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                self.readable = False
                if self.tls is not None and self.tls.backlog:  # handshake bytes wait for room
                    self.reactor.modify(self.fd, EVENTS_SENDING)
                return
            except OSError as exc:
                if self.tls is not None:
                    log.info("client %s: %s", self.session.addr, exc)
                self.close()
                return
            if not data:
                self.ended = True
                continue
            self.active = time.monotonic()
            if len(data) < RECV_SIZE and not self.hangup:
                self.readable = False  # drained; the next arrival is a new edge
            self.parser.feed(data)

    # -- batches -------------------------------------------------------------

    def _run_batch(self) -> bool:
        """Dispatch the commands buffered so far as one batch; False if there were none."""
        if self.carry is None and not self.parser.buffered():
            return False  # the usual case after a reply: nothing read yet
        app = self.app
        session = self.session
        batch = Batch()
        self.started = time.monotonic()
        count = 0
        allowance = self.allowance
        cmd, self.carry = self.carry, None
        while count < allowance and not session.closing:
            if cmd is None:
                if session.authenticated is self.restricted:
                    self._limit_parser(not session.authenticated)
                try:
                    cmd = self.parser.next_command()
                except ProtocolError as exc:
                    self.error = exc
                    break
                if cmd is None:
                    break
            if not cmd:
                cmd = None
                continue
            if not dispatch(app, session, cmd, batch):
                self.carry = cmd  # it waits for this batch's replies
                break
            cmd = None
            count += 1
        if not batch.results and self.error is None:
            return False
        if batch.pending:
            self.batch = batch
            batch.on_done = self._batch_done
        else:
            self._answer(batch)
        return True

    def _limit_parser(self, restrict: bool) -> None:
        """Redis's limits on requests before authentication, lifted by AUTH (between two
        commands of one read, as Redis parses a command only after running the last)."""
        self.restricted = restrict
        if restrict:
            self.parser.restrict()
        else:
            self.parser.lift()

    def _batch_done(self) -> None:
        """Called by the replica callback that fills the batch's last deferred reply."""
        batch, self.batch = self.batch, None
        if self.closed or batch is None:
            return
        try:
            self._answer(batch)
        except Exception:
            log.exception("client %s: internal error; closing the connection", self.session.addr)
            self.close()
            return
        self.advance()

    def _answer(self, batch: Batch) -> None:
        self.app.record_batch(batch, time.monotonic() - self.started)
        proto = self.session.proto
        results = batch.results
        if len(results) == 1:
            data = encode(results[0], proto)
        else:
            data = b"".join([encode(r, proto) for r in results])
        if self.error is not None:
            error = ReplyError(f"ERR {self.error}")
            self.app.info_stats.error(error.text)  # Redis counts protocol errors too
            data += encode(error)
        self._adjust_allowance(len(results), len(data))
        self._send(data)

    def _adjust_allowance(self, count: int, size: int) -> None:
        if size > REPLY_BUDGET:
            self.allowance = max(1, count * REPLY_BUDGET // size)
        elif count >= self.allowance and self.allowance < MAX_BATCH:
            self.allowance = min(MAX_BATCH, self.allowance * 2)

    # -- output --------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Send ``data`` after what is still unsent, then hold the output limits."""
        self.unsent += len(data)
        if self.out:
            self.queued.append(data)
        else:
            self.out = memoryview(data)
            self._send_more()
            if self.closed:
                return
        if self.out:
            self.reactor.modify(self.fd, EVENTS_SENDING)
            self.check_output_limits(time.monotonic())
        elif self.tls is not None and self.tls.backlog:
            self.reactor.modify(self.fd, EVENTS_SENDING)

    def _send_more(self) -> None:
        # A memoryview: the rest of a large reply is sliced, never copied, per send.
        while True:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return
            except OSError:
                self.out = EMPTY
                self.close()
                return
            self.unsent -= sent
            self.out = self.out[sent:]
            if sent:
                self.active = time.monotonic()
            if self.out or not self.queued:
                return
            self.out = memoryview(b"".join(self.queued))
            self.queued.clear()

    def _flush_tls(self) -> None:
        assert self.tls is not None
        try:
            self.tls.flush()
        except OSError:
            self.close()

    def check_output_limits(self, now: float) -> bool:
        """Close the connection if its unsent replies broke ``client-output-buffer-limit``
        (as Redis: over the hard limit, or over the soft one for longer than its seconds)."""
        limit = self.app.config.output_limit
        unsent = self.unsent
        if limit.soft and unsent > limit.soft:
            if not self.over_soft_since:
                self.over_soft_since = now
        else:
            self.over_soft_since = 0.0
        if (limit.hard and unsent > limit.hard) or (
                self.over_soft_since and now - self.over_soft_since > limit.soft_seconds):
            log.warning("client %s closed for overcoming of output buffer limits (%d bytes "
                        "unsent)", self.session.addr, unsent)
            self.app.output_limit_closed()
            self.close()
            return True
        return False

    def open(self) -> None:
        if not self.session.authenticated:
            self._limit_parser(True)
        self.reactor.watch(self.fd, EVENTS, self.on_event)
        self.advance()  # a client may have sent its first command with the handshake

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.batch = None
        self.out = EMPTY
        self.queued.clear()
        self.unsent = 0
        self.reactor.unwatch(self.fd)
        self.sock.close()
        self.app.client_gone(self.session)
