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
  in order, and the next batch starts. While replies are pending or unsent, the
  connection reads nothing more: that is the back-pressure a slow client gets.

Within a batch, a command touching a key an earlier pending write of the same batch
touches starts a new batch, so a client always reads its own pipelined writes.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from typing import TYPE_CHECKING

from ..commands.table import Batch
from ..protocol.resp import ProtocolError, ReplyError, RequestParser, encode

if TYPE_CHECKING:  # pragma: no cover
    from .app import Proxy, Session
    from .reactor import Reactor

log = logging.getLogger("redquorum.clients")

MAX_BATCH = 512
RECV_SIZE = 65536
READ_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
EVENTS = select.EPOLLIN | select.EPOLLRDHUP
# EPOLLOUT only while replies wait for room: registered for good, every ACK that freed
# send buffer space woke the reactor for nothing, about once per request.
EVENTS_SENDING = EVENTS | select.EPOLLOUT
EMPTY = memoryview(b"")


class ClientConn:
    """One client socket: its parser, its batch in flight and its unsent replies."""

    __slots__ = ("app", "reactor", "sock", "fd", "session", "parser", "batch", "carry",
                 "out", "readable", "closed", "started", "error")

    def __init__(self, app: Proxy, reactor: Reactor, sock: socket.socket,
                 session: Session) -> None:
        self.app = app
        self.reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.session = session
        self.parser = RequestParser()
        self.batch: Batch | None = None  # dispatched, replies pending
        self.carry: list[bytes] | None = None  # parsed, waits for the batch before it
        self.out = EMPTY  # replies the kernel has not taken yet
        self.readable = True  # edge-triggered: data may be waiting until recv says EAGAIN
        self.closed = False
        self.started = 0.0
        self.error: ProtocolError | None = None  # answered, then the connection closes

    # -- events --------------------------------------------------------------

    def on_event(self, events: int) -> None:
        if events & READ_EVENTS:
            self.readable = True
        if events & select.EPOLLOUT and self.out:
            self._send_more()
            if not self.out and not self.closed:
                self.reactor.modify(self.fd, EVENTS)  # all out: stop watching for room
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
        while not self.closed:
            if self.out or self.batch is not None:
                return  # waiting for the kernel or for replicas
            if self.session.closing or self.error is not None:
                self.close()
                return
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
                return
            except OSError:
                self.close()
                return
            if not data:
                self.close()
                return
            if len(data) < RECV_SIZE:
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
        cmd, self.carry = self.carry, None
        while count < MAX_BATCH and not session.closing:
            if cmd is None:
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
            if not app.dispatch(session, cmd, batch):
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
        self._send(data)

    # -- output --------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Send ``data`` (nothing is unsent when a batch is answered: the connection
        reads no more until its replies are out)."""
        self.out = memoryview(data)
        self._send_more()
        if self.out and not self.closed:
            self.reactor.modify(self.fd, EVENTS_SENDING)

    def _send_more(self) -> None:
        # A memoryview: the rest of a large reply is sliced, never copied, per send.
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        except OSError:
            self.out = EMPTY
            self.close()
            return
        self.out = self.out[sent:]

    def open(self) -> None:
        self.reactor.watch(self.fd, EVENTS, self.on_event)
        self.advance()  # a client may have sent its first command with the handshake

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.batch = None
        self.reactor.unwatch(self.fd)
        self.sock.close()
        self.app.client_gone(self.session)
