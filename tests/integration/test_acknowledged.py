"""Nothing acknowledged is lost, nothing deleted comes back, and the proxy survives
replica faults: one regression test per way these promises were found broken."""

from __future__ import annotations

import shutil
import signal
import threading
import time

import redis

from tests.harness import wait_for


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


def inspect(client: redis.Redis, key: str) -> list[dict[bytes, object]]:
    return [dict(zip(e[::2], e[1::2], strict=True)) for e in client.execute_command("RQ.INSPECT", key)]


def first_home(client: redis.Redis, key: str) -> str:
    return inspect(client, key)[0][b"id"].decode()


def all_reachable(client: redis.Redis, key: str) -> bool:
    return all(e[b"reachable"] == 1 for e in inspect(client, key))


def same_everywhere(replicas, key: str) -> bool:
    return len({replicas.raw(r.id).get(key) for r in replicas}) == 1


def restart_empty(replica) -> None:
    replica.kill()
    for path in replica.dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != "redis.log":
            path.unlink()
    replica.start()
    wait_for(replica.ready, what="the restarted replica")


def test_a_replica_restarted_empty_never_reuses_a_dot(replicas, make_proxy):
    """The restarted replica coordinates the next plain SET and DEL: its fresh counters
    must not mint dots the other homes hold for older values (they would drop the new
    write as already seen, yet answer as if they stored it)."""
    proxy = make_proxy(replicas, timeout=0.3)
    c = proxy.client()
    c.set("k", "v1")
    home = replicas.by_id(first_home(c, "k"))
    restart_empty(home)
    wait_for(lambda: all_reachable(c, "k"), what="the proxy to see the replica back")
    assert c.set("k", "v2")
    assert c.get("k") == b"v2"
    wait_for(lambda: same_everywhere(replicas, "k"), timeout=3, what="every home to hold v2")
    assert c.delete("k") == 1
    assert c.get("k") is None
    wait_for(lambda: same_everywhere(replicas, "k"), timeout=3, what="every home to hold the tombstone")
