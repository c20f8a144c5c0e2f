"""Anti-entropy: replicas converge with no client reads, at a cost that follows the divergence.

Real redis-server replicas; divergence is made the way it happens (a replica restored from
older files, a FLUSHALL run on one replica, writes that reached one replica only) and
repaired by the proxy's background rounds or by ``redquorum repair``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from functools import partial

import pytest
import redis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redquorum.config import Replica, build
from redquorum.replication import clock
from redquorum.server.repair import run_round

from tests.harness import ROOT, digest_entry, wait_for

pytestmark = pytest.mark.slow  # real processes under load, several seconds

GRACE_MS = 3_600_000


# -- digests, read back and recomputed ---------------------------------------------------

def stored_digests(raw) -> tuple[dict, dict, dict]:
    """(roots, segments, entries) of the replica's complete digest generation: roots and
    segment digests as its functions answer them (rq_aae_roots, rq_aae_segments), entries
    from its partition hashes (char(s) + key -> entry)."""
    gen = raw.hget("__rq:aae:state", "gen")
    assert gen is not None, "the replica has no complete digests"
    reply = raw.fcall("rq_aae_roots", 0, 0, 4096)
    assert reply[0] == 1, "the replica reports incomplete digests"
    roots = {int(p): root.decode() for p, root in zip(reply[1][::2], reply[1][1::2], strict=True)}
    segments: dict[int, dict[int, str]] = {}
    entries: dict[tuple[int, int], dict[bytes, str]] = {}
    for name in raw.scan_iter(match=f"__rq:aae:{gen.decode()}:p:*", count=1000):
        p = int(name.decode().rsplit(":", 1)[1])
        for field, value in raw.hgetall(name).items():
            if field[0] < 64:
                entries.setdefault((p, field[0]), {})[field[1:]] = value.decode()
    for p in set(roots) | {p for p, _ in entries}:
        flat = raw.fcall("rq_aae_segments", 0, p)
        if flat:
            segments[p] = {int(s): d.decode() for s, d in zip(flat[::2], flat[1::2], strict=True)}
    return roots, segments, entries


def recomputed_digests(raw) -> tuple[dict, dict, dict]:
    """The same three maps computed in Python from the replica's data."""
    roots: dict[int, int] = {}
    segments: dict[int, dict[int, int]] = {}
    entries: dict[tuple[int, int], dict[bytes, str]] = {}
    for key in raw.scan_iter(count=1000, _type="string"):
        if key.startswith(b"__rq:aae:"):
            continue
        blob = raw.get(key)
        if blob is None or not blob.startswith(b"\x93\x01"):  # objects only, not the actor
            continue
        crc = zlib.crc32(key)
        p, s = crc & 4095, (crc >> 12) & 63
        entry = digest_entry(key, blob).decode()
        entries.setdefault((p, s), {})[key] = entry
        segments.setdefault(p, {})[s] = segments.get(p, {}).get(s, 0) ^ int(entry, 16)
        roots[p] = roots.get(p, 0) ^ int(entry, 16)
    hexed_segments = {p: {s: f"{d:012x}" for s, d in segs.items() if d}
                      for p, segs in segments.items()}
    return ({p: f"{d:012x}" for p, d in roots.items() if d},
            {p: segs for p, segs in hexed_segments.items() if segs}, entries)


def roots_of(raw) -> dict:
    reply = raw.fcall("rq_aae_roots", 0, 0, 4096)
    return {} if reply[0] != 1 else dict(zip(reply[1][::2], reply[1][1::2], strict=True))


def converged(replicas, keys) -> bool:
    raws = [replicas.raw(r.id) for r in replicas]
    try:
        first = [raws[0].get(k) for k in keys]
        if any(b is None for b in first):
            return False
        if any([raw.get(k) for k in keys] != first for raw in raws[1:]):
            return False
        return all(roots_of(raw) == roots_of(raws[0]) for raw in raws[1:])
    finally:
        for raw in raws:
            raw.close()


def lookups(raw) -> tuple[int, int]:
    """Keyspace lookups the replica served, its functions' included: (objects read, digest
    reads). Every command that can visit a key counts."""
    stats = raw.info("commandstats")

    def calls(*names: str) -> int:
        return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in names)
    return (calls("get", "mget", "scan", "keys", "exists", "type", "randomkey"),
            calls("hget", "hgetall", "hmget", "hscan", "smembers", "sscan"))


def info_field(client, name: str):
    return client.info("redquorum")[name]


def repair_cli(replicas, *extra: str) -> tuple[dict, str]:
    args = [sys.executable, "-m", "redquorum.cli", "repair", "--json"]
    for r in replicas:
        args += ["--replica", f"{r.id}={r.address}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDQUORUM_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(args + list(extra), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def diverge_on(raw, keys, actor: bytes = b"r1") -> None:
    """Writes that reached this replica only: coordinated there, never fanned out."""
    raw.function_load((ROOT / "replicas" / "redquorum.lua").read_text(), replace=True)
    now = time.time_ns() // 1000
    for i, key in enumerate(keys):
        raw.fcall("rq_set", 1, key, actor, now + i, GRACE_MS, 100, b"only-here-" + key, 0)


AE_FAST = ["--antientropy-interval", "0.3", "--heartbeat-interval", "3600"]


# -- tests ---------------------------------------------------------------------------------

def test_wiped_replica_is_restored_without_reads(replicas, make_proxy):
    proxy = make_proxy(replicas, extra=AE_FAST)
    client = proxy.client()
    keys = [f"wipe:{i}".encode() for i in range(400)]
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.set(k, b"v-" + k)
    pipe.execute()
    r3 = replicas.raw("r3")
    r3.flushall()
    wait_for(lambda: converged(replicas, keys), timeout=60, what="r3 to be refilled")
    assert r3.dbsize() > len(keys)
    assert stored_digests(r3) == recomputed_digests(r3)
    assert stored_digests(r3)[0] == stored_digests(replicas.raw("r1"))[0]
    assert int(info_field(client, "antientropy_keys_repaired")) >= len(keys)
    assert info_field(client, "antientropy_last_round")["state"] in ("done", "running")


def test_replica_restored_from_an_older_snapshot_converges(replicas, make_proxy, tmp_path):
    proxy = make_proxy(replicas, extra=AE_FAST)
    client = proxy.client()
    old_keys = [f"snap:old:{i}".encode() for i in range(200)]
    for k in old_keys:
        client.set(k, b"first")
    r3 = replicas.by_id("r3")
    wait_for(lambda: all(replicas.raw("r3").get(k) for k in old_keys), what="r3 to hold the first batch")
    r3.stop()
    snapshot = tmp_path / "r3-snapshot"
    shutil.copytree(r3.dir, snapshot)
    r3.start()
    wait_for(r3.ready, what="r3 to restart")
    wait_for(lambda: info_field(client, "replicas_up") == 3, what="the proxy to see r3 again")
    new_keys = [f"snap:new:{i}".encode() for i in range(200)]
    for k in new_keys:
        client.set(k, b"second")
    for k in old_keys[:50]:
        client.set(k, b"overwritten")
    for k in old_keys[50:100]:
        client.delete(k)
    wait_for(lambda: replicas.raw("r3").get(new_keys[-1]) is not None, what="r3 to take the writes")
    r3.stop()
    for ident in ("r1", "r2"):  # anti-entropy alone must bring r3 back
        replicas.raw(ident).delete("__rq:hints:r3")
    shutil.rmtree(r3.dir)
    shutil.copytree(snapshot, r3.dir)
    r3.start()
    wait_for(r3.ready, what="r3 to restart from the old files")
    raw3 = replicas.raw("r3")
    assert raw3.get(new_keys[0]) is None  # really the old data
    wait_for(lambda: converged(replicas, old_keys + new_keys), timeout=60,
             what="the restored replica to converge")
    assert stored_digests(raw3) == recomputed_digests(raw3)
    for k in old_keys[50:100]:
        _, sibs = clock.decode(raw3.get(k)).clock, clock.decode(raw3.get(k)).siblings
        assert all(s.tombstone for s in sibs)
    assert client.get(old_keys[0]) == b"overwritten" and client.get(old_keys[60]) is None


def test_cost_follows_divergence(replicas, make_proxy):
    """20,000 keys, 20 of them diverged on one replica: a round reads the digests and about
    20 segments' keys, not 20,000 keys."""
    proxy = make_proxy(replicas, extra=["--antientropy-enabled", "false",
                                        "--heartbeat-interval", "3600"])
    client = proxy.client()
    total = 20_000
    for start in range(0, total, 2000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 2000):
            pipe.set(f"cost:{i}", b"x")
        pipe.execute()
    proxy.stop()
    raws = {r.id: replicas.raw(r.id) for r in replicas}
    diverged = [f"cost:{i}".encode() for i in range(0, total, total // 20)]
    diverge_on(raws["r1"], diverged)
    for raw in raws.values():
        raw.config_resetstat()
    report, progress = repair_cli(replicas)
    spent = {ident: lookups(raw) for ident, raw in raws.items()}
    print("lookups per replica:", spent, "report:", report)
    assert report["keys_diverged"] == 20
    assert report["keys_repaired"] == 40  # r2 and r3 each took the 20 writes
    assert report["keys_repaired_by_replica"] == {"r2": 20, "r3": 20}
    assert report["segments_diverged"] <= 20
    assert report["keys_compared"] < 200
    # a full comparison reads 20,000 objects per replica; this one about 3 per diverged key
    # (the round's read, the merge's and a digest refresh), the 4096 partition roots (one
    # field each, once per round), and for each of the 20 diverged partitions its segment
    # digests and keys (one call each) and the digests the repairs rewrite
    for objects, digests in spent.values():
        assert objects <= 20 * 4, spent
        assert digests <= 4096 + 20 * 8 + 10, spent
    assert "keys compared" in progress and "keys repaired 40" in progress
    assert converged(replicas, diverged)
    again, _ = repair_cli(replicas, "--dry-run")
    assert again["partitions_diverged"] == 0 and again["keys_diverged"] == 0


def test_dry_run_reports_divergence_and_writes_nothing(replicas):
    raws = {r.id: replicas.raw(r.id) for r in replicas}
    keys = [f"dry:{i}".encode() for i in range(5)]
    diverge_on(raws["r2"], keys, actor=b"r2")
    report, _ = repair_cli(replicas, "--dry-run")
    assert report["keys_diverged"] == 5 and report["keys_repaired"] == 0
    assert all(raws["r1"].get(k) is None for k in keys)
    only, _ = repair_cli(replicas, "--replica", "r3")  # as --replica-id r3
    assert only["keys_repaired_by_replica"] == {"r3": 5}
    assert all(raws["r1"].get(k) is None for k in keys) and all(raws["r3"].get(k) for k in keys)
    rest, _ = repair_cli(replicas)  # right after: the last run left no lease behind
    assert rest["partitions_leased_elsewhere"] == 0 and rest["keys_repaired_by_replica"] == {"r1": 5}
    assert not any(raw.keys("__rq:aae:lease:*") for raw in raws.values())


def test_repair_rebuild_sees_what_changed_behind_the_proxys_back(replicas):
    raws = {r.id: replicas.raw(r.id) for r in replicas}
    keys = [f"rebuild:{i}".encode() for i in range(30)]
    diverge_on(raws["r1"], keys)
    first, _ = repair_cli(replicas)
    assert first["keys_repaired"] == 60
    raws["r3"].delete(*keys[:7])  # behind the proxies' back: the digests still list them
    blind, _ = repair_cli(replicas, "--dry-run")
    assert blind["keys_diverged"] == 0
    seen, _ = repair_cli(replicas, "--rebuild")
    assert seen["keys_repaired_by_replica"] == {"r3": 7}
    assert all(raws["r3"].get(k) == raws["r1"].get(k) for k in keys)
    for raw in raws.values():
        assert stored_digests(raw) == recomputed_digests(raw)
        gen = raw.hget("__rq:aae:state", "gen").decode()
        assert gen == "2" and not raw.keys("__rq:aae:1:*")  # the old generation is gone


def test_two_proxies_neither_double_the_work_nor_corrupt_data(replicas, make_proxy):
    writer = make_proxy(replicas, extra=["--antientropy-enabled", "false"])
    base = [f"two:{i}".encode() for i in range(300)]
    with writer.client() as client:  # (a round meeting a write mid-fan-out would repair it)
        for k in base:
            client.set(k, b"base")
    writer.stop()
    wait_for(lambda: converged(replicas, base), what="the writes on every replica")
    keys = base[:50]
    diverge_on(replicas.raw("r1"), keys)
    proxies = [make_proxy(replicas, extra=["--antientropy-interval", "0.5", "--heartbeat-interval",
                                           "3600"]) for _ in range(2)]
    clients = [p.client() for p in proxies]
    wait_for(lambda: converged(replicas, base), timeout=60, what="the replicas to converge")
    time.sleep(1.5)  # a few more rounds on both proxies: nothing more to do
    repaired = [int(info_field(c, "antientropy_keys_repaired")) for c in clients]
    # 50 keys into r2 and r3, once each (a proxy's own heartbeat, written as the proxies
    # start, may be caught between its coordinator and the other homes: at most 2 more)
    assert 100 <= sum(repaired) <= 102, repaired
    for k in keys:
        assert clients[1].get(k) == b"only-here-" + k
    for r in replicas:
        assert stored_digests(replicas.raw(r.id)) == recomputed_digests(replicas.raw(r.id))


@pytest.mark.parametrize("mode", ["causal", "lww"])
def test_a_tombstone_never_resurrects_a_deleted_value(replicas, make_proxy, mode):
    writer = make_proxy(replicas, extra=["--antientropy-enabled", "false"], mode=mode)
    client = writer.client()
    keys = [f"tomb:{i}".encode() for i in range(30)]
    for k in keys:
        client.set(k, b"doomed")
    wait_for(lambda: all(replicas.raw("r3").get(k) for k in keys), what="r3 to hold the values")
    r3 = replicas.by_id("r3")
    r3.stop()
    for k in keys:
        assert client.delete(k) == 1
    client.close()
    writer.stop()
    for ident in ("r1", "r2"):  # no hints: anti-entropy alone must carry the tombstones
        replicas.raw(ident).delete("__rq:hints:r3")
    r3.start()
    wait_for(r3.ready, what="r3 to restart")
    raw3 = replicas.raw("r3")
    assert all(not clock.decode(raw3.get(k)).siblings[0].tombstone for k in keys)  # the old value
    proxy = make_proxy(replicas, extra=AE_FAST, mode=mode)
    client = proxy.client()

    def tombstoned() -> bool:
        return all(all(s.tombstone for s in clock.decode(raw3.get(k)).siblings) for k in keys)
    wait_for(tombstoned, timeout=60, what="the tombstones to reach r3")
    time.sleep(1.0)  # more rounds: the old value must not come back anywhere
    for r in replicas:
        raw = replicas.raw(r.id)
        for k in keys:
            assert all(s.tombstone for s in clock.decode(raw.get(k)).siblings)
    assert [client.get(k) for k in keys] == [None] * len(keys)


def test_a_delete_behind_the_proxys_back_is_caught_by_the_periodic_rebuild(replicas, make_proxy):
    proxy = make_proxy(replicas, extra=AE_FAST + ["--antientropy-rebuild-interval", "1"])
    client = proxy.client()
    keys = [f"behind:{i}".encode() for i in range(100)]
    for k in keys:
        client.set(k, b"kept")
    wait_for(lambda: converged(replicas, keys), what="the writes everywhere")
    raw2 = replicas.raw("r2")
    raw2.delete(*keys[:40])  # the digests still list them: only a rebuild can tell
    wait_for(lambda: converged(replicas, keys), timeout=60, what="the rebuild and a round to restore them")
    assert stored_digests(raw2) == recomputed_digests(raw2)


@pytest.mark.parametrize("lost", ["all digests", "the partition hashes"])
def test_a_replica_whose_digests_are_gone_is_rebuilt_at_once(replicas, make_proxy, lost):
    proxy = make_proxy(replicas, extra=AE_FAST, metrics=True)  # rebuilds otherwise hourly
    client = proxy.client()
    keys = [f"lost:{i}".encode() for i in range(200)]
    for k in keys:
        client.set(k, b"v")
    raw2 = replicas.raw("r2")
    wait_for(lambda: raw2.hget("__rq:aae:state", "gen") is not None, what="digests on r2")
    gen = raw2.hget("__rq:aae:state", "gen").decode()
    if lost == "all digests":
        raw2.delete(*raw2.keys("__rq:aae:*"))
    else:  # the state still names a complete generation: a spot check finds it empty
        raw2.delete(*raw2.keys(f"__rq:aae:{gen}:p:*"))

    def rebuilt() -> bool:
        state = raw2.hgetall("__rq:aae:state")
        return b"gen" in state and b"building" not in state and \
            stored_digests(raw2) == recomputed_digests(raw2)
    wait_for(rebuilt, timeout=30, what="r2's digests to be rebuilt")
    assert roots_of(raw2) == roots_of(replicas.raw("r1"))


def test_metrics_show_the_rounds(replicas, make_proxy):
    import urllib.request

    proxy = make_proxy(replicas, extra=AE_FAST, metrics=True)
    client = proxy.client()
    keys = [f"metric:{i}".encode() for i in range(20)]
    for k in keys:
        client.set(k, b"v")
    diverged_at = time.time()
    diverge_on(replicas.raw("r3"), keys[:5], actor=b"r3")

    def scrape() -> str:
        url = f"http://127.0.0.1:{proxy.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    wait_for(lambda: 'redquorum_antientropy_keys_repaired_total{replica="r1"} 5.0' in scrape(),
             timeout=30, what="the repairs in /metrics")
    text = scrape()
    assert 'redquorum_antientropy_keys_repaired_total{replica="r2"} 5.0' in text

    def sample(name: str) -> float:
        return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))
    assert sample("redquorum_antientropy_rounds_total") >= 1
    # the round that repaired the divergence ended after it was made, and before this read
    assert diverged_at <= sample("redquorum_antientropy_last_success_timestamp_seconds") <= time.time()
    assert "redquorum_antientropy_round_duration_seconds " in text
    assert "redquorum_antientropy_segments_diverged{" in text

    args = [sys.executable, "-m", "redquorum.cli", "status", "--metrics-url",
            f"127.0.0.1:{proxy.metrics_port}"] + [f"--replica={r.id}={r.address}" for r in replicas]
    done = subprocess.run(args + ["--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout)
    assert report["antientropy_last_success_seconds"] < 60
    assert [r["digests"] for r in report["replicas"]] == ["complete"] * 3
    table = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "last anti-entropy round: " in table and "r1 complete" in table


# -- random workloads with failures: digests equal, and equal to a recomputation ----------

OPS = st.lists(st.tuples(st.sampled_from(["set", "del", "flush", "del_behind"]), st.integers(0, 11),
                         st.integers(0, 2), st.sets(st.integers(0, 2), max_size=2)),
               min_size=1, max_size=40)


@pytest.fixture(scope="module")
def shared_replicas(tmp_path_factory):
    from tests.harness import start_replicas

    reps = start_replicas(3, tmp_path_factory.mktemp("aae-hypothesis"))
    yield reps
    reps.stop()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_digests_match_the_data_after_random_workloads_with_failures(shared_replicas, ops):
    reps = shared_replicas
    raws = [reps.raw(r.id) for r in reps]
    for raw in raws:
        raw.flushall()
        raw.function_load((ROOT / "replicas" / "redquorum.lua").read_text(), replace=True)
    now = time.time_ns() // 1000
    # A replica that lost its data writes under a new actor identity (an epoch), or it
    # would reuse dots the others hold for other values (docs: "replicas that lose data").
    epochs = [0, 0, 0]
    for step, (op, key_no, coordinator, dropped) in enumerate(ops):
        key = b"h:%d" % key_no
        coord = raws[coordinator]
        if op == "flush":  # a replica emptied behind the proxy's back
            coord.flushall()
            epochs[coordinator] += 1
            continue
        if op == "del_behind":  # one key deleted on one replica, the digests none the wiser
            coord.delete(key)
            continue
        actor = b"%s.%d" % (reps[coordinator].id.encode(), epochs[coordinator])
        if op == "set":
            reply = coord.fcall("rq_set", 1, key, actor, now + step, GRACE_MS, 100, b"v%d" % step, 0)
        else:
            reply = coord.fcall("rq_put", 1, key, actor, now + step, "*", GRACE_MS, 100, "del")
        if reply[0] is None:
            continue
        for i, raw in enumerate(raws):
            if i != coordinator and i not in dropped:  # the others the fan-out reached
                try:  # with the entry the coordinator computed, as the proxy passes it
                    raw.fcall("rq_replace", 1, key, GRACE_MS, reply[0], reply[2] or b"", reply[3],
                              reply[4] or b"")
                except redis.ResponseError as exc:
                    # the coordinator lost the key behind its back and minted a dot again:
                    # the fan-out is refused there (an error, never an ack); anti-entropy
                    # still has to make the replicas agree
                    assert "dot conflict" in str(exc)
    config = build({"n": 3}, [Replica(r.id, r.host, r.port) for r in reps])
    stats = trio.run(partial(run_round, config, rebuild=True))
    assert stats.errors == 0
    digests = [stored_digests(raw) for raw in raws]
    for raw, digest in zip(raws, digests, strict=True):
        assert digest == recomputed_digests(raw)
    assert digests[0] == digests[1] == digests[2]
    keys = sorted({k for raw in raws for k in raw.scan_iter(match="h:*")})
    assert [[raw.get(k) for k in keys] for raw in raws[1:]] == [[raws[0].get(k) for k in keys]] * 2
    for raw in raws:
        raw.close()


def test_a_fan_out_stores_the_coordinators_entry_and_refuses_a_malformed_one(replicas):
    """rq_set answers the new object's digest entry; rq_replace stores it as given on the
    other homes (no second sha1), and a malformed one is an error that stores nothing."""
    raws = [replicas.raw(r.id) for r in replicas]
    for raw in raws:
        raw.function_load((ROOT / "replicas" / "redquorum.lua").read_text(), replace=True)
    now = time.time_ns() // 1000
    blob, _, held, pxat, entry = raws[0].fcall("rq_set", 1, b"fan", b"r1", now, GRACE_MS, 100, b"v", 0)
    assert entry == digest_entry(b"fan", blob)
    with pytest.raises(redis.ResponseError, match="malformed digest entry"):
        raws[1].fcall("rq_replace", 1, b"fan", GRACE_MS, blob, held or b"", pxat, b"ABCDEF012345")
    assert raws[1].get(b"fan") is None
    for raw in raws[1:]:
        assert raw.fcall("rq_replace", 1, b"fan", GRACE_MS, blob, held or b"", pxat, entry) == 1
    for raw in raws:
        assert stored_digests(raw) == recomputed_digests(raw)
    assert roots_of(raws[0]) == roots_of(raws[1]) == roots_of(raws[2]) != {}


def test_roots_kept_in_memory_follow_later_writes_flushes_and_rebuilds(replicas):
    """A root, once summed for an exchange, is kept in the library's memory and updated by
    every write to its partition: every later change (a write, a delete, a FLUSHALL and
    writes after it, a rebuilt generation, the library loaded again) shows in the next
    roots asked for, equal to the XOR of the data's entries."""
    raw = replicas.raw("r1")
    raw.function_load((ROOT / "replicas" / "redquorum.lua").read_text(), replace=True)
    now = time.time_ns() // 1000

    def write(key: bytes, value: bytes) -> None:
        nonlocal now
        now += 1
        raw.fcall("rq_set", 1, key, b"r1", now, GRACE_MS, 100, value, 0)

    def same_as_the_data() -> None:
        roots = roots_of(raw)
        assert stored_digests(raw) == recomputed_digests(raw)
        assert {int(p): r.decode() for p, r in roots.items()} == recomputed_digests(raw)[0]

    keys = [f"derived:{i}".encode() for i in range(300)]
    for k in keys:
        write(k, b"first")
    before = roots_of(raw)
    same_as_the_data()
    write(keys[0], b"second")  # one partition's root changes, the others stay
    after = roots_of(raw)
    assert after != before and len(set(after.items()) ^ set(before.items())) == 2
    same_as_the_data()
    raw.fcall("rq_put", 1, keys[1], b"r1", now + 1, "*", GRACE_MS, 100, "del")
    same_as_the_data()

    raw.flushall()  # the state goes too: the first write starts generation 1 again
    for k in keys[:50]:
        write(k, b"after the flush")
    assert raw.hget("__rq:aae:state", "gen") == b"1"
    same_as_the_data()

    raw.delete(*keys[:10])  # behind the library's back: only a rebuild sees it
    assert raw.fcall("rq_aae_rebuild", 0, 0, -1, 1000)[0] in (b"building", b"built")
    while raw.fcall("rq_aae_rebuild", 0, 0, 0, 1000)[0] != b"idle":
        pass
    assert raw.hget("__rq:aae:state", "gen") == b"2"
    same_as_the_data()

    raw.function_load((ROOT / "replicas" / "redquorum.lua").read_text(), replace=True)
    write(keys[20], b"after a reload")
    same_as_the_data()


def test_a_proxy_loads_the_library_only_where_another_version_runs(replicas, make_proxy):
    """Loading the library again would drop the roots it keeps in memory: a proxy that
    connects to replicas already running its version leaves them as they are, and one that
    finds another version (here the file loaded by hand, without its digest) loads its own."""
    from redquorum.server.app import library_code

    raws = [replicas.raw(r.id) for r in replicas]
    raws[2].function_load(library_code().decode(), replace=True)  # the code, no digest in it
    proxy = make_proxy(replicas)
    proxy.client().set(b"k", b"v")
    digest = hashlib.sha1(library_code()).hexdigest().encode()
    assert [raw.fcall("rq_library", 0) for raw in raws] == [digest] * 3

    def loads(raw) -> int:
        stats = raw.info("commandstats").get("cmdstat_function|load", {})
        return stats.get("calls", 0)
    before = [loads(raw) for raw in raws]
    proxy.stop()
    again = make_proxy(replicas)
    assert again.client().get(b"k") == b"v"
    assert [loads(raw) for raw in raws] == before


def test_roots_are_summed_a_budget_at_a_time_after_a_reload(replicas):
    """After a restart (or another version of the library) every root is summed from its
    partition's entries once; one call sums at most its budget of entries, answers 0 (sit
    this round out) past it, and the next calls go on from there."""
    raw = replicas.raw("r1")
    raw.function_load((ROOT / "replicas" / "redquorum.lua").read_text(), replace=True)
    now = time.time_ns() // 1000
    for i in range(400):
        raw.fcall("rq_set", 1, f"budget:{i}".encode(), b"r1", now + i, GRACE_MS, 100, b"v", 0)
    expected = roots_of(raw)
    raw.function_load((ROOT / "replicas" / "redquorum.lua").read_text(), replace=True)  # roots gone
    answers = []
    while True:
        reply = raw.fcall("rq_aae_roots", 0, 0, 4096, 50)
        answers.append(reply[0])
        if reply[0] == 1:
            break
        assert len(answers) < 100, "the summing makes no progress"
    assert answers[0] == 0 and 400 // 50 <= len(answers) <= 400 // 50 + 2
    assert {p: r for p, r in zip(reply[1][::2], reply[1][1::2], strict=True)} == expected


def test_partition_hashes_of_the_older_layout_give_the_same_digests(replicas):
    """Partition hashes written by the older layout also hold segment sums (fields
    char(64 + s)) and the root (char(128)); they are not entries, so the roots and
    segment digests summed from such a hash are those of its entries alone."""
    raw = replicas.raw("r1")
    raw.function_load((ROOT / "replicas" / "redquorum.lua").read_text(), replace=True)
    now = time.time_ns() // 1000
    for i in range(200):
        raw.fcall("rq_set", 1, f"older:{i}".encode(), b"r1", now + i, GRACE_MS, 100, b"v", 0)
    gen = raw.hget("__rq:aae:state", "gen").decode()
    for name in raw.scan_iter(match=f"__rq:aae:{gen}:p:*", count=1000):
        raw.hset(name, mapping={b"\x40": b"0123456789ab", b"\x7f": b"ba9876543210",
                                b"\x80": b"fedcba987654"})
    raw.function_load((ROOT / "replicas" / "redquorum.lua").read_text(), replace=True)
    roots, segments, _ = recomputed_digests(raw)
    assert {int(p): r.decode() for p, r in roots_of(raw).items()} == roots
    assert stored_digests(raw)[1] == segments
