"""The quorum state machines of coordinator.py, driven by recording fake links.

A ``FakeLink`` implements the ``Link`` protocol (links.py): it records every request and
holds its callback until the test answers it, so replies, failures and late replies can
arrive in any order. A down link answers ``DOWN`` at once, as the real link does.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redquorum.protocol.resp import ReplyError, command
from redquorum.replication import clock, wire
from redquorum.replication.coordinator import (
    ANSWERED,
    Coordinator,
    _Read,
)
from redquorum.replication.links import DOWN, TIMEOUT, ReplicaFailure
from redquorum.replication.quorum import Quorum, noquorum
from redquorum.replication.ring import Ring

KEY = b"user:42"
NODES = ("r0", "r1", "r2")


def blob(clock_entries: list[tuple[bytes, int]], *siblings: tuple[bytes, int, int, bytes]
         ) -> bytes:
    flat = [x for entry in clock_entries for x in entry]
    return msgpack.packb([1, flat, [[a, c, ts, 0, 0, v] for a, c, ts, v in siblings]])


OLD = blob([(b"r0", 1)], (b"r0", 1, 1_000, b"old"))
NEW = blob([(b"r0", 2)], (b"r0", 2, 2_000, b"new"))
CONCURRENT = blob([(b"r1", 1)], (b"r1", 1, 3_000, b"concurrent"))
CORRUPT = b"\xc1 not msgpack"
BLOBS = {"old": OLD, "new": NEW, "concurrent": CONCURRENT, "none": None}


class Pending:
    __slots__ = ("link", "payload", "callback")

    def __init__(self, link: FakeLink, payload: bytes, callback: Any) -> None:
        self.link = link
        self.payload = payload
        self.callback = callback

    @property
    def kind(self) -> str:
        if self.payload.startswith(b"GET "):
            return "get"
        for name in (b"rq_fallback", b"rq_hint", b"rq_put_synced", b"rq_put", b"rq_set", b"rq_replace",
                     b"rq_merge", b"rq_lww"):
            if name in self.payload[:60]:
                return name.decode()
        return "other"


class FakeLink:
    """A replica link that records what it is sent and answers when the test says."""

    def __init__(self, name: str, log: list[Pending]) -> None:
        self.id = name
        self.actor = name.encode()
        self.up = True
        self.failed_with: str | None = None
        self.log = log  # every request of every link, in the order sent

    def request(self, payload: bytes, callback: Any) -> None:
        if not self.up:
            callback(DOWN)
            return
        self.log.append(Pending(self, payload, callback))

    def get(self, key: bytes, callback: Any, index: int, encoded: bytes | None = None) -> None:
        if not self.up:
            callback(index, DOWN)
            return
        self.log.append(Pending(self, b"GET " + key, lambda reply: callback(index, reply)))

    def fail(self, why: str) -> None:
        self.up = False
        self.failed_with = why


class Cluster:
    def __init__(self, r: int = 2, w: int = 2, mode: str = "causal",
                 min_w: int | None = None) -> None:
        self.sent: list[Pending] = []
        links = {name: FakeLink(name, self.sent) for name in NODES}
        self.co = Coordinator(Ring(NODES, 3), links, r=r, w=w, min_w=min_w, mode=mode,
                              tombstone_grace=3600.0, sibling_soft_limit=25,
                              sibling_hard_limit=100)
        self.homes: tuple[FakeLink, ...] = self.co.homes(KEY)  # type: ignore[assignment]
        self.answers: list[Any] = []
        self.failures: list[str] = []
        self.co.events.quorum_failure = self.failures.append  # type: ignore[method-assign]

    def done(self, result: Any) -> None:
        self.answers.append(result)

    def of(self, kind: str) -> list[Pending]:
        return [p for p in self.sent if p.kind == kind]

    def index(self, link: FakeLink) -> int:
        return self.homes.index(link)

    def hints(self) -> list[tuple[str, str, bytes]]:
        """(holder, target, blob) of every hint left."""
        found = []
        for p in self.of("rq_hint"):
            for target in NODES:
                for held in (NEW, b""):
                    if p.payload == wire.hint(target, KEY, held):
                        found.append((p.link.id, target, held))
        return found


def reply_for(outcome: str) -> Any:
    if outcome in BLOBS:
        return BLOBS[outcome]
    if outcome == "timeout":
        return TIMEOUT
    if outcome == "error":
        return ReplyError("LOADING Redis is loading the dataset in memory")
    raise AssertionError(outcome)


# -- the counter -------------------------------------------------------------


def test_quorum_is_reached_at_needed_acks_and_impossible_past_of_minus_needed():
    q = Quorum(2, 3)
    q.ack()
    assert not q.reached and not q.impossible
    q.fail("r1: timeout")
    assert not q.reached and not q.impossible
    q.fail("r2: down")
    assert q.impossible and not q.reached
    assert q.error("read").text == "NOQUORUM read needs 2 of 3 replicas, 1 answered (r2: down)"


def test_quorum_demote_turns_an_ack_into_a_failure():
    q = Quorum(3, 3)
    q.ack()
    q.ack()
    q.demote("r0: undecodable")
    assert (q.acks, q.failures, q.why, q.impossible) == (1, 1, "r0: undecodable", True)


def test_noquorum_without_a_reason_has_no_parentheses():
    assert noquorum("write", 0, 2, 3).text == "NOQUORUM write needs 2 of 3 replicas, 0 answered"


# -- reads -------------------------------------------------------------------


def expected_read(objects: list[bytes | None], plain: bool) -> Any:
    merged = clock.sync_all(clock.decode(b) for b in objects)
    if not plain:
        return merged
    best = merged.winner(time.time_ns() // 1_000_000)
    return None if best is None else best.value


def same_answer(got: Any, want: Any) -> bool:
    if isinstance(want, clock.Versioned):
        return (isinstance(got, clock.Versioned) and got.clock_map() == want.clock_map()
                and set(got.siblings) == set(want.siblings))
    return got == want


def stale_homes(objects: dict[int, bytes | None]) -> set[int]:
    values = list(objects.values())
    if len(values) < 2 or all(v == values[0] for v in values):
        return set()
    decoded = {i: clock.decode(b) for i, b in objects.items()}
    merged = clock.sync_all(decoded.values())
    return {i for i, obj in decoded.items()
            if obj != merged and any(b and b != objects[i] for b in values)}


outcomes = st.sampled_from(["old", "new", "concurrent", "none", "timeout", "error", "down"])


@settings(max_examples=400, deadline=None)
@given(r=st.integers(1, 3), plain=st.booleans(),
       homes=st.lists(outcomes, min_size=3, max_size=3), order=st.permutations(range(3)))
def test_read_answers_once_at_the_deciding_reply_and_repairs_after_the_last(r, plain, homes,
                                                                             order):
    c = Cluster(r=r)
    for i, outcome in enumerate(homes):
        c.homes[i].up = outcome != "down"
    c.co.read(KEY, r, c.done, plain=plain)
    objects: dict[int, bytes | None] = {}
    failed = sum(1 for h in homes if h == "down")  # down homes answered at once
    decided = False

    def check() -> None:
        nonlocal decided
        if decided or not (len(objects) >= r or failed > 3 - r):
            assert c.answers == [] or decided
            return
        decided = True
        assert len(c.answers) == 1
        if len(objects) >= r:
            assert same_answer(c.answers[0], expected_read(list(objects.values()), plain))
        else:
            assert c.answers[0].text.startswith(
                f"NOQUORUM read needs {r} of 3 replicas, {len(objects)} answered (")
            assert c.failures == ["read"]

    check()
    gets = {c.index(p.link): p for p in c.of("get")}
    arrivals = [i for i in order if i in gets]
    for i in arrivals:
        assert c.of("rq_merge") == [], "repair before every home answered"
        gets[i].callback(reply_for(homes[i]))
        if homes[i] in BLOBS:
            objects[i] = BLOBS[homes[i]]
        else:
            failed += 1
        check()
        assert len(c.answers) <= 1
    assert len(c.answers) == 1
    assert {c.index(p.link) for p in c.of("rq_merge")} == stale_homes(objects)
    assert len(c.of("rq_merge")) == len(stale_homes(objects))


def test_a_late_reply_after_the_answer_changes_nothing_but_repair():
    c = Cluster(r=2)
    c.co.read(KEY, 2, c.done, plain=True)
    gets = c.of("get")
    gets[0].callback(NEW)
    gets[1].callback(NEW)
    assert c.answers == [b"new"]
    gets[2].callback(OLD)
    assert c.answers == [b"new"]
    assert [p.link for p in c.of("rq_merge")] == [gets[2].link]


@pytest.mark.parametrize("corrupt_at", [0, 1, 2])
def test_an_undecodable_object_counts_as_a_failed_home_before_the_read_decides(corrupt_at):
    c = Cluster(r=2)
    c.co.read(KEY, 2, c.done, plain=True)
    gets = c.of("get")
    replies = [NEW, NEW, NEW]
    replies[corrupt_at] = CORRUPT
    for step, (p, reply) in enumerate(zip(gets, replies, strict=True)):
        p.callback(reply)
        good_so_far = sum(1 for b in replies[: step + 1] if b != CORRUPT)
        assert c.answers == ([b"new"] if good_so_far >= 2 else [])
    assert c.answers == [b"new"]


def test_undecodable_objects_make_the_read_impossible_with_the_home_named():
    c = Cluster(r=3)
    c.co.read(KEY, 3, c.done)
    gets = c.of("get")
    gets[0].callback(NEW)
    gets[1].callback(CORRUPT)
    assert c.answers == []  # the corrupt object is not looked at before three replies
    gets[2].callback(NEW)
    assert len(c.answers) == 1
    text = c.answers[0].text
    assert text.startswith("NOQUORUM read needs 3 of 3 replicas, 2 answered (")
    assert gets[1].link.id in text
    assert c.failures == ["read"]


def test_an_object_only_the_fast_path_rejects_is_decoded_instead():
    """A sibling with a seventh field: plain_value cannot unpack it, decode reads the
    first six. The read answers from the decoded object instead of retrying the fast
    path for ever."""
    odd = msgpack.packb([1, [b"r0", 1], [[b"r0", 1, 1_000, 0, 0, b"v", b"extra"]]])
    c = Cluster(r=2)
    c.co.read(KEY, 2, c.done, plain=True)
    for p in c.of("get"):
        p.callback(odd)
    assert c.answers == [b"v"]


def test_a_second_finish_is_dropped_with_a_log_line(caplog):
    c = Cluster()
    machine = _Read(c.co, KEY, c.homes, 2, c.done)
    machine._finish(b"first")
    with caplog.at_level(logging.ERROR, logger="redquorum.coordinator"):
        machine._finish(b"second")
    assert c.answers == [b"first"]
    assert machine.phase == ANSWERED
    assert "answered twice" in caplog.text


def test_read_many_answers_every_key_in_order():
    c = Cluster(r=1)
    c.co.read_many([KEY, KEY], 1, c.done, plain=True)
    for p, reply in zip(c.of("get"), [NEW, NEW, NEW, OLD, OLD, OLD], strict=True):
        p.callback(reply)
    assert c.answers == [[b"new", b"old"]]


# -- causal writes -----------------------------------------------------------

SET = wire.set_value(b"v")
INCR = wire.incr_by(1)
PUT_REPLY = [NEW, b"OK", OLD, 0]

write_outcomes = st.sampled_from(["ok", "timeout", "error", "down"])


def failure_for(outcome: str) -> Any:
    return TIMEOUT if outcome == "timeout" else ReplyError("LOADING busy loading")


@settings(max_examples=400, deadline=None)
@given(w=st.integers(1, 3), homes=st.lists(write_outcomes, min_size=3, max_size=3),
       order=st.permutations(range(3)))
def test_write_fails_over_answers_once_and_hints_what_failed(w, homes, order):
    c = Cluster(w=w)
    for i, outcome in enumerate(homes):
        c.homes[i].up = outcome != "down"
    c.co.write(KEY, w, b"*", SET, c.done)
    acks, failed = 0, 0
    asked: list[int] = []
    coordinator = None
    # coordination: homes in preference order, the next asked only when one fails
    for i in range(3):
        if homes[i] == "down":
            failed += 1
            continue
        if failed > 3 - w:
            break
        puts = c.of("rq_set")
        assert [c.index(p.link) for p in puts] == asked + [i]
        asked.append(i)
        assert c.answers == []
        if homes[i] == "ok":
            puts[-1].callback(PUT_REPLY)
            coordinator, acks = i, 1
            break
        puts[-1].callback(failure_for(homes[i]))
        failed += 1
    if coordinator is None:
        assert len(c.answers) == 1 and c.failures == ["write"]
        assert c.answers[0].text.startswith(f"NOQUORUM write needs {w} of 3 replicas, 0 answered")
        assert c.hints() == [] and c.of("rq_replace") == []
        return
    # fan-out: the homes after the coordinator, answered in ``order``; down ones at once
    failed += sum(1 for i in range(coordinator + 1, 3) if homes[i] == "down")
    replaces = {c.index(p.link): p for p in c.of("rq_replace")}
    assert set(replaces) == {i for i in range(coordinator + 1, 3) if homes[i] != "down"}
    decided = acks >= w or failed > 3 - w
    assert len(c.answers) == (1 if decided else 0)
    for i in order:
        if i not in replaces:
            continue
        if homes[i] == "ok":
            replaces[i].callback(1)
            acks += 1
        else:
            replaces[i].callback(failure_for(homes[i]))
            failed += 1
        if not decided and (acks >= w or failed > 3 - w):
            decided = True
            assert len(c.answers) == 1
        assert len(c.answers) == (1 if decided else 0)
    assert len(c.answers) == 1
    if isinstance(c.answers[0], ReplyError):
        assert c.answers[0].text.startswith(f"NOQUORUM write needs {w} of 3 replicas, ")
        assert c.failures == ["write"]
    else:
        assert c.answers[0] == (NEW, b"OK") and c.failures == []
    holder = c.homes[coordinator].id
    assert sorted(c.hints()) == sorted(
        (holder, c.homes[i].id, NEW) for i in range(3) if homes[i] != "ok")


def test_a_command_error_from_the_coordinator_is_the_answer_and_nothing_fans_out():
    c = Cluster()
    c.co.write(KEY, 2, b"*", SET, c.done)
    c.of("rq_set")[0].callback(
        ReplyError("ERR value is not an integer script: rq_put, on @user_function:12."))
    assert [a.text for a in c.answers] == ["ERR value is not an integer"]
    assert len(c.of("rq_set")) == 1 and c.of("rq_replace") == [] and c.failures == []


def test_a_coordinator_without_the_function_library_is_failed_and_the_next_coordinates():
    c = Cluster()
    c.co.write(KEY, 2, b"*", SET, c.done)
    c.of("rq_set")[0].callback(ReplyError("ERR Function not found"))
    assert c.homes[0].failed_with == "function library missing; reloading"
    assert [p.link for p in c.of("rq_set")] == [c.homes[0], c.homes[1]]
    c.of("rq_set")[1].callback(PUT_REPLY)
    c.of("rq_replace")[0].callback(1)
    assert c.answers == [(NEW, b"OK")]
    assert c.hints() == [(c.homes[1].id, c.homes[0].id, NEW)]


def test_an_operation_that_wrote_nothing_answers_at_the_coordinator():
    c = Cluster(w=3)
    c.co.write(KEY, 3, b"", SET, c.done)
    c.of("rq_put")[0].callback([None, None, NEW, 0])
    assert c.answers == [(None, None)] and c.of("rq_replace") == []


@pytest.mark.parametrize("catching_up", [0, 1])
def test_a_home_catching_up_coordinates_last(catching_up):
    c = Cluster()
    c.co.catching_up.add(c.homes[catching_up].id)
    c.co.write(KEY, 2, b"*", SET, c.done)
    first = [i for i in range(3) if i != catching_up][0]
    assert [p.link for p in c.of("rq_set")] == [c.homes[first]]
    c.of("rq_set")[0].callback(TIMEOUT)
    second = [i for i in range(3) if i != catching_up][1]
    assert [p.link for p in c.of("rq_set")][1:] == [c.homes[second]]
    c.of("rq_set")[1].callback(PUT_REPLY)
    assert [p.link for p in c.of("rq_replace")] == [c.homes[catching_up]]
    c.of("rq_replace")[0].callback(1)
    assert c.answers == [(NEW, b"OK")]


def test_a_home_catching_up_coordinates_when_no_other_can():
    c = Cluster(w=1)
    c.co.catching_up.add(c.homes[0].id)
    c.homes[1].up = c.homes[2].up = False
    c.co.write(KEY, 1, b"*", SET, c.done)
    assert [p.link for p in c.of("rq_set")] == [c.homes[0]]
    c.of("rq_set")[0].callback(PUT_REPLY)
    assert c.answers == [(NEW, b"OK")]
    assert sorted(c.hints()) == sorted([(c.homes[0].id, c.homes[1].id, NEW),
                                        (c.homes[0].id, c.homes[2].id, NEW)])


# -- read-modify-write -------------------------------------------------------


@pytest.mark.parametrize(("w", "min_w", "reads"), [(2, None, 2), (3, None, 1), (3, 1, 3),
                                                   (1, None, 3)])
def test_read_modify_write_reads_n_minus_min_w_plus_one_homes_first(w, min_w, reads):
    c = Cluster(w=w, min_w=min_w)
    c.co.write(KEY, w, b"*", INCR, c.done)
    gets = c.of("get")
    assert len(gets) == 3
    for step, (p, reply) in enumerate(zip(gets, [OLD, NEW, NEW], strict=True)):
        p.callback(reply)
        assert len(c.of("rq_put_synced")) == (1 if step + 1 >= reads else 0)
    put = c.of("rq_put_synced")[0]
    assert put.link is c.homes[0]
    distinct = list(dict.fromkeys([OLD, NEW, NEW][:reads]))
    synced = command(KEY, b"%d" % len(distinct), *distinct)
    assert synced[synced.index(b"\n") + 1:] in put.payload
    put.callback([NEW, b"2", OLD, 0])
    for p in c.of("rq_replace"):
        p.callback(1)
    assert c.answers == [(NEW, b"2")]


def test_read_modify_write_whose_read_cannot_be_had_is_noquorum_with_the_write_counts():
    c = Cluster(w=2)
    c.co.write(KEY, 2, b"*", INCR, c.done)
    gets = c.of("get")
    gets[0].callback(TIMEOUT)
    assert c.answers == []
    gets[1].callback(ReplicaFailure("connection lost"))
    assert [a.text for a in c.answers] == [
        "NOQUORUM write needs 2 of 3 replicas, 0 answered (its read of the current value "
        f"failed: {gets[1].link.id}: connection lost)"]
    gets[2].callback(NEW)  # late: nothing is written
    assert len(c.answers) == 1 and c.of("rq_put_synced") == [] and c.failures == ["write"]


# -- last-write-wins ---------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(w=st.integers(1, 3), homes=st.lists(write_outcomes, min_size=3, max_size=3),
       order=st.permutations(range(3)))
def test_lww_write_answers_once_and_the_first_ack_holds_the_hints(w, homes, order):
    c = Cluster(w=w, mode="lww")
    for i, outcome in enumerate(homes):
        c.homes[i].up = outcome != "down"
    c.co.write(KEY, w, b"*", SET, c.done)
    writes = {c.index(p.link): p for p in c.of("rq_lww")}
    assert set(writes) == {i for i in range(3) if homes[i] != "down"}
    acks = 0
    failed = sum(1 for h in homes if h == "down")
    holder = None
    decided = "noquorum" if failed > 3 - w else None
    assert len(c.answers) == (1 if decided else 0)
    for i in order:
        if i not in writes:
            continue
        if homes[i] == "ok":
            writes[i].callback(1)
            acks += 1
            holder = holder if holder is not None else i
        else:
            writes[i].callback(failure_for(homes[i]))
            failed += 1
        if not decided and (acks >= w or failed > 3 - w):
            decided = "ok" if acks >= w else "noquorum"
        assert len(c.answers) == (1 if decided else 0)
    answer = c.answers[0]
    if decided == "ok":
        assert answer == (b"", 1) and c.failures == []
    else:
        assert c.failures == ["write"]
        assert answer.text.startswith(f"NOQUORUM write needs {w} of 3 replicas, ")
    expected = [] if holder is None else [
        (c.homes[holder].id, c.homes[i].id, b"") for i in range(3) if homes[i] != "ok"]
    assert sorted(c.hints()) == sorted(expected)


def test_every_order_of_three_write_replies_answers_exactly_once():
    for w, order in itertools.product((1, 2, 3), itertools.permutations(range(3))):
        c = Cluster(w=w)
        c.co.write(KEY, w, b"*", SET, c.done)
        c.of("rq_set")[0].callback(PUT_REPLY)
        replaces = c.of("rq_replace")
        for i in order:
            if i < len(replaces):
                replaces[i].callback(1)
        assert c.answers == [(NEW, b"OK")]
