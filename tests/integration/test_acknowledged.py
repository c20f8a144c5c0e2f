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


def test_a_newer_tombstone_or_expiry_beats_an_older_concurrent_value(client):
    """Siblings arise when a coordinator missed a write (a replica just back, a partition);
    a plain GET then follows real time across all of them, dead ones included."""
    client.execute_command("RQ.SET", "deleted", "", "old")
    client.execute_command("RQ.DEL", "deleted", "")  # saw nothing: a sibling of "old"
    assert client.get("deleted") is None
    assert client.exists("deleted") == 0
    assert client.incr("deleted") == 1  # INCR starts from the newest sibling too

    client.execute_command("RQ.SET", "expired", "", "v1")
    client.execute_command("RQ.SET", "expired", "", "v2", "PX", "300")
    assert client.get("expired") == b"v2"
    time.sleep(0.4)
    assert client.get("expired") is None
    assert client.exists("expired") == 0
    assert b"expired" not in client.keys("*")


def test_read_modify_write_reads_enough_homes_whatever_this_connection_writes_with(replicas, make_proxy):
    """A connection writing with w=3 once read n - 3 + 1 = 1 home for INCR: the stale one
    answered first, and an increment of an older value was acknowledged."""
    proxy = make_proxy(replicas)
    c = proxy.client()
    c.set("counter", 5)
    stale = first_home(c, "counter")  # it coordinates the INCR below
    old = replicas.raw(stale).get("counter")
    c.set("counter", 10)
    wait_for(lambda: same_everywhere(replicas, "counter"), timeout=3, what="every home to hold 10")
    replicas.raw(stale).set("counter", old)  # the home lost the write behind the proxy's back
    strict = proxy.client()
    assert strict.execute_command("RQ.CONSISTENCY", 2, 3) == b"OK"
    assert strict.incr("counter") == 11
    assert c.get("counter") == b"11"
    # a w below the cluster's min_w (default: its w) is refused: INCR would read too few
    try:
        strict.execute_command("RQ.CONSISTENCY", 2, 1)
    except redis.ResponseError as exc:
        assert "min_w" in str(exc)
    else:
        raise AssertionError("RQ.CONSISTENCY accepted w below min_w")


def test_deletes_missed_during_an_outage_never_come_back_at_any_volume(replicas, make_proxy):
    """Hints once named keys only, and moved 64 per second: a hint whose tombstone had been
    collected on its holder was dropped, and the returning replica's old value spread back
    through read repair. Hints now carry the tombstone and keep up with the outage."""
    grace = 4.0
    proxy = make_proxy(replicas, extra=["--tombstone-grace", str(grace)])
    c = proxy.client(socket_timeout=30)
    keys = [f"gone:{i}" for i in range(1500)]
    pipe = c.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, "old")
    pipe.execute()
    away = replicas.by_id("r3")
    wait_for(lambda: replicas.raw("r3").exists(*keys) == len(keys), what="r3 to hold every key")
    away.kill()
    deleted_at = time.monotonic()
    pipe = c.pipeline(transaction=False)
    for key in keys:
        pipe.delete(key)
    assert pipe.execute() == [1] * len(keys)
    away.start()  # with its AOF: every old value
    wait_for(away.ready, what="r3 to restart")
    wait_for(lambda: sum(replicas.raw(h).hlen("__rq:hints:r3") for h in ("r1", "r2")) == 0,
             timeout=grace, what="every hint for r3 to be delivered")
    time.sleep(max(0.0, deleted_at + grace + 0.5 - time.monotonic()))  # tombstones collected
    values = c.mget(keys)
    assert values.count(None) == len(keys), f"{len(keys) - values.count(None)} deleted keys came back"
    held = [k for k in replicas.raw("r3").scan_iter(count=1000) if not k.startswith(b"__rq:")]
    assert len(held) < 10  # the old values are gone from r3 too (its digests are __rq: keys)


def test_a_value_set_with_a_past_expiry_stays_dead_when_a_missed_home_returns(replicas, make_proxy):
    """SET ... PXAT <past> once stored a sibling Redis dropped at once (its expiry plus the
    grace was already past): the home that missed the write brought the old value back.
    The sibling now counts as dead from the write, kept for the grace like a tombstone."""
    proxy = make_proxy(replicas)
    c = proxy.client()
    c.set("k", "v1")
    wait_for(lambda: same_everywhere(replicas, "k"), timeout=3, what="every home to hold v1")
    away = replicas.by_id("r3")
    away.kill()
    assert c.set("k", "v2", pxat=1) is True
    assert c.get("k") is None
    for holder in ("r1", "r2"):  # no hint: only the stored objects can stop the old value
        replicas.raw(holder).delete("__rq:hints:r3")
        assert replicas.raw(holder).pttl("k") > 0  # kept for the grace period
    away.start()
    wait_for(away.ready, what="r3 to restart")
    wait_for(lambda: all_reachable(c, "k"), what="the proxy to see r3 back")
    strict = proxy.client()
    strict.execute_command("RQ.CONSISTENCY", 3, 2)
    assert strict.get("k") is None
    assert c.get("k") is None
