"""Nothing acknowledged is lost, nothing deleted comes back, and the proxy survives
replica faults: one regression test per way these promises were found broken."""

from __future__ import annotations

import signal
import threading
import time

import redis


def test_a_link_failing_while_its_writer_waits_for_room_leaves_the_proxy_running(replicas, make_proxy):
    """A paused replica stops reading: the link's socket buffer fills, its writer task
    waits for room, and the watchdog fails the link under it. That failure must stay the
    link's (the proxy once died of trio's ClosedResourceError in the writer)."""
    proxy = make_proxy(replicas, timeout=0.3)
    stop = threading.Event()
    value = b"x" * 1024 * 1024

    def load() -> None:
        c = proxy.client(socket_timeout=5)
        i = 0
        while not stop.is_set():
            try:
                pipe = c.pipeline(transaction=False)
                for _ in range(16):
                    pipe.set(f"big{i % 64}", value)
                    i += 1
                pipe.execute(raise_on_error=False)
            except redis.RedisError:
                time.sleep(0.01)

    writers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in writers:
        t.start()
    paused = replicas[2]
    try:
        time.sleep(0.3)
        for _ in range(2):
            paused.signal(signal.SIGSTOP)
            time.sleep(1.2)
            paused.signal(signal.SIGCONT)
            time.sleep(0.3)
    finally:
        paused.signal(signal.SIGCONT)
        stop.set()
        for t in writers:
            t.join(10)
    assert proxy.process.poll() is None, "the proxy exited"
    c = proxy.client()
    assert c.ping()
    assert c.set("after", "ok") and c.get("after") == b"ok"
