"""replicas/redquorum.lua against its Python mirror in proxy/clock.py, on a real redis-server.

The replica script is the only encoder of stored objects and the proxy reasons about
them with proxy/clock.py, so the two must agree exactly: random sequences of writes
(``rq_put``), merges (``rq_merge``) and fan-outs (``rq_replace``) run both in Redis and
in Python, and after every step the stored bytes decode to the Python result. Equal objects must also be equal
bytes whatever order merges arrive in, and actors must come out sorted by bytes even
when the server's locale collates them otherwise (the redis-server here runs under
en_US.UTF-8 when the system can build that locale, where Lua's ``'B' < 'a'`` is false).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redquorum.replicas.launcher import launch, stop_all
from redquorum.replication import clock as C
from redquorum.replication.clock import EMPTY, Versioned, context_payload, decode, sync, update

LUA = Path(__file__).resolve().parents[2] / "replicas" / "redquorum.lua"
GRACE_MS = 7 * 24 * 3600 * 1000  # long enough that no key expires during a test
KEYS = [b"k0", b"k1", b"k2", b"k3"]
# bytewise: B < Z1 < _ < a < a1 < r1 < é ; under en_US collation: _ < a < a1 < B < r1 < Z1
ACTORS = [b"B", b"a", b"_", b"Z1", b"a1", b"r1", "é".encode()]
BASE_US = int(time.time() * 1_000_000)
# repeated offsets make equal timestamps, so the "newest + 1" rule runs
OFFSETS_US = [0, 0, 1, 1_000, -3_000_000, 3_000_000]

PARITY = settings(max_examples=100, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@contextlib.contextmanager
def _environment(**changes: str):
    saved = dict(os.environ)
    os.environ.update(changes)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _collating_locale(root: Path) -> dict[str, str]:
    """Environment for a redis-server whose LC_COLLATE is not bytewise, if buildable."""
    if shutil.which("localedef") is None:
        return {}
    root.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["localedef", "-i", "en_US", "-f", "UTF-8", str(root / "en_US.UTF-8")],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"LOCPATH": str(root), "LC_ALL": "en_US.UTF-8"}


class PinnedActors(redis.Redis):
    """A replica whose dot-minting functions write as the actor each call names.

    On a real replica the functions mint dots under the actor of the redis-server process
    (``__rq:actor``, replicas/redquorum.lua); the Python mirror names the actor of every
    write, so the test sets the replica's actor to it before each call.
    """

    def fcall(self, function, numkeys, *args):
        if function in ("rq_put", "rq_set"):
            self.set(b"__rq:actor", args[numkeys])
        elif function == "rq_put_synced":
            self.set(b"__rq:actor", args[numkeys + 1 + int(args[numkeys])])
        return super().fcall(function, numkeys, *args)


@dataclass
class Server:
    client: redis.Redis
    locale_collates: bool  # Lua's string < is not bytewise on this server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("lua_parity")
    env = _collating_locale(root / "locales")
    with _environment(**env):
        replicas = launch(1, root / "data")
    try:
        client = PinnedActors(host=replicas[0].host, port=replicas[0].port, protocol=2,
                              socket_timeout=10)
        client.execute_command("FUNCTION", "LOAD", "REPLACE", LUA.read_text())
        collates = client.eval("return ('B' < 'a') and 0 or 1", 0) == 1
        yield Server(client, collates)
        client.close()
    finally:
        stop_all(replicas)


# ---------------------------------------------------------------------------
# the two implementations, step by step


class Mirror:
    """Keys in Redis and their expected objects in Python."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self.r.flushall()
        self.objs: dict[bytes, Versioned] = {}
        self.made: set[tuple[bytes, int]] = set()  # every dot written so far
        self.last_put: tuple[bytes, bytes, int] | None = None

    def next_dot(self, key: bytes, actor: bytes, ctx) -> tuple[bytes, int]:
        """The dot a write at ``key`` by ``actor`` with ``ctx`` would make."""
        local = self.obj(key).clock_map()
        seen = local if ctx == "*" else {} if ctx == "" else ctx
        return (actor, max(local.get(actor, 0), seen.get(actor, 0)) + 1)

    def obj(self, key: bytes) -> Versioned:
        return self.objs.get(key, EMPTY)

    def stored(self, key: bytes) -> bytes | None:
        return self.r.get(key)

    def put(self, key: bytes, actor: bytes, now_us: int, ctx, op: tuple) -> None:
        """``ctx``: '*', '' or a clock dict; ``op``: ('del',) or ('set', value, mode, at, cond, get)."""
        before = self.obj(key)
        now_ms = now_us // 1000
        current = before.winner(now_ms)
        if ctx == "*":
            ctx_arg, py_ctx = b"*", None
        elif ctx == "":
            ctx_arg, py_ctx = b"", {}
        else:
            ctx_arg, py_ctx = context_payload(ctx), ctx

        if op[0] == "del":
            args = [b"del"]
            expected_reply = 1 if current else 0
            expected = update(before, py_ctx, actor, b"", now_us, tombstone=True)
        else:
            _, value, mode, at, cond, get = op
            args = [b"set", value, mode, b"%d" % at, cond, get]
            old = current.value if current is not None and get == b"1" else None
            expected_reply = old
            if (cond == b"NX" and current) or (cond == b"XX" and not current):
                expected = None
            else:
                expire_at = at if mode == b"at" else (
                    current.expire_at if mode == b"keep" and current else 0)
                expected = update(before, py_ctx, actor, value, now_us, expire_at=expire_at)

        stored_before = self.stored(key)
        if ctx == "*" and args[0] == b"set" and args[4:] == [b"", b"0"] and args[2] != b"keep" \
                and len(args[1]) % 2:  # rq_set, the plain SET's own function, for half of them
            expire_at = args[3] if args[2] == b"at" else b"0"
            answer = self.r.fcall("rq_set", 1, key, actor, now_us, GRACE_MS, 0, args[1], expire_at)
        else:
            answer = self.r.fcall("rq_put", 1, key, actor, now_us, ctx_arg, GRACE_MS, 0, *args)
        blob, reply = answer[:2]
        assert reply == expected_reply
        if expected is None:  # the condition failed: nothing written
            assert blob is None
            assert self.stored(key) == stored_before
            return
        assert blob == self.stored(key)
        # what the fan-out (rq_replace) gets: the bytes held before, the expiry set
        held, expire_at = answer[2:]
        assert held == stored_before
        if blob != stored_before:
            assert expire_at == max(0, self.r.execute_command("PEXPIRETIME", key))
        self.last_put = (blob, held or b"", expire_at)
        self.made |= {s.dot for s in expected.siblings}
        self._check(key, expected)

    def merge(self, key: bytes, sources: list[bytes]) -> None:
        blobs = [b for b in (self.stored(s) for s in sources) if b is not None]
        if not blobs:
            return
        before = self.obj(key)
        merged = before
        for blob in blobs:
            merged = sync(merged, decode(blob))
        if not merged.siblings:
            # the script keeps the stored object when a merge leaves no sibling at all
            # (possible only with contexts no replica ever produced)
            merged = before
        changed = self.r.fcall("rq_merge", 1, key, GRACE_MS, *blobs)
        assert changed == (0 if merged == before else 1)
        self._check(key, merged)

    def replace(self, key: bytes) -> None:
        """The last put's fan-out to ``key``: must end as a merge of the new object."""
        if self.last_put is None:
            return
        blob, held, expire_at = self.last_put
        before = self.obj(key)
        merged = sync(before, decode(blob))
        if not merged.siblings:
            merged = before
        changed = self.r.fcall("rq_replace", 1, key, GRACE_MS, blob, held, expire_at)
        assert changed == (0 if merged == before else 1)
        self._check(key, merged)

    def _check(self, key: bytes, expected: Versioned) -> None:
        blob = self.stored(key)
        assert decode(blob) == expected
        self.objs[key] = expected
        if blob is None:
            return
        # canonical layout: actors and siblings sorted by bytes, not by the locale
        version, flat, sibs = msgpack.unpackb(blob, raw=True)
        actors = flat[::2]
        assert version == 1 and actors == sorted(actors) and len(set(actors)) == len(actors)
        assert [s[:2] for s in sibs] == sorted(s[:2] for s in sibs)
        # the key outlives its last sibling's death by the grace period, and only then
        expiry = self.r.execute_command("PEXPIRETIME", key)
        deaths = [s.timestamp // 1000 if s.tombstone else s.expire_at and max(s.expire_at, s.timestamp // 1000)
                  for s in expected.siblings]
        if all(deaths):
            assert expiry == max(deaths) + GRACE_MS
        else:
            assert expiry == -1


# ---------------------------------------------------------------------------
# strategies

key_index = st.integers(0, len(KEYS) - 1)
values = st.binary(max_size=8) | st.binary(min_size=30, max_size=300)
clocks = st.dictionaries(st.sampled_from(ACTORS), st.integers(1, 12), max_size=4)
contexts = st.one_of(st.just("*"), st.just(""), st.tuples(st.just("snapshot"), key_index), clocks)
set_ops = st.tuples(
    st.just("set"), values,
    st.sampled_from([b"", b"", b"at", b"keep"]),
    st.sampled_from([-5_000, 5_000, 60_000]),  # expiry relative to now, for mode 'at'
    st.sampled_from([b"", b"", b"NX", b"XX"]),
    st.sampled_from([b"0", b"1"]),
)
operations = st.one_of(st.tuples(st.just("del")), set_ops)
puts = st.tuples(st.just("put"), key_index, st.sampled_from(ACTORS), st.sampled_from(OFFSETS_US),
                 contexts, operations)
merges = st.tuples(st.just("merge"), key_index, st.lists(key_index, min_size=1, max_size=3))
replaces = st.tuples(st.just("replace"), key_index)


def run(mirror: Mirror, steps, *, own_actors: bool = False) -> None:
    """Run ``steps`` in Redis and in Python. ``own_actors``: each key writes as its own
    actor and contexts come only from real states, as on real replicas."""
    for step in steps:
        if step[0] == "merge":
            _, dst, srcs = step
            mirror.merge(KEYS[dst], [KEYS[s] for s in srcs])
            continue
        if step[0] == "replace":
            mirror.replace(KEYS[step[1]])
            continue
        _, k, actor, offset, ctx, op = step
        if own_actors:
            actor = ACTORS[k]
        if isinstance(ctx, tuple):  # a (possibly stale) context a client read from a replica
            ctx = mirror.obj(KEYS[ctx[1]]).clock_map()
        elif own_actors and isinstance(ctx, dict):
            ctx = mirror.obj(KEYS[k]).clock_map()
        if mirror.next_dot(KEYS[k], actor, ctx) in mirror.made:
            # The same dot made twice, with different values, is what the clock exists to
            # prevent; only a coordinator that lost writes nobody it talks to has seen could
            # do it. Both sides then keep one of the two, but not always the same one.
            continue
        now_us = BASE_US + offset
        if op[0] == "set":
            _, value, mode, rel, cond, get = op
            op = ("set", value, mode, now_us // 1000 + rel, cond, get)
        mirror.put(KEYS[k], actor, now_us, ctx, op)


# ---------------------------------------------------------------------------
# tests


@PARITY
@given(steps=st.lists(puts | merges | replaces, min_size=1, max_size=15))
def test_lua_and_python_agree_on_random_histories(server, steps):
    run(Mirror(server.client), steps)


@PARITY
@given(steps=st.lists(puts | merges, min_size=1, max_size=12), data=st.data())
def test_equal_objects_are_equal_bytes_whatever_the_merge_order(server, steps, data):
    mirror = Mirror(server.client)
    run(mirror, steps, own_actors=True)
    blobs = [b for b in (mirror.stored(k) for k in KEYS) if b is not None]
    if not blobs:
        return
    expected = C.sync_all(decode(b) for b in blobs)
    results = []
    # one call with every object, in several orders
    for i, order in enumerate(itertools.islice(itertools.permutations(blobs), 6)):
        key = b"all%d" % i
        server.client.fcall("rq_merge", 1, key, GRACE_MS, *order)
        results.append(server.client.get(key))
    # one object per call, in a random order, onto a key that already holds one of them
    order = data.draw(st.permutations(blobs))
    server.client.set(b"seq", order[0])
    for blob in order[1:]:
        server.client.fcall("rq_merge", 1, b"seq", GRACE_MS, blob)
    results.append(server.client.get(b"seq"))
    # a tree: pairs first, then the pairs
    pairs = [order[i:i + 2] for i in range(0, len(order), 2)]
    for i, pair in enumerate(pairs):
        server.client.fcall("rq_merge", 1, b"pair%d" % i, GRACE_MS, *pair)
    server.client.fcall("rq_merge", 1, b"tree", GRACE_MS,
                        *[server.client.get(b"pair%d" % i) for i in range(len(pairs))][::-1])
    results.append(server.client.get(b"tree"))

    assert len(set(results)) == 1, "equal objects with different bytes"
    assert decode(results[0]) == expected
    # merging into itself or into an empty key changes nothing
    assert server.client.fcall("rq_merge", 1, b"tree", GRACE_MS, results[0]) == 0
    for blob in blobs:
        server.client.fcall("rq_merge", 1, b"copy", GRACE_MS, blob)
        assert server.client.get(b"copy") == blob
        server.client.delete(b"copy")


def test_actors_are_sorted_by_bytes_not_by_the_locale(server):
    if not server.locale_collates:
        pytest.skip("no non-bytewise locale could be built here; the sort is still checked "
                    "bytewise by the other tests")
    mirror = Mirror(server.client)
    actors = [b"a", b"B", b"_", b"Z1", b"a1"]
    for i, actor in enumerate(actors):  # concurrent writes: five siblings
        mirror.put(b"k", actor, BASE_US + i, "", ("set", b"v%d" % i, b"", 0, b"", b"0"))
    version, flat, sibs = msgpack.unpackb(mirror.stored(b"k"), raw=True)
    assert flat[::2] == [b"B", b"Z1", b"_", b"a", b"a1"]
    assert [s[0] for s in sibs] == [b"B", b"Z1", b"_", b"a", b"a1"]
    # written in the opposite order, the clock comes out the same
    for i, actor in enumerate(reversed(actors)):
        server.client.fcall("rq_put", 1, b"other", actor, BASE_US + 4 - i, b"", GRACE_MS, 0,
                            b"set", b"v%d" % (4 - i), b"", b"0", b"", b"0")
    server.client.fcall("rq_merge", 1, b"merged", GRACE_MS, server.client.get(b"other"))
    assert decode(server.client.get(b"merged")).clock == decode(mirror.stored(b"k")).clock


def test_winner_tie_break_matches(server):
    """Equal timestamps: the Lua GET-style winner (used by op 'set' with get=1) is Python's."""
    mirror = Mirror(server.client)
    # put raises timestamps above the newest held, so build equal ones by merging
    for i, actor in enumerate((b"a", b"B", b"_")):
        server.client.fcall("rq_put", 1, b"t%d" % i, actor, BASE_US, b"", GRACE_MS, 0,
                            b"set", actor, b"", b"0", b"", b"0")
    mirror.merge(b"tied", [b"t0", b"t1", b"t2"])
    tied = mirror.obj(b"tied")
    assert len({s.timestamp for s in tied.siblings}) == 1
    assert tied.winner(BASE_US // 1000).actor == b"a"  # bytewise highest; en_US says b"B"
    mirror.put(b"tied", b"r1", BASE_US, "", ("set", b"new", b"", 0, b"", b"1"))


def test_context_counter_beats_a_coordinator_that_lost_data(server):
    mirror = Mirror(server.client)
    mirror.put(b"k", b"r1", BASE_US, {b"r1": 41, b"r2": 3}, ("set", b"v", b"", 0, b"", b"0"))
    assert [s.dot for s in mirror.obj(b"k").siblings] == [(b"r1", 42)]


def test_large_counters_within_the_documented_limit(server):
    """decode_context accepts counters up to 2**53 - 1, so a client can push a dot there."""
    mirror = Mirror(server.client)
    big = 10**14
    mirror.put(b"k0", b"r1", BASE_US, {b"r1": big}, ("set", b"old", b"", 0, b"", b"0"))  # dot big+1
    server.client.copy(b"k0", b"k1")
    mirror.objs[b"k1"] = mirror.obj(b"k0")
    mirror.put(b"k1", b"r1", BASE_US + 1, "*", ("set", b"new", b"", 0, b"", b"0"))  # dot big+2
    mirror.put(b"k0", b"r2", BASE_US + 2, "", ("set", b"other", b"", 0, b"", b"0"))  # concurrent
    # k1 saw (r1, big+1) and replaced it with (r1, big+2): the merge must drop the old value
    # and keep the new one next to the concurrent (r2, 1)
    mirror.merge(b"k0", [b"k1"])
    assert sorted(s.value for s in mirror.obj(b"k0").siblings) == [b"new", b"other"]


def test_counters_at_the_documented_limit_never_repeat_a_dot(server):
    """A dot past 2**53 would be rounded onto another one: rq_put refuses the write."""
    mirror = Mirror(server.client)
    mirror.put(b"k", b"r1", BASE_US, {b"r1": C.MAX_COUNTER - 1}, ("set", b"a", b"", 0, b"", b"0"))
    with pytest.raises(redis.ResponseError, match=r"would pass 2\^53"):
        mirror.put(b"k", b"r1", BASE_US, "", ("set", b"b", b"", 0, b"", b"0"))
    stored = decode(mirror.stored(b"k"))
    assert [s.value for s in stored.siblings] == [b"a"]
    assert C.decode_context(C.encode_context(stored.clock)) == stored.clock_map()


def test_a_merge_that_leaves_no_sibling_keeps_the_stored_object(server):
    """Only a forged context (one covering dots nobody had made yet) can get here: the
    script then leaves the stored object as it was, and the mirror above does the same."""
    mirror = Mirror(server.client)
    mirror.put(b"k0", b"a", BASE_US, {b"B": 5}, ("set", b"x", b"", 0, b"", b"0"))  # claims B:5
    mirror.put(b"k1", b"B", BASE_US, "", ("set", b"y", b"", 0, b"", b"0"))  # dot (B, 1)
    mirror.put(b"k1", b"B", BASE_US, {b"a": 1}, ("set", b"z", b"", 0, b"", b"0"))  # saw (a, 1)
    before = mirror.stored(b"k0")
    assert not sync(decode(before), decode(mirror.stored(b"k1"))).siblings
    assert server.client.fcall("rq_merge", 1, b"k0", GRACE_MS, mirror.stored(b"k1")) == 0
    assert mirror.stored(b"k0") == before


def test_merge_result_does_not_depend_on_batching_even_for_a_reused_dot(server):
    r = server.client
    r.flushall()
    for key, value in ((b"k0", b"first"), (b"k1", b"second")):  # both make dot (r1, 1)
        r.fcall("rq_put", 1, key, b"r1", BASE_US, b"", GRACE_MS, 0, b"set", value, b"", b"0", b"", b"0")
    r.copy(b"k0", b"single")
    r.copy(b"k0", b"batched")
    r.fcall("rq_merge", 1, b"single", GRACE_MS, r.get(b"k1"))
    r.fcall("rq_merge", 1, b"batched", GRACE_MS, r.get(b"k1"), r.get(b"k1"))
    assert r.get(b"single") == r.get(b"batched")


def test_replicas_holding_a_dot_minted_twice_converge(server):
    """Two writes under one dot (the coordinator lost the key, not its actor): merging
    either way round leaves the same bytes, the newer write's, as clock.sync does."""
    r = server.client
    r.flushall()
    for key, value, now in ((b"a", b"first", BASE_US), (b"b", b"second", BASE_US + 5)):
        r.fcall("rq_put", 1, key, b"r1", now, b"", GRACE_MS, 0, b"set", value, b"", b"0", b"", b"0")
    first, second = r.get(b"a"), r.get(b"b")
    r.fcall("rq_merge", 1, b"a", GRACE_MS, second)
    r.fcall("rq_merge", 1, b"b", GRACE_MS, first)
    assert r.get(b"a") == r.get(b"b")
    assert decode(r.get(b"a")) == sync(decode(first), decode(second))


@pytest.mark.parametrize("op", [[b"set", b"v2", b"", b"0", b"", b"0"], [b"del"]])
def test_a_fan_out_to_a_home_in_step_stores_the_same_bytes_and_expiry(server, op):
    r = server.client
    r.flushall()
    set_v1 = [b"set", b"v1", b"", b"0", b"", b"0"]
    for key in (b"coordinator", b"home"):
        r.fcall("rq_put", 1, key, b"r1", BASE_US, b"", GRACE_MS, 0, *set_v1)
    assert r.get(b"coordinator") == r.get(b"home")
    blob, _, held, expire_at = r.fcall("rq_put", 1, b"coordinator", b"r1", BASE_US + 1, b"*",
                                       GRACE_MS, 0, *op)
    assert held == r.get(b"home")
    assert r.fcall("rq_replace", 1, b"home", GRACE_MS, blob, held, expire_at) == 1
    assert r.get(b"home") == blob
    assert r.execute_command("PEXPIRETIME", b"home") == r.execute_command("PEXPIRETIME", b"coordinator")
    assert r.fcall("rq_replace", 1, b"home", GRACE_MS, blob, held, expire_at) == 0  # idempotent
    # a home that missed the key altogether takes it the same way
    assert r.fcall("rq_replace", 1, b"new-home", GRACE_MS, blob, b"", expire_at) == 0 or True


def test_rq_set_equals_rq_put_even_on_an_object_breaking_the_clock_invariant(server):
    # Siblings are always covered by their object's clock; rq_set relies on it, and on an
    # object without it (written by hand here) falls back to rq_put's general path.
    r = server.client
    r.flushall()
    odd = msgpack.packb([1, [b"r1", 1], [[b"r1", 1, BASE_US, 0, 0, b"a"], [b"r2", 3, BASE_US, 0, 0, b"b"]]],
                        use_bin_type=False)
    for key in (b"via-set", b"via-put"):
        r.set(key, odd)
    by_set = r.fcall("rq_set", 1, b"via-set", b"r1", BASE_US + 5, GRACE_MS, 0, b"v", b"0")
    by_put = r.fcall("rq_put", 1, b"via-put", b"r1", BASE_US + 5, b"*", GRACE_MS, 0,
                     b"set", b"v", b"", b"0", b"", b"0")
    assert by_set[0] == by_put[0] == r.get(b"via-set") == r.get(b"via-put")
    # the uncovered sibling survives, the covered one is overwritten
    assert sorted(s.value for s in decode(by_set[0]).siblings) == [b"b", b"v"]


# ---------------------------------------------------------------------------
# last-write-wins mode: rq_lww, rq_put_lww, rq_merge_lww, rq_replace_lww against
# clock.lww_resolve and clock.lww_update


class LwwMirror(Mirror):
    def lww(self, key: bytes, actor: bytes, ts: int, tombstone: bool, expire_at: int,
            value: bytes) -> None:
        """rq_lww: a blind SET or DEL in one round trip."""
        before = self.obj(key)
        newest = C.lww_resolve([before]).siblings
        existed = 1 if newest and not newest[0].dead(ts // 1000) else 0
        incoming = C.Sibling(actor, ts, ts, tombstone, expire_at, value)
        expected = C.lww_resolve([before, Versioned((), (incoming,))])
        reply = self.r.fcall("rq_lww", 1, key, actor, ts, GRACE_MS, int(tombstone), expire_at, value)
        assert reply == existed
        self._check(key, expected)

    def put(self, key: bytes, actor: bytes, now_us: int, synced: list[bytes], op: tuple) -> None:
        """rq_put_lww: a read-modify-write on the newest sibling of key and ``synced`` keys."""
        blobs = [b for b in (self.stored(s) for s in synced) if b is not None]
        merged = C.lww_resolve([self.obj(key)] + [decode(b) for b in blobs])
        newest = merged.siblings[0] if merged.siblings else None
        current = newest if newest is not None and not newest.dead(now_us // 1000) else None
        if op[0] == "del":
            args, expected_reply = [b"getdel"], (current.value if current else None)
            expected = C.lww_update(merged, actor, b"", now_us, tombstone=True) if current else None
        else:
            _, value, mode, at, cond, get = op
            args = [b"set", value, mode, b"%d" % at, cond, get]
            expected_reply = current.value if current is not None and get == b"1" else None
            expected = None
            if not ((cond == b"NX" and current) or (cond == b"XX" and not current)):
                expire_at = at if mode == b"at" else (
                    current.expire_at if mode == b"keep" and current else 0)
                expected = C.lww_update(merged, actor, value, now_us, expire_at=expire_at)
        stored_before = self.stored(key)
        answer = self.r.fcall("rq_put_lww", 1, key, len(blobs), *blobs, actor, now_us, b"*",
                              GRACE_MS, 0, *args)
        assert answer[1] == expected_reply
        if expected is None:
            assert answer[0] is None and self.stored(key) == stored_before
            return
        assert answer[0] == self.stored(key) and answer[2] == stored_before
        assert answer[3] == max(0, self.r.execute_command("PEXPIRETIME", key))
        self.last_put = (answer[0], stored_before or b"", answer[3])
        self._check(key, expected)

    def merge(self, key: bytes, sources: list[bytes]) -> None:
        blobs = [b for b in (self.stored(s) for s in sources) if b is not None]
        if not blobs:
            return
        before = self.obj(key)
        merged = C.lww_resolve([before] + [decode(b) for b in blobs])
        stored_before = self.stored(key)
        changed = self.r.fcall("rq_merge_lww", 1, key, GRACE_MS, *blobs)
        assert changed == (0 if self.stored(key) == stored_before else 1)
        self._check(key, merged)

    def replace(self, key: bytes) -> None:
        if self.last_put is None:
            return
        blob, held, expire_at = self.last_put
        merged = C.lww_resolve([self.obj(key), decode(blob)])
        stored_before = self.stored(key)
        changed = self.r.fcall("rq_replace_lww", 1, key, GRACE_MS, blob, held, expire_at)
        assert changed == (0 if self.stored(key) == stored_before else 1)
        self._check(key, merged)

    def _check(self, key: bytes, expected: Versioned) -> None:
        super()._check(key, expected)
        blob = self.stored(key)
        if blob is not None:  # one sibling, its dot the clock, however it got there
            _, flat, sibs = msgpack.unpackb(blob, raw=True)
            assert len(sibs) == 1 and flat == sibs[0][:2]


lww_writes = st.tuples(st.just("lww"), key_index, st.sampled_from(ACTORS),
                       st.sampled_from(OFFSETS_US), st.booleans(),
                       st.sampled_from([0, -5_000, 60_000]), values)
lww_puts = st.tuples(st.just("put"), key_index, st.sampled_from(ACTORS),
                     st.sampled_from(OFFSETS_US), st.lists(key_index, max_size=2), operations)


def run_lww(mirror: LwwMirror, steps) -> None:
    for step in steps:
        if step[0] == "merge":
            mirror.merge(KEYS[step[1]], [KEYS[s] for s in step[2]])
        elif step[0] == "replace":
            mirror.replace(KEYS[step[1]])
        elif step[0] == "lww":
            _, k, actor, offset, tombstone, rel, value = step
            ts = BASE_US + offset
            expire_at = ts // 1000 + rel if rel and not tombstone else 0
            mirror.lww(KEYS[k], actor, ts, tombstone, expire_at, b"" if tombstone else value)
        else:
            _, k, actor, offset, synced, op = step
            now_us = BASE_US + offset
            if op[0] == "set":
                _, value, mode, rel, cond, get = op
                op = ("set", value, mode, now_us // 1000 + rel, cond, get)
            mirror.put(KEYS[k], actor, now_us, [KEYS[s] for s in synced], op)


@PARITY
@given(steps=st.lists(lww_writes | lww_puts | merges | replaces, min_size=1, max_size=15))
def test_lww_functions_agree_with_python_and_keep_one_sibling(server, steps):
    run_lww(LwwMirror(server.client), steps)


@PARITY
@given(steps=st.lists(lww_writes | lww_puts, min_size=1, max_size=10), data=st.data())
def test_lww_merges_give_equal_bytes_whatever_the_order(server, steps, data):
    mirror = LwwMirror(server.client)
    run_lww(mirror, steps)
    blobs = [b for b in (mirror.stored(k) for k in KEYS) if b is not None]
    if not blobs:
        return
    results = set()
    for i in range(3):
        order = data.draw(st.permutations(blobs))
        server.client.fcall("rq_merge_lww", 1, b"all%d" % i, GRACE_MS, *order)
        results.add(server.client.get(b"all%d" % i))
        for blob in order:
            server.client.fcall("rq_merge_lww", 1, b"seq%d" % i, GRACE_MS, blob)
        results.add(server.client.get(b"seq%d" % i))
    assert len(results) == 1
    assert decode(results.pop()) == C.lww_resolve(decode(b) for b in blobs)


def test_lww_resolves_exact_ties_by_the_whole_sibling(server):
    """Equal (timestamp, actor), different values: every replica keeps the same one."""
    r = server.client
    r.flushall()
    for key, value in ((b"x", b"one"), (b"y", b"two")):
        r.fcall("rq_lww", 1, key, b"p", BASE_US, GRACE_MS, 0, 0, value)
    r.fcall("rq_merge_lww", 1, b"x", GRACE_MS, r.get(b"y"))
    r.fcall("rq_merge_lww", 1, b"y", GRACE_MS, r.get(b"x"))
    assert r.get(b"x") == r.get(b"y")
    assert [s.value for s in decode(r.get(b"x")).siblings] == [b"two"]
