"""The sloppy quorum's substitution rules, over recording fake links (test_quorum.py):
each home that is down is replaced by the next up fallback of the key's walk not already
used; a fallback runs the same function inside ``rq_fallback``, which also leaves the hint
for the home it stands in for; fallbacks coordinate only when no home can."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from redquorum.protocol.resp import parse_typed
from redquorum.replication import wire
from redquorum.replication.coordinator import Coordinator
from redquorum.replication.links import DOWN, TIMEOUT
from redquorum.replication.ring import Ring

from tests.unit.test_quorum import KEY, NEW, OLD, FakeLink, Pending

NODES = ("r1", "r2", "r3", "r4", "r5")


def decoded(payload: bytes) -> list[bytes]:
    return parse_typed(payload, 0)[0]


class Sloppy:
    def __init__(self, *, w: int = 2, r: int = 2, mode: str = "causal", sloppy: bool = True,
                 nodes: tuple[str, ...] = NODES) -> None:
        self.sent: list[Pending] = []
        self.links = {name: FakeLink(name, self.sent) for name in nodes}
        self.co = Coordinator(Ring(nodes, 3), self.links, r=r, w=w, mode=mode,
                              tombstone_grace=3600.0, sibling_soft_limit=25,
                              sibling_hard_limit=100, sloppy=sloppy)
        self.walk = [self.links[i] for i in self.co.ring.walk(KEY)]
        self.homes, self.fallbacks = self.walk[:3], self.walk[3:]
        self.answers: list[Any] = []

    def done(self, result: Any) -> None:
        self.answers.append(result)

    def down(self, *links: FakeLink) -> None:
        for link in links:
            link.up = False

    def of(self, kind: str) -> list[Pending]:
        return [p for p in self.sent if p.kind == kind]

    def stood_in(self) -> list[tuple[str, str, bytes]]:
        """(fallback, home it stands in for, inner function) of every rq_fallback sent."""
        found = []
        for p in self.of("rq_fallback"):
            args = decoded(p.payload)
            assert args[3] == KEY and args[5] == wire.hint_times_key(args[4][len(wire.HINTS_PREFIX):].decode())
            found.append((p.link.id, args[4][len(wire.HINTS_PREFIX):].decode(), args[6]))
        return found

    def hints(self) -> list[tuple[str, str]]:
        """(holder, target) of every plain hint left."""
        return [(p.link.id, decoded(p.payload)[3][len(wire.HINTS_PREFIX):].decode())
                for p in self.of("rq_hint")]


def coordinated(blob: bytes = NEW) -> list[Any]:
    return [blob, b"OK", b"", 0]


# -- which replicas a request goes to -----------------------------------------------


def test_the_homes_serve_while_they_are_up():
    c = Sloppy()
    assert c.co.targets(KEY) == (tuple(c.homes), None)


def test_without_nodes_beyond_n_or_with_the_setting_off_there_is_no_substitution():
    three = Sloppy(nodes=NODES[:3])
    assert not three.co.sloppy
    off = Sloppy(sloppy=False)
    off.down(off.homes[0])
    assert off.co.targets(KEY) == (tuple(off.homes), None)


@given(st.sets(st.sampled_from(range(5))))
def test_each_down_home_is_replaced_by_the_next_up_fallback_not_already_used(down):
    c = Sloppy()
    c.down(*(c.walk[i] for i in down))
    targets, stands = c.co.targets(KEY)
    spare = iter([f for f in c.fallbacks if f.up])
    want_targets, want_stands = [], []
    for home in c.homes:
        fallback = None if home.up else next(spare, None)
        want_targets.append(home if fallback is None else fallback)
        want_stands.append(None if fallback is None else home)
    assert list(targets) == want_targets
    assert (list(stands) if stands else [None] * 3) == want_stands
    assert len(set(map(id, targets))) == 3  # a fallback stands in for one home at most


def test_partitions_short_counts_the_whole_walk_with_a_sloppy_quorum():
    ring = Ring(NODES, 3)
    up = {"r1", "r2", "r3"}
    strict = ring.partitions_short(up, 2)
    assert 0 < strict < 4096  # some partitions have two of r4, r5 among their homes
    assert ring.partitions_short(up, 2, sloppy=True) == 0
    assert ring.partitions_short(up, 3, sloppy=True) == 0
    assert ring.partitions_short({"r1", "r2"}, 3, sloppy=True) == 4096


# -- writes --------------------------------------------------------------------------


def test_an_up_home_coordinates_and_the_fallbacks_take_the_object_with_their_hints():
    c = Sloppy()
    h1, h2, h3 = c.homes
    c.down(h1, h2)
    c.co.write(KEY, 2, b"*", wire.set_value(b"v"), c.done)
    coordinator = c.sent[0]
    assert coordinator.link is h3 and coordinator.kind == "rq_set"
    coordinator.callback(coordinated())
    assert sorted(c.stood_in()) == sorted([(c.fallbacks[0].id, h1.id, b"rq_replace"),
                                           (c.fallbacks[1].id, h2.id, b"rq_replace")])
    assert c.answers == []
    c.of("rq_fallback")[0].callback(1)
    assert c.answers == [(NEW, b"OK")]
    assert c.hints() == []  # the fallbacks hold them, not the coordinator
    assert c.co.hints_stored[h1.id] == c.co.hints_stored[h2.id] == 1


def test_a_fallback_coordinates_when_no_home_can_and_a_home_left_without_one_is_hinted():
    c = Sloppy()
    c.down(*c.homes)
    c.co.write(KEY, 2, b"*", wire.set_value(b"v"), c.done)
    first = c.sent[0]
    assert first.link is c.fallbacks[0] and first.kind == "rq_fallback"
    assert c.stood_in() == [(c.fallbacks[0].id, c.homes[0].id, b"rq_set")]
    first.callback(coordinated())
    # the third home has no fallback left: the coordinator keeps a hint for it
    assert c.hints() == [(c.fallbacks[0].id, c.homes[2].id)]
    fan_out = [p for p in c.of("rq_fallback") if p.link is c.fallbacks[1]]
    assert len(fan_out) == 1
    fan_out[0].callback(1)
    assert c.answers == [(NEW, b"OK")]


def test_a_fallback_failing_after_the_coordinator_answered_leaves_a_hint_for_its_home():
    c = Sloppy(w=3)
    h1, h2, h3 = c.homes
    c.down(h1)
    c.co.write(KEY, 3, b"*", wire.set_value(b"v"), c.done)
    c.sent[0].callback(coordinated())
    c.of("rq_replace")[0].callback(1)
    c.of("rq_fallback")[0].callback(TIMEOUT)
    assert c.hints() == [(c.sent[0].link.id, h1.id)]  # for the home, not the fallback
    assert c.answers[0].text.startswith("NOQUORUM write needs 3 of 3 replicas, 2 answered")


def test_a_home_that_stays_up_is_never_replaced():
    c = Sloppy()
    h1, h2, h3 = c.homes
    c.down(h2)
    targets, stands = c.co.targets(KEY)
    assert targets == (h1, c.fallbacks[0], h3) and stands == (None, h2, None)


def test_read_modify_write_reads_and_writes_through_the_fallbacks():
    c = Sloppy()
    h1, h2, h3 = c.homes
    c.down(h1, h2)
    c.co.write(KEY, 2, b"*", wire.incr_by(1), c.done)
    gets = c.of("get")
    assert [p.link for p in gets] == [c.fallbacks[0], c.fallbacks[1], h3]
    gets[0].callback(None)
    gets[1].callback(None)
    assert c.of("rq_put_synced") == []  # two of three are enough for homes, not here
    gets[2].callback(OLD)
    synced = c.sent[-1]
    assert synced.link is h3 and synced.kind == "rq_put_synced"
    assert OLD in synced.payload


def test_a_read_through_fallbacks_waits_for_every_target():
    """Fallbacks that never got the key answer nil at once; the home that holds it must
    still be heard, or two empty fallbacks would answer a read of a key that exists."""
    c = Sloppy(r=2)
    h1, h2, h3 = c.homes
    c.down(h1, h2)
    c.co.read(KEY, 2, c.done, plain=True)
    gets = c.of("get")
    gets[0].callback(None)
    gets[1].callback(None)
    assert c.answers == []
    gets[2].callback(NEW)
    assert c.answers == [b"new"]


def test_a_read_through_fallbacks_still_answers_noquorum_as_soon_as_it_is_lost():
    c = Sloppy(r=2)
    c.down(c.homes[0])
    c.co.read(KEY, 2, c.done, plain=True)
    gets = c.of("get")
    gets[0].callback(TIMEOUT)
    assert c.answers == []
    gets[1].callback(TIMEOUT)
    assert c.answers[0].text.startswith("NOQUORUM read needs 2 of 3 replicas, 0 answered")


def test_lww_writes_to_a_fallback_leave_its_hint():
    c = Sloppy(mode="lww")
    h1, h2, h3 = c.homes
    c.down(h1)
    c.co.write(KEY, 2, b"*", wire.set_value(b"v"), c.done)
    assert c.stood_in() == [(c.fallbacks[0].id, h1.id, b"rq_lww")]
    assert [p.link for p in c.of("rq_lww")] == [h2, h3]


# -- reads ---------------------------------------------------------------------------


def test_reads_consult_fallbacks_and_repair_only_a_fallback_holding_a_copy():
    for fallback_holds, repaired in ((None, False), (OLD, True)):
        c = Sloppy(r=2)
        h1, h2, h3 = c.homes
        c.down(h1)
        c.co.read(KEY, 2, c.done, plain=True)
        gets = c.of("get")
        assert [p.link for p in gets] == [c.fallbacks[0], h2, h3]
        gets[1].callback(NEW)
        gets[2].callback(NEW)
        gets[0].callback(fallback_holds)
        assert c.answers == [b"new"]
        repairs = c.of("rq_fallback")
        # a fallback holding nothing gets no copy: it would have no hint to hand it home
        assert [(p.link, decoded(p.payload)[6]) for p in repairs] == (
            [(c.fallbacks[0], b"rq_merge")] if repaired else [])
        assert c.of("rq_merge") == []


def test_inspect_lists_the_homes_then_the_fallbacks_holding_the_key():
    c = Sloppy()
    got: list[Any] = []
    c.co.inspect(KEY, got.append)
    replies = {c.homes[0]: DOWN, c.homes[1]: [NEW, -1], c.homes[2]: [False, -2],
               c.fallbacks[0]: [False, -2], c.fallbacks[1]: [OLD, -1]}
    for p in c.sent:
        p.callback(replies[p.link])
    (entries,) = got
    assert [(link, role) for link, role, _ in entries] == [
        (c.homes[0], "home"), (c.homes[1], "home"), (c.homes[2], "home"),
        (c.fallbacks[1], "fallback")]


def test_every_reply_order_of_a_sloppy_write_answers_once():
    for order in itertools.permutations(range(2)):
        c = Sloppy()
        c.down(c.homes[0], c.homes[1])
        c.co.write(KEY, 2, b"*", wire.set_value(b"v"), c.done)
        c.sent[0].callback(coordinated())
        fan_out = c.of("rq_fallback")
        for i in order:
            fan_out[i].callback(1)
        assert c.answers == [(NEW, b"OK")]


def test_while_a_home_catches_up_reads_also_ask_the_fallbacks_and_never_write_to_them():
    """A home back from an outage lacks what fallbacks took for it until its hints arrive:
    reads of its keys ask every up fallback too, merge all answers, repair the home, and
    leave the fallbacks' copies alone (a copy without its hint would never go)."""
    c = Sloppy(r=2)
    h1, h2, h3 = c.homes
    c.co.catching_up.add(h1.id)
    c.co.read(KEY, 2, c.done, plain=True)
    gets = c.of("get")
    assert [p.link for p in gets] == [h1, h2, h3, *c.fallbacks]
    gets[0].callback(OLD)  # h1, back without the newer write
    gets[2].callback(OLD)  # h3 missed it too (its hint is on h2)
    gets[1].callback(TIMEOUT)
    gets[4].callback(None)
    assert c.answers == []
    gets[3].callback(NEW)  # the fallback that stood in for h1
    assert c.answers == [b"new"]
    repaired = {p.link for p in c.of("rq_merge")}
    assert repaired == {h1, h3}
    assert c.of("rq_fallback") == []


def test_a_home_catching_up_elsewhere_adds_no_fallback():
    c = Sloppy(r=2)
    c.co.catching_up.add(next(link for link in c.links.values() if link not in c.homes).id)
    c.co.read(KEY, 2, c.done, plain=True)
    assert [p.link for p in c.of("get")] == c.homes
