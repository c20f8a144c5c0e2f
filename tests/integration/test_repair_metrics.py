"""Read repair, staleness metrics and the freshness canary (issue 4)."""

from __future__ import annotations

import signal
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.harness import wait_for


def scrape(proxy) -> dict[tuple[str, tuple], float]:
    url = f"http://127.0.0.1:{proxy.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def metric(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def inspect(client, key):
    return [{k.decode(): v for k, v in zip(e[::2], e[1::2], strict=True)}
            for e in client.execute_command("RQ.INSPECT", key)]


def test_reads_repair_outdated_and_missing_replicas(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True, timeout=1.0)
    c = proxy.client()
    stale = replicas.raw("r2")
    outdated = [f"old:{i}" for i in range(10)]
    missing = [f"gone:{i}" for i in range(7)]
    for key in outdated + missing:
        c.set(key, "v1")
    dumps = {key: stale.dump(key) for key in outdated}
    for key in outdated:
        c.set(key, "v2")
    for key, dump in dumps.items():
        stale.restore(key, 0, dump, replace=True)
    stale.delete(*missing)
    before = scrape(proxy)

    for key in outdated:
        assert c.get(key) == b"v2"
    for key in missing:
        assert c.get(key) == b"v1"

    def repaired() -> bool:
        return all(len({replicas.raw(r.id).get(key) for r in replicas}) == 1
                   for key in outdated + missing)
    wait_for(repaired, timeout=10, what="read repair to make every replica byte-identical")

    after = scrape(proxy)
    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)
    assert delta("redquorum_read_repairs_total", replica="r2", reason="outdated") == len(outdated)
    assert delta("redquorum_read_repairs_total", replica="r2", reason="missing") == len(missing)
    assert delta("redquorum_read_repairs_total", replica="r1", reason="outdated") == 0
    assert delta("redquorum_stale_reads_total") == len(outdated) + len(missing)
    # each outdated replica lacked exactly one version; missing ones lacked the only one
    assert delta("redquorum_replica_staleness_versions_count", replica="r2") == 17
    assert delta("redquorum_replica_staleness_versions_sum", replica="r2") == 17
    assert delta("redquorum_replica_staleness_seconds_count", replica="r2") == 17
    assert delta("redquorum_replica_staleness_seconds_sum", replica="r2") > 0
    # a read of healthy keys repairs nothing
    c.get(outdated[0])
    time.sleep(0.3)
    assert metric(scrape(proxy), "redquorum_stale_reads_total") == metric(after, "redquorum_stale_reads_total")


def test_late_replies_are_repaired_too(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True, timeout=3.0)
    c = proxy.client()
    c.set("k", "v1")
    homes = [e["id"].decode() for e in inspect(c, "k")]
    slow = homes[2]
    replicas.raw(slow).delete("k")
    replicas.by_id(slow).signal(signal.SIGSTOP)
    try:
        assert c.get("k") == b"v1"  # answered by the other two, without waiting
    finally:
        time.sleep(0.3)
        replicas.by_id(slow).signal(signal.SIGCONT)
    wait_for(lambda: replicas.raw(slow).get("k") == replicas.raw(homes[0]).get("k"),
             what="the late replica to be repaired")
    assert metric(scrape(proxy), "redquorum_read_repairs_total", replica=slow, reason="missing") == 1


def test_canary_lag_follows_a_paused_replica(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True, timeout=0.3, extra=["--heartbeat-interval", "0.2"])
    c = proxy.client()

    def lag(replica: str) -> float:
        return metric(scrape(proxy), "redquorum_replica_lag_seconds", replica=replica)

    wait_for(lambda: all(lag(r.id) < 1.0 for r in replicas), what="all replicas fresh")
    replicas.by_id("r3").signal(signal.SIGSTOP)
    try:
        wait_for(lambda: lag("r3") > 2.0, timeout=10, what="r3's lag to grow")
        first = lag("r3")
        time.sleep(1.0)
        assert lag("r3") > first + 0.5  # still growing, second by second
        assert lag("r1") < 1.0 and lag("r2") < 1.0
        assert float(c.info("redquorum")["replica_lag_seconds_r3"]) > 2.0
        assert metric(scrape(proxy), "redquorum_replica_up", replica="r3") == 0
    finally:
        replicas.by_id("r3").signal(signal.SIGCONT)
    wait_for(lambda: lag("r3") < 1.0, timeout=10, what="r3's lag to fall back")


def test_request_and_build_metrics(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True)
    c = proxy.client()
    c.set("a", "1")
    c.get("a")
    c.get("b")
    try:
        c.execute_command("GET")
    except Exception:
        pass
    samples = scrape(proxy)
    assert metric(samples, "redquorum_requests_total", command="set", result="ok") >= 1
    assert metric(samples, "redquorum_requests_total", command="get", result="ok") >= 2
    assert metric(samples, "redquorum_requests_total", command="get", result="error") >= 1
    assert metric(samples, "redquorum_request_duration_seconds_count", command="get") >= 3
    assert metric(samples, "redquorum_build_info", version="0.1.0", n="3", w="2", r="2", mode="causal") == 1
    assert all(metric(samples, "redquorum_replica_up", replica=r.id) == 1 for r in replicas)
    assert metric(samples, "redquorum_client_connections") >= 1
    assert metric(samples, "redquorum_replica_request_duration_seconds_count", replica="r1") > 0
    names = {name for name, _ in samples}
    # keys never become labels (command names such as "keys" are label values, at zero)
    assert not any("key" in dict(labels) or {"a", "b"} & set(dict(labels).values())
                   for _, labels in samples)
    assert "redquorum_siblings_count" in names


def test_hinted_handoff_brings_a_returning_replica_up_to_date(replicas, make_proxy):
    """Writes that miss a dead replica leave hints; once it is back, the hints are
    replayed (without any read of those keys) and its bytes equal the others'."""
    proxy = make_proxy(replicas, metrics=True, timeout=0.3)
    c = proxy.client()
    victim = replicas.by_id("r3")
    victim.kill()
    keys = [f"h:{i}" for i in range(40)]
    for key in keys:
        assert c.set(key, key.upper())
    assert c.incr("h:counter") == 1
    wait_for(lambda: metric(scrape(proxy), "redquorum_hints_pending", replica="r3") >= len(keys),
             what="hints for the dead replica")
    victim.start()
    wait_for(victim.ready, what="r3 to restart")

    def home() -> bool:
        raw = replicas.raw("r3")
        return all(raw.get(k) == replicas.raw("r1").get(k) for k in keys + ["h:counter"])
    wait_for(home, timeout=15, what="the hints to be replayed into r3")
    samples = scrape(proxy)
    assert metric(samples, "redquorum_hints_replayed_total", replica="r3") >= len(keys)
    wait_for(lambda: metric(scrape(proxy), "redquorum_hints_pending", replica="r3") == 0,
             what="no hints left")
    # hints never show to clients
    assert not [k for k in c.keys("*") if k.startswith(b"__rq:")]
