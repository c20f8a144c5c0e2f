"""Fault injection under load: replicas killed, restarted, paused and cut while clients
write; afterwards every acknowledged write must still be readable."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis

from tests.harness import wait_for
from tests.relay import Relay

pytestmark = pytest.mark.slow  # replicas killed, paused and cut under load


class Writer(threading.Thread):
    """Writes unique keys (and bumps counters) until stopped; remembers what was acked."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.name = name
        self.acked: dict[str, str] = {}
        self.increments = 0
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set() and i < 20_000:
            key, value = f"{self.name}:{i}", f"v{i}"
            try:
                if self.client.set(key, value):
                    self.acked[key] = value
                if self.client.incr(f"{self.name}:counter"):
                    self.increments += 1
            except redis.ResponseError as exc:
                assert "NOQUORUM" in str(exc), exc
                self.failed += 1
            i += 1


def check_nothing_lost(client: redis.Redis, writers: list[Writer]) -> None:
    for writer in writers:
        keys = list(writer.acked)
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            assert client.mget(chunk) == [writer.acked[k].encode() for k in chunk]
        # an INCR acknowledged is never lost; one that failed may or may not have landed
        counter = int(client.get(f"{writer.name}:counter") or 0)
        assert writer.increments <= counter <= writer.increments + writer.failed


def run_writers(proxy, count: int = 2) -> list[Writer]:
    writers = [Writer(proxy.client(socket_timeout=10), f"w{i}") for i in range(count)]
    for w in writers:
        w.start()
    return writers


def stop_writers(writers: list[Writer]) -> None:
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(30)
        assert not w.is_alive()


def test_kill_and_restart_a_replica_under_load(replicas, make_proxy):
    proxy = make_proxy(replicas, timeout=0.3)
    writers = run_writers(proxy)
    time.sleep(0.5)
    victim = replicas.by_id("r2")
    victim.signal(signal.SIGKILL)
    time.sleep(0.7)
    victim.start()  # same port, same directory: it comes back with its AOF
    wait_for(victim.ready, what="the restarted replica")
    time.sleep(0.7)
    stop_writers(writers)
    assert sum(len(w.acked) for w in writers) > 50
    check_nothing_lost(proxy.client(), writers)


def test_pause_two_replicas_in_turn_under_load(replicas, make_proxy):
    proxy = make_proxy(replicas, timeout=0.3)
    writers = run_writers(proxy)
    for ident in ("r1", "r3"):
        time.sleep(0.4)
        replicas.by_id(ident).signal(signal.SIGSTOP)
        time.sleep(0.8)
        replicas.by_id(ident).signal(signal.SIGCONT)
    time.sleep(0.4)
    stop_writers(writers)
    assert sum(len(w.acked) for w in writers) > 50
    check_nothing_lost(proxy.client(), writers)


def test_cut_links_under_load(replicas, make_proxy):
    relays = {r.id: Relay(r.port) for r in replicas}
    try:
        proxy = make_proxy(replicas, timeout=0.3,
                           addresses={i: relay.address for i, relay in relays.items()})
        writers = run_writers(proxy)
        for ident in ("r3", "r1"):
            time.sleep(0.4)
            relays[ident].cut()
            time.sleep(0.8)
            relays[ident].heal()
        time.sleep(0.5)
        stop_writers(writers)
        assert sum(len(w.acked) for w in writers) > 50
        check_nothing_lost(proxy.client(), writers)
    finally:
        for relay in relays.values():
            relay.close()
