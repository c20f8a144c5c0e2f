"""Membership changes while serving: `redquorum join`/`leave` under a write load, the
record every proxy follows, and `redquorum ring`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import redis
from redquorum.replicas.launcher import LocalReplica, free_port, wait_ready_blocking
from redquorum.replication.ring import Ring
from redquorum.server.app import library_code

from tests.harness import ROOT, wait_for

ENV = {k: v for k, v in dict(os.environ, PYTHONPATH=str(ROOT)).items()
       if not k.startswith("REDQUORUM_")}


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    started = time.monotonic()
    try:
        return subprocess.run([sys.executable, "-m", "redquorum.cli", *args], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=timeout)
    finally:
        print(f"redquorum {args[0]}: {time.monotonic() - started:.1f}s")


def cluster_flags(replicas) -> list[str]:
    flags = []
    for r in replicas:
        flags += ["--replica", f"{r.id}={r.address}"]
    return flags


def start_replica(ident: str, base) -> LocalReplica:
    replica = LocalReplica(ident, free_port(), base / ident)
    replica.start()
    wait_ready_blocking([replica])
    return replica


def user_keys(replica: LocalReplica) -> set[bytes]:
    """Every key a redis-server holds, read directly, the proxies' own (__rq:) left out."""
    raw = redis.Redis(host=replica.host, port=replica.port, protocol=2, socket_timeout=10)
    try:
        return {k for k in raw.scan_iter(count=1000) if not k.startswith(b"__rq:")}
    finally:
        raw.close()


class Load:
    """Writes distinct keys through one proxy and reads acknowledged ones back through
    another, recording every read that missed an acknowledged write."""

    def __init__(self, writer: redis.Redis, reader: redis.Redis) -> None:
        self.writer = writer
        self.reader = reader
        self.acked: dict[bytes, bytes] = {}
        self.failed_writes = 0
        self.lost: list[tuple[bytes, bytes, bytes | None]] = []
        self.reads = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            key, value = b"key:%d" % i, b"value-%d" % i
            i += 1
            try:
                self.writer.set(key, value)
            except redis.RedisError:
                self.failed_writes += 1
                continue
            self.acked[key] = value
            if i % 4 == 0:  # an earlier acknowledged write, read through the other proxy
                old = b"key:%d" % (i // 2)
                if old in self.acked:
                    self.check(old)
            time.sleep(0.002)

    def check(self, key: bytes) -> None:
        self.reads += 1
        try:
            got = self.reader.get(key)
        except redis.RedisError as exc:
            self.lost.append((key, self.acked[key], str(exc).encode()))
            return
        if got != self.acked[key]:
            self.lost.append((key, self.acked[key], got))

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(10)


def test_join_two_then_leave_one_under_load(tmp_path, replicas, make_proxy):
    proxies = [make_proxy(replicas, n=3, w=2, r=2, timeout=2.0, metrics=i == 0) for i in range(2)]
    writer, reader = proxies[0].client(), proxies[1].client()
    members = list(replicas)
    extra: list[LocalReplica] = []
    try:
        with Load(writer, reader) as load:
            wait_for(lambda: len(load.acked) > 300, timeout=20, what="writes before the change")
            for ident in ("r4", "r5"):
                joining = start_replica(ident, tmp_path)
                extra.append(joining)
                before = dict(load.acked)
                done = cli("join", f"{ident}={joining.address}", *cluster_flags(replicas),
                           "--rate", "50000", "--json")
                assert done.returncode == 0, done.stderr
                steps = [json.loads(line) for line in done.stdout.splitlines()]
                assert steps[-1]["phase"] == "stable" and steps[-1]["step"] == "done"
                transfer = [s for s in steps if s["step"] == "transfer"]
                assert transfer and transfer[-1]["done"] == transfer[-1]["total"] > 0
                members.append(joining)
                # the keys written before it joined, of the partitions it gained, were copied
                # (by the transfer, or by the proxies' anti-entropy, which covers old and
                # new homes during the change)
                ring = Ring(tuple(r.id for r in members), 3)
                gained = {k for k in before if ident in ring.preference_list(k)}
                assert gained and gained <= user_keys(joining)
            left = cli("leave", "r2", *cluster_flags(replicas), "--rate", "50000")
            assert left.returncode == 0, left.stderr
            assert "stable" in left.stdout
            members = [r for r in members if r.id != "r2"]
            written = len(load.acked)
            wait_for(lambda: len(load.acked) > written + 100, timeout=20,
                     what="writes after the change")
        assert load.reads > 100
        assert load.lost == []
        acked = sorted(load.acked.items())
        for first in range(0, len(acked), 500):  # every acknowledged write, through both proxies
            chunk = acked[first:first + 500]
            expected = [value for _, value in chunk]
            assert writer.mget([key for key, _ in chunk]) == expected
            assert reader.mget([key for key, _ in chunk]) == expected
        final = Ring(tuple(r.id for r in members), 3)
        held = {r.id: user_keys(r) for r in [*replicas, *extra]}
        assert held["r2"] == set()  # the node that left dropped everything
        everything = set().union(*held.values())
        assert set(load.acked) <= everything
        for key in everything:
            homes = set(final.preference_list(key))
            holders = {ident for ident, keys in held.items() if key in keys}
            assert holders == homes, key
        with urllib.request.urlopen(f"http://127.0.0.1:{proxies[0].metrics_port}/metrics") as got:
            metrics = got.read().decode()
        up = re.findall(r'^redquorum_replica_up\{replica="([^"]+)"\} 1\.0$', metrics, re.M)
        assert sorted(up) == ["r1", "r3", "r4", "r5"]  # joined ones in, the one that left gone
        stale = [line for line in metrics.splitlines() if 'replica="r2"' in line
                 and not line.startswith("redquorum_pbs_")]  # PBS: until its next estimate
        assert stale == []
        ring = cli("ring", *cluster_flags(replicas), "--json")
        assert ring.returncode == 0, ring.stderr
        shown = json.loads(ring.stdout)
        assert (shown["phase"], [x["id"] for x in shown["nodes"]]) == \
            ("stable", ["r1", "r3", "r4", "r5"])
        assert sum(x["homes"] for x in shown["nodes"]) == 3 * shown["partitions"]
        assert shown["largest_over_fair"] <= 1.3
        status = json.loads(cli("status", *cluster_flags(replicas), "--json").stdout)
        assert [x["id"] for x in status["replicas"]] == ["r1", "r3", "r4", "r5"]
        assert status["quorum_possible"]
        assert status["membership"] == "version 13, stable"  # three changes of four phases
    finally:
        writer.close()
        reader.close()
        for replica in extra:
            replica.stop()


def test_a_proxy_configured_otherwise_places_keys_as_the_record_says(tmp_path, replicas, make_proxy):
    fourth = start_replica("r4", tmp_path)
    try:
        everyone = [*replicas, fourth]
        first = make_proxy(everyone, n=3)  # writes the record: four nodes
        wait_for(lambda: all(redis.Redis(host=r.host, port=r.port).exists("__rq:members")
                             for r in everyone), what="the membership record on every replica")
        first.stop()
        log = tmp_path / "late.log"
        late = make_proxy(replicas, n=3, log_path=log)  # told of three replicas only
        c = late.client()
        keys = [b"placed:%d" % i for i in range(300)]
        for key in keys:
            c.set(key, key)
        ring = Ring(("r1", "r2", "r3", "r4"), 3)
        held = {r.id: user_keys(r) for r in everyone}
        for key in keys:
            assert {i for i, ks in held.items() if key in ks} == set(ring.preference_list(key))
            assert c.get(key) == key
        info = c.info("redquorum")
        assert (info["n"], info["replicas"], info["membership_version"]) == (3, 4, 1)
        text = log.read_text()
        assert "differ from the cluster's membership" in text
        assert f"members not configured: r4={fourth.address}" in text
        c.close()
    finally:
        fourth.stop()


def test_the_record_on_a_replica_keeps_the_highest(replicas):
    raw = replicas.raw("r1")
    raw.function_load(library_code().decode(), replace=True)

    def put(version: int, record: bytes) -> list:
        return raw.fcall("rq_members_put", 1, "__rq:members", version, record)

    assert put(1, b"b") == [b"1", b"b"]
    assert put(1, b"a") == [b"1", b"b"]  # same version: the higher bytes stay
    assert put(1, b"c") == [b"1", b"c"]
    assert put(3, b"a") == [b"3", b"a"]  # a higher version wins whatever its bytes
    assert put(2, b"z") == [b"3", b"a"]


def cluster_with_keys(make_proxy, replicas, prefix: bytes, count: int):
    """A proxy over ``replicas`` (short link timeouts, so a change waits little for it),
    a client of it, and ``count`` keys written through it, each holding its own name."""
    client = make_proxy(replicas, n=3, timeout=2.0).client()
    keys = [b"%s:%d" % (prefix, i) for i in range(count)]
    for key in keys:
        client.set(key, key)
    return client, keys


def test_an_interrupted_join_resumes_from_the_recorded_phase(tmp_path, replicas, make_proxy):
    c, keys = cluster_with_keys(make_proxy, replicas, b"resume", 400)
    fourth = start_replica("r4", tmp_path)
    try:
        args = [sys.executable, "-m", "redquorum.cli", "join", f"r4={fourth.address}",
                *cluster_flags(replicas), "--json"]
        first = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        try:
            for line in first.stdout:  # stopped hard once reads have switched to the new ring
                if json.loads(line)["phase"] == "switched":
                    break
        finally:
            first.kill()
            first.wait()
        shown = json.loads(cli("ring", *cluster_flags(replicas), "--json").stdout)
        assert shown["phase"] == "switched"
        assert {x["id"]: x["state"] for x in shown["nodes"]}["r4"] == "joining"
        assert [c.get(key) for key in keys] == keys  # served meanwhile, from the new homes
        r1 = replicas.raw("r1")  # a proxy gone for a minute, and one gone for a day
        r1.hset("__rq:members:applied", mapping={"ghost": f"2 {time.time() - 60:.3f}",
                                                 "fossil": f"1 {time.time() - 86400:.3f}"})
        again = cli("join", f"r4={fourth.address}", *cluster_flags(replicas))
        assert again.returncode == 0, again.stderr
        assert "ignoring proxy ghost: not heard from for 6" in again.stderr
        assert not r1.hexists("__rq:members:applied", "fossil")  # forgotten
        assert r1.hexists("__rq:members:applied", "ghost")
        assert "[phase] version 4, cleanup" in again.stderr  # went on, did not start over
        assert "joining" not in again.stderr
        ring = Ring(("r1", "r2", "r3", "r4"), 3)
        held = {r.id: user_keys(r) for r in [*replicas, fourth]}
        for key in keys:
            assert {i for i, ks in held.items() if key in ks} == set(ring.preference_list(key))
        assert [c.get(key) for key in keys] == keys
        once_more = cli("join", f"r4={fourth.address}", *cluster_flags(replicas))
        assert once_more.returncode == 0  # a member already: nothing to do
    finally:
        c.close()
        fourth.stop()


def test_changes_that_cannot_be_made_are_refused(tmp_path, replicas, make_proxy):
    make_proxy(replicas, n=3)
    flags = cluster_flags(replicas)
    gone = cli("join", f"r9=127.0.0.1:{free_port()}", *flags)
    assert gone.returncode == 1 and "cannot reach r9" in gone.stderr
    too_few = cli("leave", "r1", *flags)
    assert too_few.returncode == 1 and "n=3 needs 3 nodes" in too_few.stderr
    unknown = cli("leave", "r7", *flags)
    assert unknown.returncode == 1 and "r7 is not a member" in unknown.stderr
    used = start_replica("r8", tmp_path)
    try:
        redis.Redis(host=used.host, port=used.port).set("left-over", "old")
        stale = cli("join", f"r8={used.address}", *flags)
        assert stale.returncode == 1 and "holds keys" in stale.stderr
    finally:
        used.stop()
    bad = cli("join", "nonsense", *flags)
    assert bad.returncode == 2 and "ID=HOST:PORT" in bad.stderr
    shown = json.loads(cli("ring", *flags, "--json").stdout)
    assert (shown["version"], shown["phase"]) == (1, "stable")  # nothing was written


def test_dropping_partitions_keeps_the_digests_right(replicas, proxy):
    c = proxy.client()
    keys = [b"drop:%d" % i for i in range(200)]
    for key in keys:
        c.set(key, key)
    c.close()
    dropped = sorted({Ring.partition(key) for key in keys[:20]})
    kept = sorted({Ring.partition(key) for key in keys} - set(dropped))
    mask = bytearray(512)
    for p in dropped:
        mask[p >> 3] |= 1 << (p & 7)
    r1, r2 = replicas.raw("r1"), replicas.raw("r2")
    cursor, deleted = b"0", 0
    while True:
        cursor, count = r1.fcall("rq_drop_partitions", 0, cursor, 50, bytes(mask))
        deleted += count
        if cursor == b"0":
            break
    gone = {k for k in keys if Ring.partition(k) in dropped}
    assert deleted == len(gone)
    assert user_keys(replicas.by_id("r1")) == set(keys) - gone
    assert user_keys(replicas.by_id("r2")) == set(keys)
    beats = {Ring.partition(k) for k in r1.scan_iter(match="__rq:hb:*")}  # never dropped
    for p in set(dropped) - beats:  # the digests say the partition is empty, as the data does
        assert r1.fcall("rq_aae_segments", 0, p) == []
        assert r2.fcall("rq_aae_segments", 0, p) != []
    for p in [p for p in kept if p not in beats][:20]:  # and the other partitions' digests still match a full copy
        assert r1.fcall("rq_aae_segments", 0, p) == r2.fcall("rq_aae_segments", 0, p)


def test_a_change_that_fails_midway_says_why_in_one_line_and_resumes(tmp_path, replicas,
                                                                     make_proxy):
    c, keys = cluster_with_keys(make_proxy, replicas, b"midway", 100)
    fourth = start_replica("r4", tmp_path)
    try:
        replicas.by_id("r2").kill()  # an old home the transfer needs (SIGKILL, by pid)
        failed = cli("join", f"r4={fourth.address}", *cluster_flags(replicas))
        assert failed.returncode == 1
        assert "Traceback" not in failed.stderr and "ExceptionGroup" not in failed.stderr
        assert failed.stderr.rstrip().splitlines()[-1] == (
            "redquorum join: replicas r2 are down: the transfer needs every old home and "
            "every new one")
        replicas.by_id("r2").start()
        wait_for(replicas.by_id("r2").ready, what="r2 to answer again")
        again = cli("join", f"r4={fourth.address}", *cluster_flags(replicas))
        assert again.returncode == 0, again.stderr
        # resumed from the recorded phase: the same change, four phases in all
        assert "[phase] version 2, joining (r4 joins)" in again.stderr
        assert "version 5, stable" in again.stderr
        assert [c.get(key) for key in keys] == keys
    finally:
        c.close()
        fourth.stop()


def test_hints_for_a_node_that_left_go_home_with_their_fallback_copies(tmp_path):
    """Proxies cut off from a leaving node (the operator's command still reaches it) leave
    fallback copies with hints for it, which no proxy can deliver. The leave's cleanup
    must take those writes to the key's homes and the copies away, not strand them."""
    from redquorum.replication.ring import Ring as KeyRing

    from tests.nemesis.cluster import Cluster, ClusterSpec

    with Cluster(ClusterSpec(replicas=5, proxies=1, replica_timeout=1.0), tmp_path) as cluster:
        everyone = tuple(sorted(cluster.replicas))
        key = next(k for k in (b"left:%d" % i for i in range(1000))
                   if KeyRing(everyone, 3).walk(k)[2] == "r5")  # the leaver, third home
        walk = KeyRing(everyone, 3).walk(key)
        other, stand_in = walk[1], walk[4]  # r5's stand-in is the second fallback
        relays = cluster.slots[0].relays
        client = cluster.proxy_client(0)
        for ident in (other, "r5"):
            relays[ident].cut()
        wait_for(lambda: client.info("redquorum")["replicas_up"] == 3,
                 what="the proxy to lose two homes of the key")
        assert client.set(key, b"v") is True
        assert cluster.raw(stand_in).hexists("__rq:hints:r5", key)
        relays[other].heal()  # the other stand-in's hint goes home; r5 stays cut off
        done = cli("leave", "r5", *cluster.cluster_flags(), "--rate", "50000")
        assert done.returncode == 0, done.stderr
        final = KeyRing(tuple(i for i in everyone if i != "r5"), 3)
        homes = set(final.preference_list(key))

        def placed() -> bool:
            holders = {i for i in everyone if i != "r5" and cluster.raw(i).exists(key)}
            return holders == homes
        wait_for(placed, timeout=20, what=f"the key on exactly {sorted(homes)}, the homes of "
                                          f"the final ring, not on {stand_in}")
        assert not cluster.raw(stand_in).exists("__rq:hints:r5")
        assert client.get(key) == b"v"
        client.close()


def test_hints_held_by_a_node_that_left_go_home_before_it_goes(tmp_path):
    """The leaving node stood in for a home (a fallback copy, a hint), then the proxies lost
    their link to it before delivering the hint. Once removed, no proxy would ever read its
    hints: the leave's cleanup must hand them to the keys' homes, so the node that left
    holds nothing and the home it stood in for has the write."""
    from redquorum.replication.ring import Ring as KeyRing

    from tests.nemesis.cluster import Cluster, ClusterSpec

    with Cluster(ClusterSpec(replicas=5, proxies=1, replica_timeout=1.0), tmp_path) as cluster:
        everyone = tuple(sorted(cluster.replicas))
        key = next(k for k in (b"held:%d" % i for i in range(1000))
                   if KeyRing(everyone, 3).walk(k)[3] == "r5")  # the leaver, first fallback
        home = KeyRing(everyone, 3).walk(key)[0]
        relays = cluster.slots[0].relays
        client = cluster.proxy_client(0)
        relays[home].cut()
        wait_for(lambda: client.info("redquorum")["replicas_up"] == 4,
                 what="the proxy to lose a home of the key")
        assert client.set(key, b"v") is True
        assert cluster.raw("r5").hexists(f"__rq:hints:{home}", key)
        relays["r5"].cut()  # the proxy cannot deliver r5's hint now
        relays[home].heal()
        done = cli("leave", "r5", *cluster.cluster_flags(), "--rate", "50000")
        assert done.returncode == 0, done.stderr
        assert cluster.user_key_count("r5") == 0
        assert not cluster.raw("r5").exists(f"__rq:hints:{home}")
        raw_home = cluster.raw(home)
        assert raw_home.exists(key)  # handed home by the cleanup, not by the proxy
        assert client.get(key) == b"v"
        client.close()
