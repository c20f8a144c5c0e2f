"""Micro-benchmark of the quorum state machines alone: no sockets, no event loop.

    .venv/bin/python -m bench.quorum_micro [--ops N] [--rounds N]

A Coordinator over three in-process links that answer from a queue, drained after each
operation as an event loop would run the reply callbacks. It measures what building and
driving the per-request objects in proxy/replication/coordinator.py costs: plain GET
(r=2), causal SET (w=2), LWW SET (w=2) and INCR (a read, then a write). Best of rounds.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from typing import Any

import msgpack
from redquorum.replication import wire
from redquorum.replication.coordinator import Coordinator
from redquorum.replication.ring import Ring

BLOB = msgpack.packb([1, [b"a", 1], [[b"a", 1, 1_700_000_000_000_000, 0, 0, b"value"]]])
PUT_REPLY = [BLOB, b"OK", b"", 0]


class QueueLink:
    """Answers every request as a healthy replica would, once ``drain`` runs."""

    __slots__ = ("id", "actor", "up", "queue")

    def __init__(self, name: str, queue: deque) -> None:
        self.id = name
        self.actor = name.encode()
        self.up = True
        self.queue = queue

    def request(self, payload: bytes, callback: Any) -> None:
        if b"rq_put" in payload or b"rq_set" in payload:
            self.queue.append((callback, PUT_REPLY))
        else:
            self.queue.append((callback, 0))

    def get(self, key: bytes, callback: Any, index: int, encoded: bytes | None = None) -> None:
        self.queue.append((lambda reply: callback(index, reply), BLOB))

    def fail(self, why: str) -> None:
        self.up = False


def drain(queue: deque) -> None:
    while queue:
        callback, reply = queue.popleft()
        callback(reply)


def coordinator(mode: str, queue: deque) -> Coordinator:
    ring = Ring(("r0", "r1", "r2"), 3)
    links = {name: QueueLink(name, queue) for name in ring.nodes}
    return Coordinator(ring, links, r=2, w=2, mode=mode, tombstone_grace=3600.0,
                       sibling_soft_limit=25, sibling_hard_limit=100)


def measure(ops: int, run: Any, queue: deque) -> float:
    answers: list[Any] = []
    done = answers.append
    keys = [b"key:%d" % i for i in range(1024)]
    start = time.perf_counter()
    for i in range(ops):
        run(keys[i & 1023], done)
        drain(queue)
    elapsed = time.perf_counter() - start
    assert len(answers) == ops
    return elapsed / ops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    queue: deque = deque()
    causal = coordinator("causal", queue)
    lww = coordinator("lww", queue)
    set_op = wire.set_value(b"value")
    cases = {
        "get": lambda key, done: causal.read(key, 2, done, plain=True),
        "set": lambda key, done: causal.write(key, 2, b"*", set_op, done),
        "set-lww": lambda key, done: lww.write(key, 2, b"*", set_op, done),
        "incr": lambda key, done: causal.write(key, 2, b"*", wire.incr_by(1), done),
    }
    for name, run in cases.items():
        best = min(measure(args.ops, run, queue) for _ in range(args.rounds))
        print(f"{name:8} {best:6.2f} us/op")


if __name__ == "__main__":
    main()
