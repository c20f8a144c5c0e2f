"""A fault-injecting TCP relay on loopback, for partition tests.

``Relay(target_port)`` listens on a free loopback port and forwards every connection
to the target. ``cut()`` closes every relayed connection and refuses new ones (they
are accepted and closed at once): a partition between whoever connects through the
relay and the target, seen as connection resets. ``blackhole()`` is the silent kind of
partition: connections stay open and new ones are accepted, but no byte moves either
way until ``heal()``, when everything held back is delivered late, as TCP would after
an outage that outlived no timeout of its own. ``heal()`` lets connections through again.
"""

from __future__ import annotations

import socket
import threading


class Relay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self._flowing = threading.Event()  # cleared while black-holed
        self._flowing.set()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def blackhole(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        with self._lock:
            self._cut = False
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._flowing.set()  # pumps held by a black hole wake up and find their sockets closed
        _close(self._listener)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refused = self._cut
                if not refused:
                    self._sockets.add(client)
            if refused:
                _close(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        """Open the upstream half once traffic flows (a black hole holds accepted clients)."""
        self._flowing.wait()
        with self._lock:
            alive = client in self._sockets
        if not alive:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if client not in self._sockets:
                alive = False
            else:
                self._sockets.add(upstream)
        if not alive:
            _close(upstream)
            return
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                self._flowing.wait()
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # bytes read just before a black hole are held back too
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
