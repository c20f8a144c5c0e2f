"""Hints cannot grow for ever: past the hint window a down replica gets no more hints and
the ones kept for it are dropped (anti-entropy catches it up when it returns)."""

from __future__ import annotations

import time

from tests.harness import wait_for
from tests.integration.test_repair_metrics import metric, scrape


def held_for(replicas, target: str) -> int:
    return sum(replicas.raw(r.id).hlen(f"__rq:hints:{target}") for r in replicas if r.id != target)


def test_hints_for_a_replica_down_past_the_window_are_dropped_and_counted(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True, extra=["--hint-window", "2"])
    c = proxy.client()
    replicas.by_id("r3").kill()
    wait_for(lambda: c.info("redquorum")["replicas_up"] == 2, what="the proxy to see r3 down")
    for i in range(20):
        c.set(f"early:{i}", i)
    assert held_for(replicas, "r3") >= 20
    assert metric(scrape(proxy), "redquorum_hints_stored_total", replica="r3") >= 20
    time.sleep(2.5)  # r3 has now been down longer than the window
    for i in range(20):
        c.set(f"late:{i}", i)
    wait_for(lambda: held_for(replicas, "r3") == 0, timeout=5, what="the hints for r3 to be dropped")
    dropped = metric(scrape(proxy), "redquorum_hints_dropped_total", replica="r3")
    assert dropped >= 40  # the 20 kept (deleted) and the 20 never stored
    assert metric(scrape(proxy), "redquorum_hints_dropped_total", replica="r1") == 0
    # the writes themselves were acknowledged by the two homes that are up
    assert c.mget([f"late:{i}" for i in range(20)]) == [b"%d" % i for i in range(20)]
