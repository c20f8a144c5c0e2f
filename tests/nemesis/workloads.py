"""Client workloads: threads that talk to the proxies through plain redis-py connections
and record every operation with its invocation and completion time (``time.monotonic``)
and outcome, for the checker.

An outcome is ``ok`` (the proxy acknowledged it) or ``unknown``: an error reply
(``NOQUORUM``), a timeout or a dropped connection. The guarantees call a failed write an
unknown outcome (it may have reached some replicas), so the checker treats it as a write
that may take effect at any time after it was invoked, never as one that did not happen.

set       several clients add unique elements to a few keys: RQ.GET, union of the siblings,
          add the element, RQ.SET with the context read; an error retries the same element
          (a fresh read each time) until it is acknowledged or the run ends.
register  SET (a unique value), GET and DEL on a few keys with plain Redis commands.
          With ``value_bytes`` every value carries that much padding after a ``|``.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import redis

from .cluster import Cluster

ERRORS = (redis.ResponseError, redis.ConnectionError, redis.TimeoutError)


@dataclass
class Op:
    client: str
    kind: str  # get, set, del (register); add (set)
    key: str
    value: str | None
    invoke: float
    complete: float = 0.0
    outcome: str = "unknown"  # ok | unknown
    error: str = ""


class Connection:
    """One client's connection to one proxy position, reopened after a failure (a restarted
    proxy listens on a new port)."""

    def __init__(self, cluster: Cluster, proxy: int) -> None:
        self.cluster = cluster
        self.proxy = proxy
        self.client: redis.Redis | None = None

    def call(self, *args):
        if self.client is None:
            self.client = self.cluster.proxy_client(self.proxy, socket_timeout=3)
        try:
            return self.client.execute_command(*args)
        except (redis.ConnectionError, redis.TimeoutError):
            self.close()
            raise

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class Workload:
    name = ""

    def __init__(self, cluster: Cluster, seed: int, clients: int = 4, keys: int = 3,
                 value_bytes: int = 0) -> None:
        self.cluster = cluster
        self.padding = "." * value_bytes  # large values fill socket buffers: links block
        self.seed = seed
        self.clients = clients
        self.keys = [f"{self.name}:{i}" for i in range(keys)]
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.origin = time.monotonic()

    def now(self) -> float:
        """Seconds since the run began (the nemesis prints the same clock)."""
        return time.monotonic() - self.origin

    def start(self, origin: float) -> None:
        self.origin = origin
        for i in range(self.clients):
            conn = Connection(self.cluster, i % len(self.cluster.slots))
            rng = random.Random(f"{self.seed}:{self.name}:{i}")
            thread = threading.Thread(target=self._run_client, args=(f"c{i}", conn, rng),
                                      name=f"{self.name}-c{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
            if thread.is_alive():
                raise AssertionError(f"client {thread.name} did not stop: a request hangs")

    def record(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def _run_client(self, name: str, conn: Connection, rng: random.Random) -> None:
        try:
            self.client_loop(name, conn, rng)
        finally:
            conn.close()

    def client_loop(self, name: str, conn: Connection, rng: random.Random) -> None:
        raise NotImplementedError

    def _failed(self, op: Op, exc: Exception) -> None:
        op.complete = self.now()
        op.error = f"{type(exc).__name__}: {exc}"[:120]
        self.record(op)
        # a down proxy refuses at once: do not spin
        self._stop.wait(0.05 if isinstance(exc, redis.ConnectionError) else 0.005)


def encode_set(elements: set[str]) -> str:
    return ",".join(sorted(elements))


def decode_set(value: bytes) -> set[str]:
    return {e for e in value.decode().split(",") if e}


class SetWorkload(Workload):
    name = "set"

    def client_loop(self, name: str, conn: Connection, rng: random.Random) -> None:
        i = 0
        while not self._stop.is_set():
            element, key = f"{name}-{i}", rng.choice(self.keys)
            i += 1
            while not self._stop.is_set():
                op = Op(name, "add", key, element, self.now())
                try:
                    context, siblings = conn.call("RQ.GET", key)
                    merged = set().union(*(decode_set(v) for v in siblings))
                    merged.add(element)
                    conn.call("RQ.SET", key, context, encode_set(merged))
                except ERRORS as exc:
                    self._failed(op, exc)
                    continue
                op.complete, op.outcome = self.now(), "ok"
                self.record(op)
                break

    def final_read(self, conn: Connection) -> dict[str, set[str]]:
        """Every key's elements, read from every replica (r = n) and merged."""
        conn.call("RQ.CONSISTENCY", self.cluster.spec.n, self.cluster.spec.n)
        found = {}
        for key in self.keys:
            _, siblings = conn.call("RQ.GET", key)
            found[key] = set().union(*(decode_set(v) for v in siblings))
        return found


class RegisterWorkload(Workload):
    name = "register"
    weights = {"get": 50, "set": 35, "del": 15}

    def client_loop(self, name: str, conn: Connection, rng: random.Random) -> None:
        kinds, weights = list(self.weights), list(self.weights.values())
        i = 0
        while not self._stop.is_set():
            kind, key = rng.choices(kinds, weights)[0], rng.choice(self.keys)
            value = f"{name}-{i}" if kind == "set" else None
            i += 1
            op = Op(name, kind, key, value, self.now())
            try:
                if kind == "get":
                    op.value = self.unpad(conn.call("GET", key))
                elif kind == "set":
                    conn.call("SET", key, f"{value}|{self.padding}")
                else:
                    conn.call("DEL", key)
            except ERRORS as exc:
                self._failed(op, exc)
                continue
            op.complete, op.outcome = self.now(), "ok"
            self.record(op)

    def unpad(self, reply: bytes | None) -> str | None:
        """The value's name; a reply whose padding is not what was written keeps it, so
        the checker sees a value nobody wrote."""
        if reply is None:
            return None
        text = reply.decode()
        name, _, padding = text.partition("|")
        return name if padding == self.padding else text

    def final_read(self, conn: Connection) -> list[Op]:
        """One more GET per key through every proxy, after the heal: the reads that show a
        deleted value coming back once everything is connected again."""
        reads = []
        for index in range(len(self.cluster.slots)):
            other = Connection(self.cluster, index)
            try:
                for key in self.keys:
                    op = Op(f"final{index}", "get", key, None, self.now())
                    op.value = self.unpad(other.call("GET", key))
                    op.complete, op.outcome = self.now(), "ok"
                    reads.append(op)
            finally:
                other.close()
        self.ops.extend(reads)
        return reads


WORKLOADS = {"set": SetWorkload, "register": RegisterWorkload}
