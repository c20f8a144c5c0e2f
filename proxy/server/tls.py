"""TLS for the reactor's non-blocking sockets, through memory BIOs.

Theory of operation. The reactor (reactor.py) drives plain non-blocking sockets from
edge-triggered epoll handlers; ``ssl.SSLSocket`` would hide reads that TLS needs for a
write and the other way round. So a TLS connection is an ``ssl.SSLObject`` between two
``ssl.MemoryBIO``s, and ``TlsSocket`` moves bytes between those and the real socket.
It looks like a non-blocking socket to its owner, with the same contract the reactor's
handlers rely on:

* ``recv(n)`` returns plaintext, ``b""`` at the end (close_notify or TCP EOF), or
  raises ``BlockingIOError``; it returns fewer than ``n`` bytes only when the socket
  has been read until EAGAIN, so an edge-triggered reader that stops at a short read
  misses nothing. The handshake runs inside the first reads.
* ``send(data)`` encrypts and sends; it returns less than ``len(data)`` only when the
  kernel's buffer is full (an EPOLLOUT edge will come). Ciphertext the kernel did not
  take waits in ``backlog`` (at most one record batch), sent by ``flush`` on EPOLLOUT.
* ``close`` sends close_notify when it can, then closes the socket.

Plain connections never see this class: they keep their fast path.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import ssl
from typing import Any

from ..config import Config, ConfigError, Replica

log = logging.getLogger("redquorum.tls")

RAW_READ = 65536
WRITE_CHUNK = 256 * 1024  # plaintext encrypted per step, so the backlog stays small
VERIFY = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "no": ssl.CERT_NONE}
VERSIONS = {"tlsv1": ssl.TLSVersion.TLSv1, "tlsv1.1": ssl.TLSVersion.TLSv1_1,
            "tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}


class TlsSocket:
    __slots__ = ("sock", "obj", "incoming", "outgoing", "backlog", "handshaken",
                 "_drained", "_short", "_eof")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                    server_hostname=server_hostname)
        self.backlog = bytearray()  # ciphertext the kernel has not taken
        self.handshaken = False
        self._drained = False  # the socket gave all it had (EAGAIN, or a short read)
        self._short = False  # ...and it was only a short read
        self._eof = False

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- reading ---------------------------------------------------------------

    def recv(self, size: int) -> bytes:
        self._drained = False
        while True:
            try:
                return self._recv_some(size)
            except BlockingIOError:
                if not self._short:
                    raise
            # Nothing came out, and the last read was only short, not EAGAIN: a FIN that
            # came with that read's edge would be left unseen (no new edge will come).
            self._short = self._drained = False
            if not self._fill():
                if self._eof:
                    return b""
                raise BlockingIOError from None

    def _recv_some(self, size: int) -> bytes:
        if not self.handshaken and not self.handshake():
            raise BlockingIOError
        chunks: list[bytes] = []
        total = 0
        obj = self.obj
        while total < size:
            try:
                data = obj.read(size - total)
            except ssl.SSLWantReadError:
                if not self._fill():
                    break
                continue
            except ssl.SSLZeroReturnError:
                self._eof = True
                break
            except ssl.SSLError as exc:
                raise OSError(f"TLS: {exc}") from None
            if not data:
                self._eof = True
                break
            chunks.append(data)
            total += len(data)
        if self.outgoing.pending:  # session tickets, key updates
            self.flush()
        if chunks:
            return b"".join(chunks)
        if self._eof:
            return b""
        raise BlockingIOError

    def _fill(self) -> bool:
        """Read ciphertext from the socket; False when it has nothing (EAGAIN or EOF)."""
        if self._drained or self._eof:
            return False
        try:
            raw = self.sock.recv(RAW_READ)
        except BlockingIOError:
            self._drained = True
            self._short = False
            return False
        if not raw:
            self._eof = True
            return False
        if len(raw) < RAW_READ:  # most likely drained: saves asking for EAGAIN
            self._drained = self._short = True
        self.incoming.write(raw)
        return True

    def handshake(self) -> bool:
        """Advance the handshake with what has arrived; True once it is done. Raises
        OSError when it fails (bad certificate, not TLS...)."""
        self._drained = False  # called on a new readiness: the socket may hold more
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                if not self._fill():
                    if self._eof:
                        raise ConnectionResetError("closed during the TLS handshake") from None
                    return False
            except ssl.SSLError as exc:
                try:
                    self.flush()  # the alert, so the peer learns why
                except OSError:
                    pass
                raise OSError(f"TLS handshake failed: {exc}") from None
        self.handshaken = True
        self.flush()
        return True

    # -- writing ---------------------------------------------------------------

    def send(self, data: Any) -> int:
        if not self.handshaken or (self.backlog and not self.flush()):
            raise BlockingIOError
        view = memoryview(data)
        total = 0
        obj = self.obj
        while total < len(view):
            try:
                total += obj.write(view[total:total + WRITE_CHUNK])
            except ssl.SSLError as exc:
                raise OSError(f"TLS: {exc}") from None
            if not self.flush():
                break  # the kernel is full: EPOLLOUT will say when to go on
        return total

    def flush(self) -> bool:
        """Send pending ciphertext; True when none is left."""
        pending = self.outgoing.read()
        if pending:
            self.backlog += pending
        backlog = self.backlog
        while backlog:
            try:
                sent = self.sock.send(backlog)
            except BlockingIOError:
                return False
            del backlog[:sent]
        return True

    def close(self) -> None:
        if self.handshaken:
            try:
                self.obj.unwrap()
            except (ssl.SSLError, ValueError):
                pass  # SSLWantReadError: close_notify is written, the reply is not awaited
            try:
                self.flush()
            except OSError:
                pass
        self.sock.close()


# ---------------------------------------------------------------------------
# contexts


def server_context(config: Config) -> ssl.SSLContext:
    """The client listener's context, as Redis's tls-* settings describe it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert config.tls_cert_file and config.tls_key_file
    try:
        ctx.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        if config.tls_ca_cert_file:
            ctx.load_verify_locations(config.tls_ca_cert_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS certificates: {exc}") from None
    ctx.verify_mode = VERIFY[config.tls_auth_clients]
    # no TLS-level compression (CRIME), and no client-initiated renegotiation: each one
    # costs the server a handshake's CPU on a connection that is already open
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    _versions(ctx, config.tls_protocols)
    _ciphers(ctx, config.tls_ciphers, config.tls_ciphersuites)
    return ctx


def replica_context(replica: Replica, config: Config | None = None) -> ssl.SSLContext:
    """A replica link's context: the server is verified against the replica's CA (or the
    system's), by host name or IP; a client certificate when the replica asks for one."""
    try:
        ctx = ssl.create_default_context(cafile=replica.tls_ca_cert_file)
        if replica.tls_cert_file and replica.tls_key_file:
            ctx.load_cert_chain(replica.tls_cert_file, replica.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"replica {replica.id}: TLS certificates: {exc}") from None
    if config is not None:
        _versions(ctx, config.tls_protocols)
        _ciphers(ctx, config.tls_ciphers, config.tls_ciphersuites)
    return ctx


def replica_contexts(config: Config) -> dict[str, ssl.SSLContext]:
    return {r.id: replica_context(r, config) for r in config.replicas if r.tls}


def _versions(ctx: ssl.SSLContext, protocols: str | None) -> None:
    """Redis's ``tls-protocols``: the versions allowed, e.g. "TLSv1.2 TLSv1.3"."""
    if not protocols:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return
    chosen = []
    for word in protocols.split():
        if word.lower() not in VERSIONS:
            raise ConfigError(f"tls-protocols: unknown version {word!r} "
                              "(TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)")
        chosen.append(VERSIONS[word.lower()])
    ctx.minimum_version = min(chosen)
    ctx.maximum_version = max(chosen)


def _ciphers(ctx: ssl.SSLContext, ciphers: str | None, suites: str | None) -> None:
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError:
            raise ConfigError(f"tls-ciphers: OpenSSL accepts none of {ciphers!r}") from None
    if suites:
        _set_ciphersuites(ctx, suites)


def _set_ciphersuites(ctx: ssl.SSLContext, suites: str) -> None:
    """TLSv1.3 suites (Redis's ``tls-ciphersuites``). Python's ssl module has no call for
    them, so OpenSSL's own is called on the context's SSL_CTX (the first field after the
    object header); the result is checked through ``get_ciphers``."""
    import _ssl

    try:
        lib = ctypes.CDLL(_ssl.__file__)
        setter = lib.SSL_CTX_set_ciphersuites
    except (OSError, AttributeError):
        raise ConfigError("tls-ciphersuites: this Python's OpenSSL cannot set them") from None
    setter.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    setter.restype = ctypes.c_int
    handle = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if setter(handle, suites.encode()) != 1:
        raise ConfigError(f"tls-ciphersuites: OpenSSL accepts none of {suites!r}")
    wanted = set(suites.split(":"))
    tls13 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"}
    if not tls13 <= wanted:
        raise ConfigError("tls-ciphersuites: could not be applied")
