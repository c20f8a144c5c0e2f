"""The ring's balance and the membership record's phases, as pure values."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redquorum.protocol.resp import ReplyParser
from redquorum.replication.follower import Follower
from redquorum.replication.links import DOWN
from redquorum.replication.membership import (
    APPLIED_KEY,
    CLEANUP,
    JOINING,
    LEAVING,
    MEMBERS_KEY,
    STABLE,
    SWITCHED,
    BadRecord,
    Node,
    Record,
    gains,
    losses,
    partition_mask,
    placement,
    ring_of,
    shares,
)
from redquorum.replication.ring import PARTITIONS, Ring

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
SLOW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def largest_over_fair(ring: Ring) -> float:
    homes, _ = shares(ring)
    fair = PARTITIONS * ring.n / len(ring.nodes)
    return max(homes.values()) / fair


@pytest.mark.parametrize("count", range(3, 9))
def test_balance_of_the_usual_names(count):
    ring = Ring(tuple(f"r{i}" for i in range(1, count + 1)), 3)
    homes, first = shares(ring)
    assert sum(homes.values()) == 3 * PARTITIONS
    assert sum(first.values()) == PARTITIONS
    assert largest_over_fair(ring) <= 1.3


@SLOW
@given(names=st.lists(ids, min_size=3, max_size=8, unique=True))
def test_balance_of_any_names(names):
    assert largest_over_fair(Ring(tuple(names), 3)) <= 1.3


@SLOW
@given(names=st.lists(ids, min_size=3, max_size=7, unique=True), newcomer=ids)
def test_a_join_moves_only_the_partitions_the_new_node_gains(names, newcomer):
    if newcomer in names:
        names = [name for name in names if name != newcomer]
    if len(names) < 3:
        return
    old, new = ring_of(tuple(names), 3), ring_of((*names, newcomer), 3)
    gained = gains(old, new)
    assert gained, "a new node is a home of some partitions"
    for p, (before, after) in enumerate(zip(old.partition_homes(), new.partition_homes(),
                                            strict=True)):
        if p in gained:
            assert gained[p] == (newcomer,)
            assert newcomer in after
            assert len(set(before) - set(after)) == 1  # exactly one old home gives way
            assert set(after) - {newcomer} <= set(before)
        else:
            assert set(before) == set(after)
    lost = losses(old, new)
    assert sum(len(ps) for ps in lost.values()) == len(gained)
    assert newcomer not in lost


@SLOW
@given(names=st.lists(ids, min_size=4, max_size=8, unique=True), data=st.data())
def test_a_leave_moves_only_the_partitions_the_leaving_node_held(names, data):
    leaving = data.draw(st.sampled_from(names))
    old = ring_of(tuple(names), 3)
    new = ring_of(tuple(n for n in names if n != leaving), 3)
    lost = losses(old, new)
    assert set(lost) == {leaving}
    held = {p for p, homes in enumerate(old.partition_homes()) if leaving in homes}
    assert set(lost[leaving]) == held
    assert set(gains(old, new)) == held


def nodes(*names: str) -> list[Node]:
    return [Node(name, f"127.0.0.1:{7000 + i}") for i, name in enumerate(names)]


def test_the_phases_of_a_join_and_their_placement():
    start = Record.initial(nodes("r1", "r2", "r3", "r4"), 3)
    joining = start.joining(Node("r5", "127.0.0.1:7100"))
    assert (joining.version, joining.phase, joining.state("r5")) == (2, JOINING, "joining")
    switched = joining.advanced()
    cleanup = switched.advanced()
    stable = cleanup.advanced()
    assert [r.phase for r in (switched, cleanup, stable)] == [SWITCHED, CLEANUP, STABLE]
    assert [r.version for r in (switched, cleanup, stable)] == [3, 4, 5]
    assert stable.old == stable.new == ("r1", "r2", "r3", "r4", "r5")
    old, new = ring_of(start.new, 3), ring_of(stable.new, 3)
    during = placement(joining)
    assert list(during.reads) == old.partition_homes()  # reads stay on the old homes
    after_switch = placement(switched)
    assert list(after_switch.reads) == new.partition_homes()
    for placed in (during, after_switch):
        for p in range(PARTITIONS):
            assert set(placed.writes[p]) == set(old.partition_homes()[p]) | set(new.partition_homes()[p])
            assert placed.extra[p] == len(placed.writes[p]) - 3
    assert list(placement(cleanup).writes) == new.partition_homes()
    assert set(placement(cleanup).extra) == {0}
    assert cleanup.linked == stable.new
    assert set(joining.linked) == {"r1", "r2", "r3", "r4", "r5"}


@pytest.mark.parametrize("w", [1, 2, 3])
def test_a_write_acknowledged_during_a_change_has_w_acks_in_old_and_new_homes(w):
    start = Record.initial(nodes("a", "b", "c", "d"), 3)
    for record in (start.joining(Node("e", "127.0.0.1:7200")), start.leaving("b")):
        placed = placement(record)
        old, new = ring_of(record.old, 3), ring_of(record.new, 3)
        checked = set()
        for p in range(PARTITIONS):
            writes, need = placed.writes[p], w + placed.extra[p]
            if (writes, need) in checked:
                continue
            checked.add((writes, need))
            for acked in combinations(writes, need):
                assert len(set(acked) & set(old.partition_homes()[p])) >= w
                assert len(set(acked) & set(new.partition_homes()[p])) >= w


def test_records_round_trip_and_order():
    record = Record.initial(nodes("r1", "r2", "r3", "r4"), 3).leaving("r2")
    assert record.phase == LEAVING and record.state("r2") == "leaving"
    assert Record.decode(record.encode()) == record
    newer = record.advanced()
    assert newer.order() > record.order()
    other = Record.initial(nodes("x1", "x2", "x3"), 3)
    same_version = Record.initial(nodes("y1", "y2", "y3"), 3)
    assert (other.order() < same_version.order()) == (other.encode() < same_version.encode())


@pytest.mark.parametrize("bad", [b"", b"{}", b"not json", b'{"version": 1}',
                                 b'{"version":1,"n":3,"phase":"odd","nodes":[],"old":[],"new":[]}'])
def test_unreadable_records_are_refused(bad):
    with pytest.raises(BadRecord):
        Record.decode(bad)


def test_changes_are_refused_when_they_cannot_be_made():
    three = Record.initial(nodes("r1", "r2", "r3"), 3)
    with pytest.raises(BadRecord, match="cannot leave"):
        three.leaving("r1")
    with pytest.raises(BadRecord, match="already a member"):
        three.joining(Node("r1", "127.0.0.1:1"))
    with pytest.raises(BadRecord, match="change is running"):
        three.joining(Node("r4", "127.0.0.1:1")).joining(Node("r5", "127.0.0.1:2"))
    with pytest.raises(BadRecord, match="not a member"):
        three.leaving("r9")


def test_partition_mask_bits():
    mask = partition_mask([0, 9, PARTITIONS - 1])
    assert len(mask) == PARTITIONS // 8
    assert mask[0] == 1 and mask[1] == 2 and mask[-1] == 0x80
    assert sum(bin(b).count("1") for b in mask) == 3


class FakeReplica:
    """A link to a replica that keeps the membership hashes as rq_members_put would."""

    def __init__(self, ident: str, up: bool = True) -> None:
        self.id = ident
        self.actor = ident.encode()
        self.up = up
        self.down_since = None
        self.hashes: dict[bytes, dict[bytes, bytes]] = {}

    def request(self, payload: bytes, callback) -> None:
        parser = ReplyParser()
        parser.feed(payload)
        args = parser.gets()
        if not self.up:
            callback(DOWN)
            return
        if args[0] == b"HMGET":
            held = self.hashes.get(args[1], {})
            callback([held.get(field) for field in args[2:]])
        elif args[0] == b"HSET":
            fields = self.hashes.setdefault(args[1], {})
            fields.update(zip(args[2::2], args[3::2], strict=True))
            callback(1)
        else:
            assert args[:2] == [b"FCALL", b"rq_members_put"]
            key, version, record = args[3], int(args[4]), args[5]
            held = self.hashes.setdefault(key, {})
            if b"version" not in held or (int(held[b"version"]), held[b"record"]) < (version, record):
                held.update({b"version": args[4], b"record": record})
            callback([held[b"version"], held[b"record"]])

    def record(self) -> Record | None:
        held = self.hashes.get(MEMBERS_KEY, {})
        return Record.decode(held[b"record"]) if b"record" in held else None


def follower_over(replicas, configured):
    applied = []
    links = {r.id: r for r in replicas}
    follower = Follower(links, "proxy-1", Record.initial(nodes(*configured), 3), applied.append)
    return follower, applied


def test_a_follower_proposes_its_configuration_when_no_replica_holds_a_record():
    replicas = [FakeReplica(i) for i in ("r1", "r2", "r3")]
    follower, applied = follower_over(replicas, ["r1", "r2", "r3"])
    follower.poll()
    assert [r.version for r in applied] == [1]
    assert all(r.record() == applied[0] for r in replicas)
    reports = [r.hashes[APPLIED_KEY][b"proxy-1"].split()[0] for r in replicas]
    assert reports == [b"1", b"1", b"1"]


def test_a_follower_adopts_the_highest_record_and_spreads_it():
    replicas = [FakeReplica(i) for i in ("r1", "r2", "r3", "r4")]
    four = Record.initial(nodes("r1", "r2", "r3", "r4"), 3)
    newer = four.leaving("r4")
    replicas[0].hashes[MEMBERS_KEY] = {b"version": b"1", b"record": four.encode()}
    replicas[1].hashes[MEMBERS_KEY] = {b"version": b"2", b"record": newer.encode()}
    follower, applied = follower_over(replicas, ["r1", "r2", "r3"])  # configured otherwise
    follower.poll()
    assert applied == [newer]
    assert all(r.record() == newer for r in replicas)  # the older and the empty ones caught up
    follower.poll()
    assert applied == [newer]  # applied once


def test_a_follower_writes_back_the_record_the_replicas_lost():
    replicas = [FakeReplica(i) for i in ("r1", "r2", "r3", "r4")]
    newer = Record.initial(nodes("r1", "r2", "r3", "r4"), 3).leaving("r4")
    for r in replicas:
        r.hashes[MEMBERS_KEY] = {b"version": b"2", b"record": newer.encode()}
    follower, applied = follower_over(replicas, ["r1", "r2", "r3"])
    follower.poll()
    for r in replicas:
        r.hashes.clear()  # every replica restarted empty
    follower.poll()
    assert applied == [newer]  # not replaced by its configuration's version 1
    assert all(r.record() == newer for r in replicas)


def test_a_follower_leaves_down_replicas_alone():
    replicas = [FakeReplica("r1"), FakeReplica("r2", up=False), FakeReplica("r3")]
    follower, applied = follower_over(replicas, ["r1", "r2", "r3"])
    follower.poll()
    assert [r.version for r in applied] == [1]
    assert replicas[1].hashes == {}


def test_a_write_during_a_change_waits_for_w_plus_the_pending_homes():
    from redquorum.replication.coordinator import Coordinator

    from tests.unit.test_quorum import PUT_REPLY, SET, FakeLink

    sent: list = []
    links = {name: FakeLink(name, sent) for name in ("a", "b", "c", "d")}
    record = Record.initial(nodes("a", "b", "c"), 3).joining(Node("d", "127.0.0.1:7300"))
    placed = placement(record)
    co = Coordinator(ring_of(record.old, 3), links, r=2, w=2, mode="causal",
                     tombstone_grace=3600.0, sibling_soft_limit=25, sibling_hard_limit=100)
    co.place(placed.ring, placed.reads, placed.writes, placed.extra)
    key = next(k for k in (b"k%d" % i for i in range(1000))
               if placed.extra[Ring.partition(k)] == 1)
    answers: list = []
    co.write(key, 2, b"*", SET, answers.append)
    [coordinating] = sent
    assert coordinating.link.id == placed.writes[Ring.partition(key)][0]  # an old home
    coordinating.callback(PUT_REPLY)
    fan_out = sent[1:]
    assert {p.link.id for p in fan_out} == set(placed.writes[Ring.partition(key)][1:])
    fan_out[0].callback(1)
    assert answers == []  # two acks among four homes may all be old ones (or not w new)
    fan_out[1].callback(1)
    assert len(answers) == 1  # three: w in the old homes and w in the new
    sent.clear()
    co.read(key, 2, answers.append)
    assert {p.link.id for p in sent} == set(placed.reads[Ring.partition(key)])  # reads: old
    assert "d" not in {p.link.id for p in sent}
