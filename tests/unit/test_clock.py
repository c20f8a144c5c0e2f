"""proxy/clock.py: the algebra of dotted version vectors, as hypothesis properties.

Plain properties check each verb on arbitrary well-formed objects; the state machine
at the end checks the whole algebra against a reference model that knows nothing of
version vectors: each replica is the set of write events it has seen, and a value is
alive when no write it has seen superseded it.
"""

from __future__ import annotations

import itertools

import msgpack
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from redquorum.replication import clock as C
from redquorum.replication.clock import (
    CONTEXT_VERSION,
    EMPTY,
    MAX_ACTOR,
    MAX_COUNTER,
    BadContext,
    CorruptObject,
    Sibling,
    Versioned,
    decode,
    decode_context,
    encode_context,
    normalise,
    plain_value,
    sync,
    update,
)

ACTORS = [b"r1", b"r2", b"r3", b"B", b"a", b"_"]
NOW_MS = 1_700_000_000_000

# ---------------------------------------------------------------------------
# strategies: objects that share a universe of dots (one content per dot, as in a
# real cluster, where only the actor's own replica ever makes its dots)


@st.composite
def universes(draw) -> dict[tuple[bytes, int], Sibling]:
    dots = draw(st.sets(st.tuples(st.sampled_from(ACTORS), st.integers(1, 6)), max_size=10))
    universe = {}
    for actor, counter in dots:
        universe[(actor, counter)] = Sibling(
            actor, counter,
            timestamp=draw(st.integers(1, 50)),
            tombstone=draw(st.booleans()),
            expire_at=draw(st.sampled_from([0, 0, NOW_MS - 1, NOW_MS + 1])),
            value=draw(st.binary(max_size=4)),
        )
    return universe


@st.composite
def objects_from(draw, universe: dict[tuple[bytes, int], Sibling]) -> Versioned:
    """A well-formed object: every sibling's dot is covered by the clock (rule 1)."""
    clock = draw(st.dictionaries(st.sampled_from(ACTORS), st.integers(0, 7)))
    held = [s for dot, s in sorted(universe.items()) if clock.get(dot[0], 0) >= dot[1]]
    chosen = draw(st.lists(st.sampled_from(held), unique=True)) if held else []
    return normalise(clock, chosen)


@st.composite
def object_lists(draw, size: int) -> list[Versioned]:
    universe = draw(universes())
    return [draw(objects_from(universe)) for _ in range(size)]


contexts = st.dictionaries(st.sampled_from(ACTORS), st.integers(1, 8))


def dots(obj: Versioned) -> set[tuple[bytes, int]]:
    return {s.dot for s in obj.siblings}


def well_formed(obj: Versioned) -> bool:
    clock = obj.clock_map()
    return (
        list(obj.clock) == sorted(obj.clock)
        and all(c > 0 for _, c in obj.clock)
        and [s.dot for s in obj.siblings] == sorted(s.dot for s in obj.siblings)
        and len(dots(obj)) == len(obj.siblings)
        and all(C.covers(clock, s) for s in obj.siblings)
    )


# ---------------------------------------------------------------------------
# sync: a join-semilattice


@given(object_lists(2))
def test_sync_is_commutative(objs):
    a, b = objs
    assert sync(a, b) == sync(b, a)
    assert well_formed(sync(a, b))


def test_a_dot_minted_twice_resolves_the_same_way_in_either_order():
    """A replica that lost a key (not its actor) mints a dot again for another write: the
    two objects sharing it merge to the same result on every replica, the newer write."""
    old = Versioned(((b"r1", 1),), (Sibling(b"r1", 1, 1_000, False, 0, b"v0"),))
    new = Versioned(((b"r1", 1),), (Sibling(b"r1", 1, 2_000, False, 0, b"v2"),))
    assert sync(old, new) == sync(new, old)
    assert sync(old, new).siblings[0].value == b"v2"


@given(object_lists(3))
def test_sync_is_associative(objs):
    a, b, c = objs
    assert sync(sync(a, b), c) == sync(a, sync(b, c))


@given(object_lists(1))
def test_sync_is_idempotent_and_empty_is_neutral(objs):
    (a,) = objs
    assert sync(a, a) == a
    assert sync(a, EMPTY) == a == sync(EMPTY, a)


@given(object_lists(4), st.permutations(range(4)))
def test_sync_all_ignores_order(objs, order):
    assert C.sync_all(objs) == C.sync_all(objs[i] for i in order)


@given(object_lists(2))
def test_sync_keeps_what_the_other_side_has_not_seen(objs):
    a, b = objs
    merged = sync(a, b)
    assert merged.clock_map() == C.join(a.clock_map(), b.clock_map())
    cb = b.clock_map()
    for s in a.siblings:
        # a sibling survives exactly when the other side holds it too or never saw it
        assert (s in merged.siblings) == (s.dot in dots(b) or not C.covers(cb, s))


# ---------------------------------------------------------------------------
# update: a write with a context


@given(object_lists(1), st.none() | contexts, st.sampled_from(ACTORS), st.binary(max_size=4),
       st.integers(0, 100), st.booleans())
def test_update_drops_exactly_the_covered_siblings(objs, ctx, actor, value, now_us, tombstone):
    (obj,) = objs
    new = update(obj, ctx, actor, value, now_us, tombstone=tombstone, expire_at=7)
    seen = obj.clock_map() if ctx is None else ctx
    local = obj.clock_map()
    counter = max(local.get(actor, 0), seen.get(actor, 0)) + 1
    fresh = Sibling(actor, counter, max(now_us, obj.newest_timestamp() + 1), tombstone, 7, value)

    assert well_formed(new)
    # covered siblings go, concurrent ones stay, and the new value gets a fresh dot
    assert set(new.siblings) == {s for s in obj.siblings if not C.covers(seen, s)} | {fresh}
    assert fresh.dot not in dots(obj)
    assert counter > local.get(actor, 0) and counter > seen.get(actor, 0)
    expected_clock = C.join(local, seen)
    expected_clock[actor] = counter
    assert new.clock_map() == expected_clock
    assert C.descends(new.clock_map(), local) and C.descends(new.clock_map(), seen)


@given(object_lists(1), st.sampled_from(ACTORS), st.integers(1, 2**40))
def test_counter_is_above_a_context_from_a_replica_that_lost_data(objs, actor, seen_counter):
    # the coordinator lost its data (EMPTY) but a client has seen its dot ``seen_counter``
    (obj,) = objs
    new = update(EMPTY, {actor: seen_counter}, actor, b"v", 1)
    assert new.siblings[0].dot == (actor, seen_counter + 1)
    new = update(obj, {actor: seen_counter}, actor, b"v", 1)
    assert dict(new.clock)[actor] == max(obj.clock_map().get(actor, 0), seen_counter) + 1


@given(object_lists(1), st.none() | contexts, st.sampled_from(ACTORS), st.integers(0, 100))
def test_sync_with_an_update_of_yourself_is_the_update(objs, ctx, actor, now_us):
    (obj,) = objs
    new = update(obj, ctx, actor, b"x", now_us)
    assert sync(obj, new) == new
    assert sync(new, obj) == new


@given(object_lists(2), st.sampled_from(ACTORS), st.sampled_from(ACTORS))
def test_writes_that_did_not_see_each_other_both_survive(objs, actor1, actor2):
    a, b = objs
    assume(actor1 != actor2)
    base = sync(a, b)
    w1 = update(base, base.clock_map(), actor1, b"one", 10)
    w2 = update(base, base.clock_map(), actor2, b"two", 10)
    merged = sync(w1, w2)
    assert {s.value for s in merged.siblings if s.dot not in dots(base)} == {b"one", b"two"}
    # a later write that saw both replaces both
    w3 = update(merged, None, actor1, b"three", 11)
    assert [s.value for s in w3.siblings] == [b"three"]


# ---------------------------------------------------------------------------
# winner: a deterministic pick


@given(object_lists(1), st.randoms(use_true_random=False))
def test_winner_is_the_newest_sibling_when_it_lives(objs, rnd):
    (obj,) = objs
    best = obj.winner(NOW_MS)
    if not obj.siblings:
        assert best is None
        return
    top = max((s.timestamp, s.actor) for s in obj.siblings)
    # ties on (timestamp, actor) are broken by dot order, so any holder of the same
    # normalised object answers the same sibling
    newest = min((s for s in obj.siblings if (s.timestamp, s.actor) == top), key=lambda s: s.dot)
    if newest.dead(NOW_MS):  # a newer DEL or expiry: no older value comes back
        assert best is None
    else:
        assert best == newest
    if len({(s.timestamp, s.actor) for s in obj.siblings}) == len(obj.siblings):
        shuffled = list(obj.siblings)
        rnd.shuffle(shuffled)
        assert Versioned(obj.clock, tuple(shuffled)).winner(NOW_MS) == best


@given(object_lists(2))
def test_winner_is_the_same_whatever_the_merge_order(objs):
    a, b = objs
    assert sync(a, b).winner(NOW_MS) == sync(b, a).winner(NOW_MS)


def test_winner_examples():
    s1 = Sibling(b"r1", 1, 100, False, 0, b"one")
    s2 = Sibling(b"r2", 1, 100, False, 0, b"two")
    s3 = Sibling(b"r3", 1, 200, True, 0, b"")
    s4 = Sibling(b"r0", 1, 300, False, NOW_MS, b"expired")
    assert normalise({b"r1": 1, b"r2": 1}, [s1, s2]).winner(NOW_MS) == s2  # same time: higher actor
    obj = normalise({b"r0": 1, b"r1": 1, b"r2": 1, b"r3": 1}, [s1, s2, s3, s4])
    assert obj.winner(NOW_MS - 1) == s4  # the newest, not yet expired
    assert obj.winner(NOW_MS) is None  # the newest has expired: older values do not come back
    assert normalise({b"r1": 1, b"r2": 1, b"r3": 1}, [s1, s2, s3]).winner(NOW_MS) is None  # a newer DEL
    assert normalise({b"r3": 1}, [s3]).winner(NOW_MS) is None


def test_timestamps_never_go_backwards_on_a_key():
    obj = update(EMPTY, None, b"r1", b"a", 1_000)
    obj = update(obj, {}, b"r2", b"b", 10)  # a slow clock elsewhere
    assert [s.timestamp for s in obj.siblings] == [1_000, 1_001]


# ---------------------------------------------------------------------------
# client contexts

def _framed(flat: list) -> bytes:
    return bytes([CONTEXT_VERSION]) + msgpack.packb(flat, use_bin_type=False)


actor_bytes = st.binary(min_size=1, max_size=MAX_ACTOR)
valid_clocks = st.dictionaries(actor_bytes, st.integers(1, MAX_COUNTER), max_size=20)


@given(valid_clocks)
def test_context_round_trip(clock):
    data = encode_context(clock)
    assert decode_context(data) == clock
    assert encode_context(tuple(sorted(clock.items()))) == data
    assert (data == b"") == (not clock)
    # the payload handed to the replica script is the same msgpack
    assert C.context_payload(clock) == (data[1:] if clock else msgpack.packb([]))


def _rejects(data: bytes) -> None:
    with pytest.raises(BadContext):
        decode_context(data)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.binary(max_size=70)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.binary(max_size=4), inner, max_size=3),
    max_leaves=12,
)
garbage = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: bytes([CONTEXT_VERSION]) + b),
    msgpack_values.map(lambda v: bytes([CONTEXT_VERSION]) + msgpack.packb(v, use_bin_type=False)),
    msgpack_values.map(lambda v: bytes([CONTEXT_VERSION]) + msgpack.packb(v, use_bin_type=True)),
    st.lists(st.tuples(actor_bytes, st.integers(-5, MAX_COUNTER + 5)), max_size=4)
    .map(lambda items: _framed([x for kv in items for x in kv])),
)


@settings(max_examples=300)
@given(garbage)
def test_garbage_contexts_raise_bad_context_only(data):
    try:
        clock = decode_context(data)
    except BadContext:
        return
    # anything accepted is a well-formed clock that encodes back to an equivalent context
    assert all(type(a) is bytes and 0 < len(a) <= MAX_ACTOR for a in clock)
    assert all(type(c) is int and 0 < c <= MAX_COUNTER for c in clock.values())
    assert list(clock) == sorted(clock)
    assert decode_context(encode_context(clock)) == clock


@given(valid_clocks.filter(bool), st.integers(0, 255).filter(lambda v: v != CONTEXT_VERSION))
def test_wrong_version_byte_is_rejected(clock, version):
    _rejects(bytes([version]) + encode_context(clock)[1:])


@given(valid_clocks.filter(lambda c: len(c) >= 2))
def test_unsorted_or_repeated_actors_are_rejected(clock):
    items = sorted(clock.items())
    flat_reversed = [x for kv in reversed(items) for x in kv]
    _rejects(_framed(flat_reversed))
    flat_repeated = [x for kv in items + items[:1] for x in kv]
    _rejects(_framed(flat_repeated))


@pytest.mark.parametrize("counter", [0, -1, -(2**63), MAX_COUNTER + 1, 2**64 - 1, 1.5, True,
                                     None, b"1", [1]])
def test_bad_counters_are_rejected(counter):
    _rejects(_framed([b"r1", counter]))


@pytest.mark.parametrize("actor", [1, None, True, 1.5, [b"r1"], {b"r": 1}, b"", b"x" * (MAX_ACTOR + 1)])
def test_bad_actors_are_rejected(actor):
    _rejects(_framed([actor, 1]))


@pytest.mark.parametrize("data", [
    b"\x01",  # version, then nothing
    b"\x01\xc1",  # msgpack's never-used byte
    b"\x01\x92\xa2r1",  # truncated
    _framed([b"r1", 1])[:-1],
    _framed([b"r1", 1]) + b"\x00",  # trailing bytes
    _framed([b"r1"]),  # odd length
    bytes([CONTEXT_VERSION]) + msgpack.packb({b"r1": 1}),  # a map, not an array
    bytes([CONTEXT_VERSION]) + msgpack.packb(b"r1"),
    bytes([CONTEXT_VERSION]) + msgpack.packb(7),
    bytes([CONTEXT_VERSION]) + b"\xdd\xff\xff\xff\xff",  # array32 of 4 billion, no data
    bytes([CONTEXT_VERSION]) + b"\x91" * 5000 + b"\x90",  # deep nesting
    bytes([CONTEXT_VERSION]) + msgpack.packb(msgpack.ExtType(1, b"x")),
    _framed([b"r1", 1] * 40_000),  # too long
])
def test_malformed_contexts_are_rejected(data):
    _rejects(data)


# ---------------------------------------------------------------------------
# the algebra against a reference model


Dot = tuple[bytes, int]


class ClockAlgebra(RuleBasedStateMachine):
    """Replicas as sets of events, against replicas as dotted version vectors.

    Model: each write is an event (its dot) with the set of events its writer had seen
    (its context). A replica knows a set of events ``seen``; a value is alive at a
    replica when the replica has seen its write and no write it has seen superseded it.
    Contexts are what some replica held at some time (so sometimes stale), nothing,
    or the coordinator's own state.
    """

    contexts = Bundle("contexts")

    @initialize(count=st.integers(2, 4))
    def start(self, count):
        self.names = [b"B", b"a", b"_", b"Z1"][:count]
        self.objs: dict[bytes, Versioned] = dict.fromkeys(self.names, EMPTY)
        self.seen: dict[bytes, set[Dot]] = {n: set() for n in self.names}
        self.superseded_by: dict[Dot, frozenset[Dot]] = {}  # a write → the dots it saw
        self.values: dict[Dot, bytes] = {}
        self.writes = 0

    # -- helpers

    def model_live(self, name: bytes) -> set[Dot]:
        seen = self.seen[name]
        superseded = set().union(*(self.superseded_by[d] for d in seen)) if seen else set()
        return seen - superseded

    @staticmethod
    def clock_dots(clock: dict[bytes, int]) -> set[Dot]:
        return {(a, i) for a, c in clock.items() for i in range(1, c + 1)}

    # -- rules

    @rule(target=contexts, replica=st.integers(0, 3))
    def read_context(self, replica):
        name = self.names[replica % len(self.names)]
        return self.objs[name].clock_map()

    @rule(replica=st.integers(0, 3), context=st.one_of(contexts, st.just({}), st.none()),
          tombstone=st.booleans(), now_us=st.integers(0, 10))
    def write(self, replica, context, tombstone, now_us):
        name = self.names[replica % len(self.names)]
        self.writes += 1
        value = b"w%d" % self.writes
        before = self.objs[name]
        ctx_dots = self.seen[name] if context is None else self.clock_dots(context)
        new = update(before, context, name, value, now_us, tombstone=tombstone)
        (dot,) = dots(new) - dots(before)
        expected_counter = max(before.clock_map().get(name, 0),
                               (context or before.clock_map()).get(name, 0)) + 1
        assert dot == (name, expected_counter)
        assert dot not in self.values, "a dot was reused"
        self.values[dot] = value
        self.superseded_by[dot] = frozenset(ctx_dots)
        self.seen[name] = self.seen[name] | ctx_dots | {dot}
        self.objs[name] = new

    @rule(src=st.integers(0, 3), dst=st.integers(0, 3))
    def sync_pair(self, src, dst):
        a = self.names[src % len(self.names)]
        b = self.names[dst % len(self.names)]
        self.objs[b] = sync(self.objs[b], self.objs[a])
        self.seen[b] = self.seen[b] | self.seen[a]

    @precondition(lambda self: self.writes > 0)
    @rule()
    def sync_everything(self):
        for a, b in itertools.permutations(self.names, 2):
            self.sync_pair(self.names.index(a), self.names.index(b))
        for a, b in itertools.permutations(self.names, 2):
            self.sync_pair(self.names.index(a), self.names.index(b))
        first = self.objs[self.names[0]]
        assert all(self.objs[n] == first for n in self.names)

    # -- invariants

    @invariant()
    def clocks_are_the_seen_events(self):
        for name in self.names:
            assert self.clock_dots(self.objs[name].clock_map()) == self.seen[name]

    @invariant()
    def live_dots_are_the_seen_but_not_superseded_events(self):
        for name in self.names:
            obj = self.objs[name]
            assert well_formed(obj)
            assert dots(obj) == self.model_live(name)
            assert all(s.value == self.values[s.dot] for s in obj.siblings)


ClockAlgebra.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestClockAlgebra = ClockAlgebra.TestCase


def test_plain_value_answers_what_the_winner_answers_for_one_sibling():
    def blob(*sibs):
        return msgpack.packb([1, [b"a", 9], [list(s) for s in sibs]], use_bin_type=False)

    now = 1_000_000
    live = (b"a", 1, 5, 0, 0, b"v")
    cases = [live, (b"a", 1, 5, 1, 0, b""), (b"a", 1, 5, 0, now, b"v"), (b"a", 1, 5, 0, now + 1, b"v")]
    for sib in cases:
        data = blob(sib)
        best = decode(data).winner(now)
        assert plain_value(data, now) == (None if best is None else best.value)
    assert plain_value(blob(live, (b"b", 1, 6, 0, 0, b"w")), now) is False  # siblings: decode
    with pytest.raises(CorruptObject):
        plain_value(b"\xc1garbage", now)
