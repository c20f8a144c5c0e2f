"""Concurrent writes: siblings, causal contexts, LWW, tombstones and expiry (issue 3)."""

from __future__ import annotations

import time

import msgpack
import pytest
import redis

from tests.harness import wait_for
from tests.relay import Relay


def rq_set(client, key, context, value, *extra):
    context, values = client.execute_command("RQ.SET", key, context, value, *extra)
    return context, {v.decode() for v in values}


def rq_get(client, key):
    context, values = client.execute_command("RQ.GET", key)
    return context, {v.decode() for v in values}


def inspect(client, key):
    return [{k.decode(): v for k, v in zip(e[::2], e[1::2], strict=True)}
            for e in client.execute_command("RQ.INSPECT", key)]


def test_shopping_cart_walkthrough(proxy):
    """DDIA figure 5-13: two clients, each keeping the context of its own last reply."""
    c1, c2 = proxy.client(), proxy.client()
    ctx1, cart = rq_set(c1, "cart", "", "milk")
    assert cart == {"milk"}
    ctx2, cart = rq_set(c2, "cart", "", "eggs")
    assert cart == {"milk", "eggs"}
    ctx1, cart = rq_set(c1, "cart", ctx1, "milk,flour")
    assert cart == {"eggs", "milk,flour"}
    ctx2, cart = rq_set(c2, "cart", ctx2, "eggs,milk,ham")
    assert cart == {"milk,flour", "eggs,milk,ham"}
    ctx1, cart = rq_set(c1, "cart", ctx1, "milk,flour,eggs,bacon")
    assert cart == {"eggs,milk,ham", "milk,flour,eggs,bacon"}
    # A reader that saw both merges them; its write supersedes both.
    seen, cart = rq_get(c1, "cart")
    assert cart == {"eggs,milk,ham", "milk,flour,eggs,bacon"}
    _, cart = rq_set(c1, "cart", seen, "milk,flour,eggs,bacon,ham")
    assert cart == {"milk,flour,eggs,bacon,ham"}
    assert rq_get(c2, "cart")[1] == {"milk,flour,eggs,bacon,ham"}
    # every replica holds exactly that one sibling
    assert all(e["siblings"] == 1 for e in inspect(c1, "cart"))


def test_plain_get_over_siblings_is_deterministic(proxy, make_proxy, replicas):
    c = proxy.client()
    rq_set(c, "k", "", "a")
    rq_set(c, "k", "", "b")
    assert rq_get(c, "k")[1] == {"a", "b"}
    other = make_proxy(replicas).client()
    # the later write (higher timestamp) wins a plain GET, from any proxy
    assert c.get("k") == b"b" and other.get("k") == b"b"
    assert c.mget("k") == [b"b"]


def test_plain_sets_through_one_coordinator_never_make_siblings(proxy):
    c = proxy.client()
    for i in range(20):
        c.set("k", str(i))
        c.delete("other")
    assert rq_get(c, "k")[1] == {"19"}
    assert all(e["siblings"] == 1 for e in inspect(c, "k"))


def test_bad_context_is_refused(client):
    for garbage in (b"junk", b"\x01\xff\xff", b"\x01\x92\xa2r1\x00", b"\x02\x90"):
        with pytest.raises(redis.ResponseError, match="invalid context"):
            client.execute_command("RQ.SET", "k", garbage, "v")
    assert client.ping()


def test_rq_del_tombstone_and_context(client):
    ctx, _ = rq_set(client, "k", "", "v")
    assert client.execute_command("RQ.DEL", "k", ctx) == 1
    assert client.get("k") is None
    assert client.exists("k") == 0
    assert rq_get(client, "k")[1] == set()
    assert all(e["tombstone"] == 1 for e in inspect(client, "k"))


def test_rq_set_with_expiry(client):
    _, values = rq_set(client, "k", "", "v", "PX", "200")
    assert values == {"v"}
    assert 0 < client.pttl("k") <= 200
    wait_for(lambda: client.get("k") is None, timeout=5, what="expiry")


def test_consistency_per_connection(proxy):
    c = proxy.client()
    assert c.execute_command("RQ.CONSISTENCY") == [2, 2]
    assert c.execute_command("RQ.CONSISTENCY", 1, 3) == b"OK"
    assert c.execute_command("RQ.CONSISTENCY") == [1, 3]
    with pytest.raises(redis.ResponseError, match="within 1..3"):
        c.execute_command("RQ.CONSISTENCY", 0, 4)
    assert proxy.client().execute_command("RQ.CONSISTENCY") == [2, 2]  # a new connection
    c.execute_command("RESET")
    assert c.execute_command("RQ.CONSISTENCY") == [2, 2]


def test_sibling_limits(replicas, make_proxy):
    """Above the soft limit a read logs a warning and counts it; at the hard limit writes
    are refused until a client resolves the siblings."""
    proxy = make_proxy(replicas, metrics=True,
                       extra=["--sibling-soft-limit", "2", "--sibling-hard-limit", "3"])
    c = proxy.client()
    for v in "abc":
        rq_set(c, "k", "", v)
    c.get("k")
    assert scrape_value(proxy, "redquorum_sibling_soft_limit_exceeded_total") >= 1
    assert "above the soft limit" in proxy.log_path.read_text()
    with pytest.raises(redis.ResponseError, match="siblings"):
        rq_set(c, "k", "", "d")
    seen, values = rq_get(c, "k")
    assert values == {"a", "b", "c"}
    assert rq_set(c, "k", seen, "resolved")[1] == {"resolved"}


def test_tombstone_is_not_undone_by_a_stale_replica(client, replicas):
    client.set("k", "v")
    dumps = {r.id: replicas.raw(r.id).dump("k") for r in replicas}
    assert client.delete("k") == 1
    # every replica gets the old value back, as if it had missed the delete
    stale = inspect(client, "k")[0]["id"].decode()
    replicas.raw(stale).restore("k", 0, dumps[stale], replace=True)
    for _ in range(3):
        assert client.get("k") is None
    # read repair brings the tombstone back to the stale replica
    wait_for(lambda: inspect(client, "k")[0]["tombstone"] == 1, what="the tombstone repair")


def test_tombstones_expire_after_the_grace_period(replicas, make_proxy):
    proxy = make_proxy(replicas, extra=["--tombstone-grace", "1"])
    c = proxy.client()
    c.set("k", "v")
    c.delete("k")
    assert all(e["tombstone"] == 1 and 0 < e["pttl"] <= 1000 for e in inspect(c, "k"))
    wait_for(lambda: all(e["pttl"] == -2 for e in inspect(c, "k")), timeout=5,
             what="tombstones to be collected")


def test_expiry_is_the_same_absolute_time_on_every_replica(client, replicas):
    client.set("k", "v", ex=100)
    times = {replicas.raw(r.id).pexpiretime("k") for r in replicas}
    assert len(times) == 1
    assert 0 < client.ttl("k") <= 100
    # an EXPIRE is a write like any other: carried to every replica
    client.expire("k", 50)
    times = {replicas.raw(r.id).pexpiretime("k") for r in replicas}
    assert len(times) == 1
    assert 0 < client.ttl("k") <= 50
    client.persist("k")
    assert client.ttl("k") == -1
    assert {replicas.raw(r.id).pexpiretime("k") for r in replicas} == {-1}


def scrape_value(proxy, name: str) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics").read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name)


def partitioned_proxies(replicas, make_proxy, mode="causal"):
    """Proxy A reaches only r1; proxy B reaches only r2 and r3; relays make the cut."""
    relays = {r.id: (Relay(r.port), Relay(r.port)) for r in replicas}
    # A writes with w=1 on its side of the partition
    a = make_proxy(replicas, mode=mode, addresses={i: ra.address for i, (ra, _) in relays.items()},
                   extra=["--min-w", "1"])
    b = make_proxy(replicas, mode=mode, addresses={i: rb.address for i, (_, rb) in relays.items()})
    for ident, (ra, rb) in relays.items():
        (rb if ident == "r1" else ra).cut()
    ca, cb = a.client(), b.client()
    wait_for(lambda: ca.info("redquorum")["replicas_up"] == 1, what="proxy A to see only r1")
    wait_for(lambda: cb.info("redquorum")["replicas_up"] == 2, what="proxy B to see r2, r3")

    def heal() -> None:
        for ra, rb in relays.values():
            ra.heal()
            rb.heal()
        wait_for(lambda: ca.info("redquorum")["replicas_up"] == 3, what="A to reconnect")
        wait_for(lambda: cb.info("redquorum")["replicas_up"] == 3, what="B to reconnect")

    return ca, cb, heal, relays


def test_partition_makes_siblings_that_survive_the_heal(replicas, make_proxy):
    ca, cb, heal, relays = partitioned_proxies(replicas, make_proxy)
    try:
        ca.execute_command("RQ.CONSISTENCY", 1, 1)  # A's side has one replica
        assert ca.set("cart", "from-a") is True
        assert cb.set("cart", "from-b") is True
        heal()
        # a read that hears every replica merges both sides and repairs them all
        cb.execute_command("RQ.CONSISTENCY", 3, 2)
        assert rq_get(cb, "cart")[1] == {"from-a", "from-b"}
        wait_for(lambda: all(e["siblings"] == 2 for e in inspect(ca, "cart")),
                 what="every replica to hold both siblings")
        assert rq_get(ca, "cart")[1] == {"from-a", "from-b"}
        # a plain GET answers the same sibling from both proxies
        assert ca.get("cart") == cb.get("cart")
    finally:
        for ra, rb in relays.values():
            ra.close()
            rb.close()


def lost_acknowledged_writes(replicas, make_proxy, mode: str) -> int:
    """Concurrent blind writes from two partitioned proxies and from many clients that
    saw nothing; returns how many acknowledged values are not readable afterwards."""
    ca, cb, heal, relays = partitioned_proxies(replicas, make_proxy, mode)
    try:
        ca.execute_command("RQ.CONSISTENCY", 1, 1)
        acknowledged = set()
        for i in range(5):
            for name, c in (("a", ca), ("b", cb)):
                value = f"{name}{i}"
                c.execute_command("RQ.SET", "key", "", value)
                acknowledged.add(value)
        heal()
        cb.execute_command("RQ.CONSISTENCY", 3, 3)
        survivors = rq_get(cb, "key")[1]
        return len(acknowledged - survivors)
    finally:
        for ra, rb in relays.values():
            ra.close()
            rb.close()


def test_lww_loses_concurrent_writes_causal_does_not(replicas, make_proxy):
    assert lost_acknowledged_writes(replicas, make_proxy, "causal") == 0
    for r in replicas:
        replicas.raw(r.id).flushall()
    lost = lost_acknowledged_writes(replicas, make_proxy, "lww")
    assert lost == 9  # ten acknowledged writes, one survivor


def test_lww_mode_keeps_one_value(replicas, make_proxy):
    c = make_proxy(replicas, mode="lww").client()
    c.set("k", "1")
    c.set("k", "2")
    c.execute_command("RQ.SET", "k", "", "3")
    assert c.get("k") == b"3"
    assert all(e["siblings"] == 1 for e in inspect(c, "k"))
    assert c.incr("n") == 1 and c.incr("n") == 2
    assert c.delete("k") == 1 and c.get("k") is None
    time.sleep(0)


def legacy_lww_object(*siblings) -> bytes:
    """An object as LWW mode's causal fallbacks used to leave it: concurrent siblings under
    a clock covering them. Each sibling: (actor, ts_us, tombstone, value)."""
    flat = []
    for actor, ts, _, _ in sorted(siblings):
        flat += [actor, ts]
    sibs = [[actor, ts, ts, tomb, 0, value] for actor, ts, tomb, value in sorted(siblings)]
    return msgpack.packb([1, flat, sibs], use_bin_type=False)


def test_lww_answers_from_the_newest_sibling_tombstones_included(replicas, make_proxy):
    """An old value and a newer concurrent tombstone: every read and read-modify-write
    answers from the tombstone, whether the replicas hold identical bytes or not."""
    c = make_proxy(replicas, mode="lww", extra=["--min-w", "1"]).client()
    now = time.time_ns() // 1000
    value, tomb = (b"a", now - 2_000_000, 0, b"5"), (b"b", now - 1_000_000, 1, b"")
    both = legacy_lww_object(value, tomb)
    for r in replicas:
        replicas.raw(r.id).set("same", both)
        replicas.raw(r.id).set("differ", legacy_lww_object(value) if r.id == "r1"
                               else legacy_lww_object(tomb))
    for key in ("same", "differ"):
        assert c.get(key) is None
        assert c.mget(key) == [None] and c.exists(key) == 0 and c.strlen(key) == 0
        assert rq_get(c, key)[1] == set()
    c.execute_command("RQ.CONSISTENCY", 2, 1)  # the read before the INCR hears all three
    assert c.incr("same") == 1
    assert c.get("same") == b"1"
    wait_for(lambda: all(e["siblings"] == 1 for e in inspect(c, "same")),
             what="every replica to keep one sibling")


def test_lww_fan_out_keeps_one_sibling_where_a_home_differs(replicas, make_proxy):
    """A read-modify-write reaches homes holding what its coordinator never read: they
    merge the new object by last-write-wins too, so each keeps one sibling."""
    c = make_proxy(replicas, mode="lww").client()
    now = time.time_ns() // 1000
    newest = (b"a", now - 1_000_000, 0, b"5")
    for i, r in enumerate(replicas):
        older = (b"x%d" % i, now - 2_000_000, 0, b"%d" % i)
        replicas.raw(r.id).set("k", legacy_lww_object(newest, older))
    c.execute_command("RQ.CONSISTENCY", 2, 3)  # every home acks; the coordinator reads one
    assert c.incr("k") == 6
    assert [e["siblings"] for e in inspect(c, "k")] == [1, 1, 1]
    assert c.get("k") == b"6"


def test_lww_objects_do_not_grow_with_proxy_restarts(replicas, make_proxy):
    """Each proxy process writes under its own actor; the stored object stays the same size
    (give or take a digit of the process id in the actor)."""
    sizes = []
    for _ in range(6):
        proxy = make_proxy(replicas, mode="lww")
        c = proxy.client()
        c.set("k", "vvvv")
        c.incr("n")
        for key in ("k", "n"):  # the third replica's copy may land after the reply
            wait_for(lambda c=c, key=key: len({e["bytes"] for e in inspect(c, key)}) == 1,
                     what="every replica to hold the write")
        entries = inspect(c, "k") + inspect(c, "n")
        assert all(e["clock"].count(b":") == 1 for e in entries)
        sizes.append(entries[0]["bytes"] + entries[-1]["bytes"])
        c.close()
        proxy.stop()
    assert max(sizes) - min(sizes) <= 4 and max(sizes) < 140
    causal = make_proxy(replicas).client()  # the object stays valid for causal mode
    causal.set("k", "next")
    assert rq_get(causal, "k")[1] == {"next"}


def test_rq_set_expiries_are_validated_as_set_validates_them(client, replicas):
    for option, number in (("EX", "9223372036854775807"), ("EX", "9223372036854775"),
                           ("PX", "9223372036854775807"), ("EX", "0"), ("PX", "-5")):
        with pytest.raises(redis.ResponseError, match="invalid expire time in 'rq.set'"):
            client.execute_command("RQ.SET", "k", "", "v", option, number)
    with pytest.raises(redis.ResponseError, match="not an integer"):
        client.execute_command("RQ.SET", "k", "", "v", "EX", "1.5")
    assert client.exists("k") == 0


def test_expiries_beyond_lua_exactness_are_kept_as_year_287396(client, replicas):
    """Redis accepts expiries up to int64 ms; the replicas keep at most 2**53 - 1."""
    latest = 2**53 - 1
    far = 2**63 - 1 - (time.time_ns() // 1_000_000) - 60_000
    client.execute_command("RQ.SET", "a", "", "v", "PX", str(far))
    client.set("b", "v", pxat=2**63 - 1)
    client.set("c", "v")
    client.pexpireat("c", 2**63 - 1)
    client.set("d", "v", exat=9223372036854775)
    for key in "abcd":
        assert client.pexpiretime(key) == latest
        assert client.get(key) == b"v"
        for r in replicas:
            wait_for(lambda r=r, key=key: expiries(replicas.raw(r.id).get(key)) == [latest],
                     what=f"{r.id} to hold the expiry of {key}")


def expiries(blob: bytes | None) -> list[int]:
    return [] if blob is None else [s[4] for s in msgpack.unpackb(blob, raw=True)[2]]


def test_lww_read_modify_write_commands_keep_one_sibling(replicas, make_proxy):
    c = make_proxy(replicas, mode="lww").client()
    assert c.incrbyfloat("f", "1.5") == 1.5 and c.incrbyfloat("f", "1") == 2.5
    assert c.append("s", "ab") == 2 and c.setrange("s", 1, "xy") == 3
    assert c.getset("s", "new") == b"axy" and c.set("s", "nx", nx=True) is None
    assert c.expire("s", 100) is True and 0 < c.ttl("s") <= 100 and c.persist("s") is True
    assert c.getex("s", px=5000) == b"new" and c.rename("s", "t") is True
    assert c.getdel("t") == b"new" and c.get("t") is None and c.incr("t") == 1
    for key in ("f", "s", "t"):
        assert all(e["siblings"] <= 1 for e in inspect(c, key))
    assert c.get("f") == b"2.5" and c.exists("s") == 0
