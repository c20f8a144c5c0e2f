"""Sloppy quorum over five replicas (n=3, w=2, r=2): when homes of a key are down, the
next live nodes of its walk take its writes and answer its reads, keep a hint for the home
they stand in for, and once the home is back hand the value home and drop their copy."""

from __future__ import annotations

import functools
import os
import signal
import time

import pytest
import redis
from redquorum.replication import clock
from redquorum.replication.ring import Ring

from tests.harness import start_replicas, wait_for
from tests.integration.test_operator_logs import JSON_LOG, events
from tests.integration.test_repair_metrics import inspect, metric, scrape


@pytest.fixture
def five(tmp_path):
    reps = start_replicas(5, tmp_path / "five")
    yield reps
    reps.stop()


def walk(replicas, key: bytes) -> tuple[str, ...]:
    return ring_of(tuple(r.id for r in replicas)).walk(key)


@functools.cache
def ring_of(ids: tuple[str, ...]) -> Ring:
    return Ring(ids, 3)


def kill(replicas, *ids: str) -> None:
    for ident in ids:
        replicas.by_id(ident).kill()  # SIGKILL on the process this test started


def restart(replicas, *ids: str) -> None:
    for ident in ids:
        replicas.by_id(ident).start()  # the same port and data directory
    for ident in ids:
        wait_for(replicas.by_id(ident).ready, what=f"{ident} to answer again")


def stored_value(replicas, ident: str, key: bytes) -> bytes | None:
    """The value a plain GET would answer from this one replica's object."""
    blob = replicas.raw(ident).get(key)
    if blob is None:
        return None
    best = clock.decode(blob).winner(0)
    return None if best is None else best.value


def hints_held(replicas, holder: str, target: str) -> int:
    return replicas.raw(holder).hlen(f"__rq:hints:{target}")


def hinted(replicas, holder: str, target: str, key: bytes) -> bool:
    """``holder`` keeps a hint of ``key`` for ``target``, with its creation time."""
    pipe = replicas.raw(holder).pipeline(transaction=True)  # one snapshot of both
    pipe.hexists(f"__rq:hints:{target}", key)
    pipe.zscore(f"__rq:hint-times:{target}", key)
    in_hash, since = pipe.execute()
    assert in_hash == (since is not None)
    return in_hash


def up_count(c) -> int:
    return c.info("redquorum")["replicas_up"]


def test_two_homes_down_the_fallbacks_take_the_key_and_hand_it_home(five, make_proxy):
    key = b"sloppy:user:1"
    order = walk(five, key)
    homes, fallbacks = order[:3], order[3:]
    proxy = make_proxy(five, n=3, w=2, r=2, metrics=True, extra=JSON_LOG)
    c = proxy.client()
    kill(five, homes[0], homes[1])
    wait_for(lambda: up_count(c) == 3, what="the proxy to see two homes down")
    # every partition still has two nodes of its walk up: no quorum is lost
    wait_for(lambda: len(events(proxy, "replica_down")) == 2, what="both replicas logged down")
    assert events(proxy, "quorum_lost") == []

    assert c.set(key, b"v1") is True
    assert c.get(key) == b"v1"
    entries = inspect(c, key)
    assert [e["id"].decode() for e in entries[:3]] == list(homes)
    assert [e["role"] for e in entries[:3]] == [b"home"] * 3
    held = [e for e in entries[3:] if e["role"] == b"fallback"]
    assert {e["id"].decode() for e in held} == set(fallbacks)
    assert all(e["siblings"] == 1 and e["reachable"] == 1 for e in held)
    # each fallback holds the hint for the home it stands in for, next to its copy
    assert hinted(five, fallbacks[0], homes[0], key)
    assert hinted(five, fallbacks[1], homes[1], key)

    restart(five, homes[0], homes[1])

    def handed_home() -> bool:
        return (all(stored_value(five, h, key) == b"v1" for h in homes)
                and not any(five.raw(f).exists(key) for f in fallbacks)
                and not any(hinted(five, f, h, key) for f in fallbacks for h in homes))
    wait_for(handed_home, timeout=30, what="the value on its homes and the fallback copies gone")
    assert [e["role"] for e in inspect(c, key)] == [b"home"] * 3
    assert c.get(key) == b"v1"


def test_without_sloppy_quorum_the_same_write_has_no_quorum(five, make_proxy):
    key = b"sloppy:user:1"
    homes = walk(five, key)[:3]
    proxy = make_proxy(five, n=3, w=2, r=2, extra=["--sloppy-quorum", "no", *JSON_LOG])
    c = proxy.client()
    kill(five, homes[0], homes[1])
    wait_for(lambda: up_count(c) == 3, what="the proxy to see two homes down")
    wait_for(lambda: events(proxy, "quorum_lost", op="write"), what="the write quorum lost line")
    with pytest.raises(redis.ResponseError, match="NOQUORUM"):
        c.set(key, b"v1")
    with pytest.raises(redis.ResponseError, match="NOQUORUM"):
        c.get(key)


def test_a_hint_replayed_after_a_newer_write_never_overwrites_it(five, make_proxy):
    key = b"sloppy:user:2"
    order = walk(five, key)
    homes, fallbacks = order[:3], order[3:]
    first = make_proxy(five, n=3, w=2, r=2)
    c = first.client()
    kill(five, homes[0], homes[1])
    wait_for(lambda: up_count(c) == 3, what="the proxy to see two homes down")
    assert c.set(key, b"old") is True
    assert hinted(five, fallbacks[0], homes[0], key)
    first.stop()  # nobody delivers the fallbacks' hints for now
    restart(five, homes[0], homes[1])
    # a proxy that knows only the three homes (with n=3 they hold every key) writes the
    # newer value; the fallbacks' hints are not its business. Proxies follow the cluster's
    # membership record (it names all five), so the homes' copy of it is set aside while
    # this proxy runs: it then sees a cluster of three of its own
    for h in homes:
        five.raw(h).delete("__rq:members")
    only_homes = make_proxy([five.by_id(h) for h in homes], n=3, w=3, r=2)
    assert only_homes.client().set(key, b"new") is True
    assert hinted(five, fallbacks[0], homes[0], key)  # the old hint is still pending
    only_homes.stop()
    for h in homes:  # the five-node record, which the fallbacks still hold, wins again
        five.raw(h).delete("__rq:members")

    second = make_proxy(five, n=3, w=2, r=2)
    wait_for(lambda: not any(hinted(five, f, h, key) for f in fallbacks for h in homes),
             timeout=30, what="the old hints to be delivered")
    assert second.client().get(key) == b"new"
    assert all(stored_value(five, h, key) == b"new" for h in homes)
    assert not any(five.raw(f).exists(key) for f in fallbacks)


def test_a_proxy_killed_while_delivering_fallback_hints_loses_none(five, make_proxy):
    keys = [f"bulk:{i}".encode() for i in range(15000)]
    down = ("r1", "r2")
    first = make_proxy(five, n=3, w=2, r=2)
    c = first.client()
    kill(five, *down)
    wait_for(lambda: up_count(c) == 3, what="the proxy to see r1 and r2 down")
    pipe = c.pipeline(transaction=False)
    for i, key in enumerate(keys):
        pipe.set(key, b"value-%d" % i)
    assert all(pipe.execute())
    holders = [five.raw(r.id) for r in five if r.id not in down]

    def pending() -> int:
        return sum(h.hlen(f"__rq:hints:{t}") for h in holders for t in down)
    total = pending()
    assert total > len(keys) / 2  # most keys have r1 or r2 among their homes

    restart(five, *down)
    wait_for(lambda: pending() < total, timeout=30, interval=0.001,
             what="the delivery of the hints to start")
    os.kill(first.process.pid, signal.SIGKILL)  # in the middle of the delivery
    first.process.wait()
    left = pending()
    assert left > 0, "the delivery finished before the proxy was killed: nothing was tested"

    second = make_proxy(five, n=3, w=2, r=2)
    wait_for(lambda: pending() == 0, timeout=60, what="every hint to be delivered")
    assert second.client().mget(keys) == [b"value-%d" % i for i in range(len(keys))]
    held = {r.id: dict(zip(keys, five.raw(r.id).mget(keys), strict=True)) for r in five}
    misplaced = []
    for i, key in enumerate(keys):
        order = walk(five, key)
        for ident in order[:3]:
            blob = held[ident][key]
            if blob is None or clock.decode(blob).winner(0).value != b"value-%d" % i:
                misplaced.append((key, ident, "missing at home"))
        for ident in order[3:]:
            if held[ident][key] is not None:
                misplaced.append((key, ident, "fallback copy left"))
    assert not misplaced, misplaced[:10]


def test_hint_ages_and_delivery_delays_are_measured(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True)
    c = proxy.client()
    down_at = time.monotonic()  # no hint for r3 is older than this
    replicas.by_id("r3").kill()
    wait_for(lambda: up_count(c) == 2, what="the proxy to see r3 down")
    for i in range(10):
        c.set(f"aged:{i}", i)
    wait_for(lambda: metric(scrape(proxy), "redquorum_hint_oldest_age_seconds", replica="r3") >= 2.0,
             timeout=15, what="the oldest hint for r3 to be two seconds old")
    samples = scrape(proxy)
    age = metric(samples, "redquorum_hint_oldest_age_seconds", replica="r3")
    assert age <= time.monotonic() - down_at + 0.5  # the hints' real age, not more
    assert metric(samples, "redquorum_hints_oldest_age_seconds", replica="r3") >= 2.0
    assert metric(samples, "redquorum_hint_oldest_age_seconds", replica="r1") == 0
    assert metric(samples, "redquorum_hint_delivery_delay_seconds_count", replica="r3") == 0

    restart(replicas, "r3")
    wait_for(lambda: metric(scrape(proxy), "redquorum_hint_delivery_delay_seconds_count",
                            replica="r3") >= 10, timeout=30, what="the hints for r3 to be delivered")
    samples = scrape(proxy)
    count = metric(samples, "redquorum_hint_delivery_delay_seconds_count", replica="r3")
    within_a_second = metric(samples, "redquorum_hint_delivery_delay_seconds_bucket",
                             replica="r3", le="1.0")
    # the ten hints were two seconds old before r3 came back (the canary's heartbeats may
    # add hints of their own, some left as r3 returned)
    assert count - within_a_second >= 10
    assert metric(samples, "redquorum_hint_delivery_delay_seconds_sum", replica="r3") >= 20
    wait_for(lambda: metric(scrape(proxy), "redquorum_hint_oldest_age_seconds", replica="r3") == 0,
             what="no hint pending for r3")


def test_keys_written_before_the_outage_read_back_through_fallbacks_that_hold_nothing(
        five, make_proxy):
    proxy = make_proxy(five, n=3, w=2, r=2)
    c = proxy.client()
    keys = [f"before:{i}" for i in range(200)]
    c.mset({key: key for key in keys})
    kill(five, "r1", "r2")
    wait_for(lambda: up_count(c) == 3, what="the proxy to see r1 and r2 down")
    # keys with both among their homes are read from two empty fallbacks and one home
    both = [k for k in keys if {"r1", "r2"} <= set(walk(five, k.encode())[:3])]
    assert both
    assert c.mget(keys) == [key.encode() for key in keys]
    assert all(c.get(key) == key.encode() for key in both)


def test_past_the_hint_window_fallback_copies_are_retired_into_the_remaining_home(
        five, make_proxy):
    key = b"sloppy:windowed"
    order = walk(five, key)
    homes, fallbacks = order[:3], order[3:]
    proxy = make_proxy(five, n=3, w=2, r=2, metrics=True, extra=["--hint-window", "2"])
    c = proxy.client()
    kill(five, homes[0], homes[1])
    wait_for(lambda: up_count(c) == 3, what="the proxy to see two homes down")
    assert c.set(key, b"v1") is True
    assert all(five.raw(f).exists(key) for f in fallbacks)

    def retired() -> bool:
        return not any(five.raw(f).exists(key) or hinted(five, f, h, key)
                       for f in fallbacks for h in homes)
    wait_for(retired, timeout=15, what="the fallback copies and their hints to go")
    assert stored_value(five, homes[2], key) == b"v1"
    assert c.get(key) == b"v1"
    samples = scrape(proxy)
    assert metric(samples, "redquorum_hints_dropped_total", replica=homes[0]) >= 1
    assert metric(samples, "redquorum_hints_dropped_total", replica=homes[1]) >= 1


def test_hints_left_without_a_creation_time_still_deliver(replicas, make_proxy):
    """Hints written as a plain HSET (before hints had creation times) are delivered and
    removed like the others; only their age is unknown."""
    proxy = make_proxy(replicas, metrics=True)
    c = proxy.client()
    assert c.set("legacy", "v") is True
    r1, r2 = replicas.raw("r1"), replicas.raw("r2")
    obj = r1.get("legacy")
    r2.flushall()  # an emptied replica...
    r1.hset("__rq:hints:r2", "legacy", obj)  # ...and an old-format hint for it
    wait_for(lambda: r2.get("legacy") == obj and not r1.hexists("__rq:hints:r2", "legacy"),
             timeout=15, what="the old-format hint to be delivered")
    # delivered, but with no creation time there is no delay to observe
    samples = scrape(proxy)
    assert samples[("redquorum_hint_delivery_delay_seconds_count", (("replica", "r2"),))] == 0


def test_a_hint_for_a_node_that_no_longer_holds_the_key_goes_to_its_homes(five, make_proxy):
    """A hint left before a membership change may name a node the key has since moved away
    from: its object is merged into the key's homes of now, the hint is dropped, and the
    node it named gets no stray copy."""
    key = b"moved:user:1"
    order = walk(five, key)
    homes, elsewhere = order[:3], order[3]
    proxy = make_proxy(five, n=3, w=3, r=2)
    assert proxy.client().set(key, b"v1") is True
    held = five.raw(homes[0]).get(key)
    five.raw(homes[1]).delete(key)  # a home that lacks the write the hint carries
    five.raw(homes[0]).execute_command(
        "FCALL", "rq_hint", 2, f"__rq:hints:{elsewhere}", f"__rq:hint-times:{elsewhere}", key, held)
    wait_for(lambda: not hinted(five, homes[0], elsewhere, key), timeout=30,
             what="the hint to be handled")
    assert not five.raw(elsewhere).exists(key)
    assert five.raw(homes[1]).get(key) == held
    assert proxy.client().get(key) == b"v1"


def test_a_fallback_that_stood_in_for_two_homes_drops_its_copy(five, make_proxy):
    """The first fallback stands in for the third home (v1), then, with the second home down
    too, for the second (v2, its copy now v2). The second home's hint goes first (the copy
    stays: the third home's is pending); the third home's hint carries v1, older than the
    copy. Once both are delivered the copy must be gone, not left behind with no hint that
    would ever take it away."""
    key = b"sloppy:twice"
    order = walk(five, key)
    homes, fallbacks = order[:3], order[3:]
    proxy = make_proxy(five, n=3, w=2, r=2)
    c = proxy.client()
    kill(five, homes[2])
    wait_for(lambda: up_count(c) == 4, what="the proxy to see the third home down")
    assert c.set(key, b"v1") is True
    assert hinted(five, fallbacks[0], homes[2], key)
    kill(five, homes[1])
    wait_for(lambda: up_count(c) == 3, what="the proxy to see the second home down")
    assert c.set(key, b"v2") is True
    assert hinted(five, fallbacks[0], homes[1], key)  # missing homes take fallbacks in order
    assert hinted(five, fallbacks[0], homes[2], key)
    assert stored_value(five, fallbacks[0], key) == b"v2"

    restart(five, homes[1])
    wait_for(lambda: not hinted(five, fallbacks[0], homes[1], key), timeout=30,
             what="the second home's hint delivered")
    assert five.raw(fallbacks[0]).exists(key)  # the third home's hint still needs it
    restart(five, homes[2])

    def handed_home() -> bool:
        return (all(stored_value(five, h, key) == b"v2" for h in homes)
                and not any(hinted(five, f, h, key) for f in fallbacks for h in homes)
                and not any(five.raw(f).exists(key) for f in fallbacks))
    wait_for(handed_home, timeout=30, what="v2 on every home and no fallback copy left")
    assert c.get(key) == b"v2"
