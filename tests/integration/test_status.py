"""``redquorum status`` over real replicas and a real proxy's metrics endpoint."""

from __future__ import annotations

import json
import subprocess
import sys

from redquorum.replication.ring import Ring

from tests.harness import ROOT, start_replicas, wait_for


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redquorum.cli", "status", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def replica_flags(replicas) -> list[str]:
    return [f"--replica={r.id}={r.address}" for r in replicas]


def rows(table: str) -> dict[str, list[str]]:
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["ID", "ADDRESS", "STATE"]
    found = {}
    for line in lines[1:]:
        if not line.strip():
            break
        cells = line.split()
        found[cells[0]] = cells
    return found


def test_all_up_lists_every_replica_with_its_keys(replicas, proxy):
    client = proxy.client()
    for i in range(40):
        client.set(f"user:{i}", i)
    done = status(*replica_flags(replicas))
    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    assert set(table) == {"r1", "r2", "r3"}
    for rep in replicas:
        cells = table[rep.id]
        assert cells[1:4] == [rep.address, "up", "40"], cells  # heartbeats and hints not counted
        assert cells[5] == "100%"  # n = 3 of 3: a home of every key
    assert "n=3 w=2 r=2 mode=causal (w + r > n" in done.stdout
    assert "quorum possible for all keys" in done.stdout
    assert "LAG" not in done.stdout  # no metrics endpoint given


def test_a_down_replica_with_hints_waiting_and_the_proxy_metrics(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True)
    client = proxy.client()
    replicas.by_id("r3").kill()
    for i in range(20):
        client.set(f"k{i}", i)
    held = sum(replicas.raw(r).hlen("__rq:hints:r3") for r in ("r1", "r2"))
    assert held >= 20
    done = status(*replica_flags(replicas), "--metrics-url", f"127.0.0.1:{proxy.metrics_port}")
    assert done.returncode == 0, done.stdout + done.stderr  # 2 of 3 homes up: w and r still met
    table = rows(done.stdout)
    assert table["r3"][2] == "down"
    assert "r3: Connection refused" in done.stdout
    assert "quorum possible for all keys" in done.stdout

    def report() -> dict:
        done = status(*replica_flags(replicas), "--json", "--metrics-url",
                      f"http://127.0.0.1:{proxy.metrics_port}/metrics")
        return json.loads(done.stdout)

    first = report()
    by_id = {r["id"]: r for r in first["replicas"]}
    assert [by_id[i]["up"] for i in ("r1", "r2", "r3")] == [True, True, False]
    assert by_id["r3"]["hints_pending"] >= held  # the canary's heartbeat may add one more
    assert by_id["r1"]["hints_pending"] == 0
    assert first["proxies"][0]["up"] is True

    def caught_up() -> bool:
        """The canary's heartbeats reach r1, not r3, and the proxy has counted r3's
        hints (it does once a second), so their age shows."""
        r1, _, r3 = report()["replicas"]
        return r1["lag_seconds"] < 1.5 < r3["lag_seconds"] and r3["hints_oldest_seconds"] > 0

    wait_for(caught_up, timeout=20, interval=0.5, what="r3's lag and hint age in the proxy's metrics")


def test_quorum_lost_exits_non_zero(replicas):
    replicas.by_id("r2").kill()
    replicas.by_id("r3").kill()
    done = status(*replica_flags(replicas))
    assert done.returncode == 1
    assert "QUORUM LOST: reads fail for 100% and writes for 100% of the keys" in done.stdout
    # with w = r = 1 one home per key is enough
    assert status(*replica_flags(replicas), "-w", "1", "-r", "1").returncode == 0


def test_partitions_without_quorum_follow_the_ring(tmp_path):
    replicas = start_replicas(5, tmp_path / "replicas")
    try:
        dead = {"r2", "r4"}
        for ident in dead:
            replicas.by_id(ident).kill()
        ring = Ring(tuple(r.id for r in replicas), 3)
        lost = sum(1 for homes in ring.partition_homes() if len(set(homes) - dead) < 2)
        assert 0 < lost < len(ring.partition_homes())
        config = tmp_path / "redquorum.toml"
        config.write_text("[quorum]\nn = 3\nw = 2\nr = 2\nsloppy_quorum = false\n" + "".join(
            f'[[replicas]]\nid = "{r.id}"\naddress = "{r.address}"\n' for r in replicas))
        done = status("--config", str(config), "--json")
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        assert report["up"] == 3 and report["quorum_possible"] is False
        assert report["read_unavailable_partitions"] == report["write_unavailable_partitions"] == lost
        assert status("--config", str(config), "-w", "1", "-r", "1").returncode == 0
        # with a sloppy quorum the three nodes up stand in for the homes that are down
        sloppy = status("--config", str(config), "--sloppy-quorum", "yes", "--json")
        assert sloppy.returncode == 0, sloppy.stderr
        assert json.loads(sloppy.stdout)["write_unavailable_partitions"] == 0
        assert status("--config", str(config), "--sloppy-quorum", "yes", "-w", "3",
                      "-r", "3").returncode == 0
        assert status("--config", str(config), "--sloppy-quorum", "yes", "-n", "4", "-w", "4",
                      "-r", "1").returncode == 1
    finally:
        replicas.stop()


def test_configuration_errors_exit_2(replicas):
    done = status(*replica_flags(replicas), "-w", "4")
    assert done.returncode == 2
    assert "w=4 is outside 1..n" in done.stderr
    assert status("--metrics-url", "nowhere", *replica_flags(replicas)).returncode == 2


def test_a_large_keyspace_is_counted_without_a_scan(replicas, proxy, monkeypatch):
    """Above EXACT_KEYS_LIMIT only the hint sets are subtracted from DBSIZE (no SCAN over
    the whole keyspace), and the count says it is approximate."""
    from redquorum import status as status_module
    from redquorum.config import Replica, build

    client = proxy.client()
    for i in range(30):
        client.set(f"big:{i}", i)
    replicas.raw("r1").hset("__rq:hints:r2", "big:0", "")
    config = build({}, [Replica(r.id, r.host, r.port) for r in replicas])
    monkeypatch.setattr(status_module, "EXACT_KEYS_LIMIT", 10)
    found = status_module.collect(config, [])
    r1 = next(r for r in found.replicas if r.id == "r1")
    assert r1.keys_exact is False
    heartbeats = len(replicas.raw("r1").keys("__rq:hb:*"))
    assert r1.keys == 30 + heartbeats  # hints, actor and secret keys are left out, heartbeats not
    assert "~" in status_module.render_table(found)
