"""Test harness: real redis-server replicas and real redquorum proxy processes.

Everything listens on free loopback ports and only processes started here are
signalled (by PID).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redquorum.replicas.launcher import LocalReplica, free_port, launch, stop_all

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Replicas(list):
    """The LocalReplica processes of one test."""

    def by_id(self, ident: str) -> LocalReplica:
        return next(r for r in self if r.id == ident)

    def raw(self, ident: str) -> redis.Redis:
        """A direct client to one replica (bypassing the proxy)."""
        r = self.by_id(ident)
        return redis.Redis(host=r.host, port=r.port, protocol=2, socket_timeout=5)

    def stop(self) -> None:
        stop_all(list(self))


def start_replicas(count: int, data_dir: Path) -> Replicas:
    return Replicas(launch(count, data_dir))


class ProxyProcess:
    """``redquorum serve`` in a subprocess over the given replicas."""

    def __init__(self, replicas: list[LocalReplica], *, n: int | None = None, w: int | None = None,
                 r: int | None = None, mode: str | None = None, timeout: float = 0.3,
                 extra: list[str] | None = None, metrics: bool = False,
                 addresses: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.metrics_port = free_port() if metrics else None
        args = [sys.executable, "-m", "redquorum.cli", "serve", "--listen", f"127.0.0.1:{self.port}",
                "--replica-timeout", str(timeout), "--log-level", "warning"]
        for rep in replicas:
            address = (addresses or {}).get(rep.id, rep.address)
            args += ["--replica", f"{rep.id}={address}"]
        for flag, value in (("-n", n), ("-w", w), ("-r", r), ("--mode", mode)):
            if value is not None:
                args += [flag, str(value)]
        if self.metrics_port:
            args += ["--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        args += extra or []
        self.args = args
        self.log_path = log_path
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # settings come from the arguments alone; REDQUORUM_NATIVE picks the build under test
        env = {k: v for k, v in env.items() if not k.startswith("REDQUORUM_") or k == "REDQUORUM_NATIVE"}
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
        try:
            wait_for(self._ready, timeout=15, what="the proxy to answer PING")
        except BaseException:
            self.stop()
            raise

    ready_reply = b"+PONG"  # what PING answers once the proxy serves

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"proxy exited with {self.process.returncode}: {self.args}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(self.ready_reply)
        except OSError:
            return False

    def client(self, protocol: int = 2, **kwargs) -> redis.Redis:
        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, protocol=protocol, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def reference_and_proxy(base: Path) -> Iterator[tuple[int, ProxyProcess]]:
    """A plain redis-server to compare replies with, and a proxy over three replicas."""
    reference = launch(1, base / "reference", prefix="ref")
    replicas = start_replicas(3, base / "replicas")
    proxy = ProxyProcess(replicas, log_path=base / "proxy.log")
    try:
        yield reference[0].port, proxy
    finally:
        proxy.stop()
        replicas.stop()
        stop_all(reference)
