"""Probabilistically Bounded Staleness on a live proxy over real replicas: the estimate it
exports from its sampled round trips, and ``redquorum pbs --live`` reading it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.harness import ROOT, wait_for

# -- a live proxy --------------------------------------------------------------------------------------

def scrape_pbs(proxy) -> dict[str, dict[str, float]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5).read().decode()
    found: dict[str, dict[str, float]] = {"p": {}, "visibility": {}, "round_trips": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "redquorum_pbs_consistency_probability":
                found["p"][labels["t_ms"]] = sample.value
            elif sample.name == "redquorum_pbs_t_visibility_seconds":
                found["visibility"][labels["quantile"]] = sample.value
            elif sample.name == "redquorum_pbs_round_trip_seconds":
                key = f"{labels['replica']}/{labels['op']}/{labels['quantile']}"
                found["round_trips"][key] = sample.value
    return found


def drive(proxy, count: int) -> None:
    client = proxy.client()
    try:
        for i in range(count):
            client.set(f"pbs:{i}", b"x" * 10)
            assert client.get(f"pbs:{i}") == b"x" * 10
    finally:
        client.close()


def test_live_proxy_exports_its_pbs_estimate(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True, timeout=1.0, r=1, w=1,
                       extra=["--pbs-interval", "0.3", "--pbs-t-ms", "0,0.5,1000"])
    drive(proxy, 400)
    found = wait_for(lambda: (lambda f: f if f["p"] and f["visibility"] else None)(scrape_pbs(proxy)),
                     timeout=20, what="the PBS gauges")
    p = found["p"]
    assert set(p) == {"0", "0.5", "1000"}
    assert 0 <= p["0"] <= p["0.5"] <= p["1000"] <= 1
    # No round trip outlasts the replica timeout (1 s): a second after commit every read sees it.
    assert p["1000"] == 1.0
    visibility = found["visibility"]
    assert set(visibility) == {"0.5", "0.99", "0.999"}
    assert 0 <= visibility["0.5"] <= visibility["0.99"] <= visibility["0.999"] <= 1.0
    for replica in ("r1", "r2", "r3"):
        for op in ("read", "write"):
            low, median, high = (found["round_trips"][f"{replica}/{op}/{q}"] for q in ("0", "0.5", "1"))
            assert 0 < low <= median <= high <= 2.0

    done = subprocess.run([sys.executable, "-m", "redquorum.cli", "pbs", "--live", "--metrics-url",
                           f"http://127.0.0.1:{proxy.metrics_port}/metrics", "--t", "0,1000",
                           "--seed", "1", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["n"], report["r"], report["w"]) == (3, 1, 1)
    assert report["t_ms"] == [0.0, 1000.0] and report["p_consistent"][1] == 1.0
    assert 0 <= report["p_consistent"][0] <= 1
    assert 0 <= report["quantiles_ms"]["0.99"] <= report["quantiles_ms"]["0.999"] <= 1000
    assert set(report["proxy_estimate"]["p_consistent"]) == {"0", "0.5", "1000"}


def test_live_majority_quorums_are_consistent_at_commit(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True, timeout=1.0, extra=["--pbs-interval", "0.3"])
    drive(proxy, 300)
    found = wait_for(lambda: (lambda f: f if f["p"] else None)(scrape_pbs(proxy)),
                     timeout=20, what="the PBS gauges")
    assert found["p"] == {"0": 1.0, "1": 1.0, "5": 1.0, "10": 1.0, "100": 1.0}
    assert found["visibility"] == {"0.5": 0.0, "0.99": 0.0, "0.999": 0.0}
