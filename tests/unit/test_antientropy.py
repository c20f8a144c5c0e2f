"""The anti-entropy exchange over fake links (no processes): what it asks, what it skips,
how it throttles; and its settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redquorum.config import ConfigError, Replica, build, load
from redquorum.protocol.resp import parse_typed
from redquorum.replicas.launcher import free_port
from redquorum.replication.antientropy import AntiEntropy, differing, odd_ones
from redquorum.replication.coordinator import Coordinator
from redquorum.replication.ring import Ring

D1, D2 = b"aaaaaaaaaaaa", b"bbbbbbbbbbbb"

PORT = free_port()  # the configurations here are only validated, never connected to


class FakeReplica:
    """Answers the anti-entropy calls from dicts; replies are delivered when the test says."""

    def __init__(self, ident: str, roots: dict[int, bytes], segments: dict[int, dict[bytes, bytes]],
                 keys: dict[tuple[int, bytes], dict[bytes, bytes]]) -> None:
        self.id = ident
        self.actor = ident.encode()
        self.up = True
        self.roots, self.segments, self.keys = roots, segments, keys
        self.leases: set[bytes] = set()
        self.lease_free = True  # False: another proxy holds every lease
        self.queue: list[tuple[list[bytes], Callable[[Any], None]]] = []
        self.seen: list[list[bytes]] = []

    def request(self, payload: bytes, callback: Callable[[Any], None]) -> None:
        args, _ = parse_typed(payload)
        self.seen.append(args)
        self.queue.append((args, callback))

    def get(self, key, callback, index, encoded=None) -> None:  # pragma: no cover - unused
        raise AssertionError("anti-entropy reads objects through rq_aae_objects")

    def fail(self, why: str) -> None:  # pragma: no cover - unused
        self.up = False

    def answer(self, args: list[bytes]) -> Any:
        name = args[0].upper()
        if name == b"SET":
            if not self.lease_free or args[1] in self.leases:
                return None
            self.leases.add(args[1])
            return b"OK"
        function = args[1]
        if function == b"rq_aae_roots":
            first, count = int(args[3]), int(args[4])
            return [1, [x for p, d in self.roots.items() if first <= p < first + count
                        for x in (b"%d" % p, d)], 0, 0]
        if function == b"rq_aae_segments":
            return [x for s, d in self.segments.get(int(args[3]), {}).items() for x in (s, d)]
        if function == b"rq_aae_keys":
            rest = args[3:]
            return [[x for k, e in self.keys.get((int(rest[i]), rest[i + 1]), {}).items()
                     for x in (k, e)] for i in range(0, len(rest), 2)]
        if function == b"rq_aae_objects":
            return [None] * int(args[2])
        if function == b"rq_aae_release":
            self.leases.discard(args[3])
        return 1

    def kinds(self) -> list[bytes]:
        return [a[1] if a[0].upper() == b"FCALL" else a[0].upper() for a in self.seen]


def deliver(replicas: list[FakeReplica], hold: bytes | None = None) -> None:
    """Answer every request, and those they cause; ``hold``: leave that function's queued."""
    def ready(args: list[bytes]) -> bool:
        return hold is None or args[1:2] != [hold]
    while any(ready(args) for r in replicas for args, _ in r.queue):
        for r in replicas:
            queue = r.queue
            r.queue = [item for item in queue if not ready(item[0])]
            for args, callback in queue:
                if ready(args):
                    callback(r.answer(args))


def exchange(replicas: list[FakeReplica], **kwargs: Any) -> AntiEntropy:
    links = {r.id: r for r in replicas}
    co = Coordinator(Ring(tuple(links), 3), links, r=2, w=2, mode="causal", tombstone_grace=3600,
                     sibling_soft_limit=25, sibling_hard_limit=100)
    return AntiEntropy(co, owner="test", **kwargs)


def diverged_cluster(partitions: list[int], keys_each: int) -> list[FakeReplica]:
    """r1 holds ``keys_each`` keys in segment 1 of each partition that r2 and r3 lack."""
    r1 = FakeReplica("r1", {p: D1 for p in partitions}, {p: {b"1": D2} for p in partitions},
                     {(p, b"1"): {b"k%d:%d" % (p, i): D1 for i in range(keys_each)} for p in partitions})
    return [r1] + [FakeReplica(i, {}, {}, {}) for i in ("r2", "r3")]


def test_differing_and_odd_ones():
    assert differing([{b"1": D1}, {b"1": D1, b"2": b"000000000000"}, {}]) == {b"1"}
    assert differing([{b"1": D1}, {b"1": D1}]) == set()
    assert odd_ones({"r1": D1, "r2": D2, "r3": D2}) == ["r1"]
    assert sorted(odd_ones({"r1": D1, "r2": D2})) == ["r1", "r2"]


def test_a_round_descends_only_into_what_differs():
    replicas = diverged_cluster([7], keys_each=3)
    ae = exchange(replicas)
    ae.tick(now=100.0)
    deliver(replicas)
    ae.tick(now=100.5)
    deliver(replicas)
    stats = ae.round
    assert stats is not None and stats.done and stats.errors == 0
    assert (stats.partitions, stats.partitions_diverged, stats.segments_diverged) == (4096, 1, 1)
    assert (stats.keys_compared, stats.keys_diverged) == (3, 3)
    assert stats.segments_by_replica == {"r1": 1}
    for r in replicas:
        segment_calls = [a for a in r.seen if a[:2] == [b"FCALL", b"rq_aae_segments"]]
        assert [a[3] for a in segment_calls] == [b"7"]
        key_calls = [a for a in r.seen if a[:2] == [b"FCALL", b"rq_aae_keys"]]
        assert [a[3:] for a in key_calls] == [[b"7", b"1"]]
    assert ae.rounds == 1 and ae.last_success > 0


def test_a_round_ends_only_after_its_writes_are_answered():
    """``redquorum repair`` disconnects when the round ends: writes still in flight then
    were lost (and counted as errors)."""
    replicas = diverged_cluster([7], keys_each=3)
    ae = exchange(replicas)
    ae.tick(now=100.0)
    deliver(replicas)
    ae.tick(now=100.5)
    deliver(replicas, hold=b"rq_aae_refresh")
    assert ae.round is not None and not ae.round.done
    assert sum(len(r.queue) for r in replicas) == 9  # three keys on three homes
    deliver(replicas)
    assert ae.round.done and ae.round.errors == 0


def test_the_lease_is_released_when_the_partition_is_done():
    replicas = diverged_cluster([7], keys_each=3)
    ae = exchange(replicas)
    ae.tick(now=100.0)
    deliver(replicas)
    ae.tick(now=100.5)
    deliver(replicas, hold=b"rq_aae_release")
    holder = next(r for r in replicas if r.leases)
    assert ae.round is not None and not ae.round.done
    assert [a[3:] for a in holder.seen if a[1:2] == [b"rq_aae_release"]] == \
        [[b"__rq:aae:lease:7", b"test"]]
    deliver(replicas)
    assert ae.round.done


def test_a_partition_leased_by_another_proxy_is_skipped():
    replicas = diverged_cluster([7], keys_each=3)
    ae = exchange(replicas)
    for r in replicas:
        r.lease_free = False
    ae.tick(now=100.0)
    deliver(replicas)
    ae.tick(now=100.5)
    deliver(replicas)
    assert ae.round is not None and ae.round.done
    assert ae.round.partitions_leased == 1 and ae.round.keys_compared == 0
    assert all(b"rq_aae_segments" not in r.kinds() for r in replicas)


def test_dry_run_takes_no_lease_and_reads_no_object():
    replicas = diverged_cluster([7, 9], keys_each=2)
    ae = exchange(replicas, dry_run=True)
    ae.tick(now=100.0)
    deliver(replicas)
    ae.tick(now=101.0)
    deliver(replicas)
    assert ae.round is not None and ae.round.done and ae.round.keys_diverged == 4
    for r in replicas:
        assert b"SET" not in r.kinds() and b"rq_aae_objects" not in r.kinds()


def test_keys_per_second_throttles_the_round():
    replicas = diverged_cluster([3, 5, 9], keys_each=15)
    ae = exchange(replicas, keys_per_second=10)
    ae.tick(now=100.0)  # the round starts: roots
    deliver(replicas)
    ae.tick(now=100.05)  # half a key's worth: one partition, which then costs 16
    deliver(replicas)
    fetched = [a for a in replicas[0].seen if a[:2] == [b"FCALL", b"rq_aae_objects"]]
    assert len(fetched) == 1
    ae.tick(now=101.0)
    deliver(replicas)
    assert len([a for a in replicas[0].seen if a[:2] == [b"FCALL", b"rq_aae_objects"]]) == 1
    ae.tick(now=101.9)  # 3 keys' worth again: the next partitions start (a key's worth each)
    deliver(replicas)
    assert len([a for a in replicas[0].seen if a[:2] == [b"FCALL", b"rq_aae_objects"]]) == 3
    assert ae.round is not None and ae.round.done


def test_a_large_partition_is_read_a_chunk_at_a_time_within_the_budget():
    replicas = diverged_cluster([3], keys_each=600)  # three chunks of at most 256 keys
    ae = exchange(replicas, keys_per_second=300)

    def chunks() -> int:
        return len([a for a in replicas[0].seen if a[:2] == [b"FCALL", b"rq_aae_objects"]])
    ae.tick(now=100.0)
    deliver(replicas)
    ae.tick(now=100.1)  # 30 keys' worth: the partition starts, its first chunk overdraws
    deliver(replicas)
    assert chunks() == 1
    ae.tick(now=100.8)  # 256 + 1 - 30 = 227 to make up at 300/s: not yet
    deliver(replicas)
    assert chunks() == 1
    ae.tick(now=101.0)
    deliver(replicas)
    assert chunks() == 2
    ae.tick(now=102.0)
    deliver(replicas)
    assert chunks() == 3 and ae.round is not None and ae.round.done


def test_settings_from_toml_environment_and_flags(tmp_path):
    path = tmp_path / "rq.toml"
    path.write_text('[antientropy]\nenabled = false\ninterval = 2.5\nkeys_per_second = 100\n'
                    f'rebuild_interval = 0\n[[replicas]]\nid = "r1"\naddress = "127.0.0.1:{PORT}"\n')
    config = load({"config": str(path)}, environ={})
    assert (config.antientropy_enabled, config.antientropy_interval,
            config.antientropy_keys_per_second, config.antientropy_rebuild_interval) == (False, 2.5, 100, 0)
    config = load({"config": str(path)}, environ={"REDQUORUM_ANTIENTROPY_ENABLED": "yes",
                                                  "REDQUORUM_ANTIENTROPY_INTERVAL": "7"})
    assert config.antientropy_enabled and config.antientropy_interval == 7
    config = load({"config": str(path), "antientropy_keys_per_second": 42.0}, environ={})
    assert config.antientropy_keys_per_second == 42
    defaults = build({}, [Replica("r1", "127.0.0.1", PORT)])
    assert defaults.antientropy_enabled and defaults.antientropy_interval == 10


@pytest.mark.parametrize(("raw", "message"), [
    ({"antientropy_enabled": "maybe"}, "antientropy.enabled must be true or false"),
    ({"antientropy_interval": "0"}, "antientropy.interval=0.0 is outside"),
    ({"antientropy_keys_per_second": "0"}, "antientropy.keys_per_second=0.0 is outside"),
    ({"antientropy_rebuild_interval": "-1"}, "antientropy.rebuild_interval must not be negative"),
    ({"antientropy_interval": "soon"}, "antientropy.interval must be a number"),
])
def test_bad_settings_are_refused(raw, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        build(raw, [Replica("r1", "127.0.0.1", PORT)])


@pytest.mark.parametrize(("argv", "message"), [
    (["--partition", "4096"], "--partition 4096 is outside 0..4095"),
    (["--replica-id", "r9"], "--replica-id 'r9' is not one of r1, r2"),
    (["--replica", "r1", "--replica", "r2"], "repair one replica at a time"),
])
def test_repair_refuses_bad_arguments(argv, message, capsys):
    from redquorum.cli import main

    replicas = ["--replica", "r1=127.0.0.1:1", "--replica", "r2=127.0.0.1:2", "-n", "2"]
    assert main(["repair", *replicas, *argv]) == 2
    assert message in capsys.readouterr().err
