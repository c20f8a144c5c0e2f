"""Writes batched per replica (rq_many), against real redis-servers.

A replica link sends the consecutive write function calls one pass queues for it as one
``rq_many``: each request must still get exactly its own answer (an entry's error to its
request alone), a link failure must answer every request of a batch exactly once, and the
anti-entropy digests must stay exactly what a recomputation from the data gives.
"""

from __future__ import annotations

import signal
import socket
import time
import zlib

import pytest
import redis
import trio
from redquorum.protocol.resp import ReplyError, ReplyParser, command, parse_typed
from redquorum.replication import wire
from redquorum.server.app import library_code
from redquorum.server.links import Flusher, ReplicaFailure, ReplicaLink
from redquorum.server.reactor import Reactor

from tests.harness import wait_for
from tests.integration.test_antientropy import recomputed_digests, stored_digests

GRACE_MS = 3_600_000
PAYLOADS = wire.Payloads(mode="causal", grace_ms=GRACE_MS, hard_limit=100, actors=[b"r1"])


def raw_client(replica) -> redis.Redis:
    return redis.Redis(host=replica.host, port=replica.port, protocol=2, socket_timeout=5)


def entry_args(call: wire.Call) -> list[bytes]:
    """The strings of a Call's rq_many entry: count, crc, then the FCALL's arguments."""
    args = wire_args(wire.many([call.entry], call.width))
    assert args[:4] == [b"FCALL", b"rq_many", b"0", b"%d" % (call.width - 2)]
    return args[3:]


def wire_args(payload: bytes) -> list[bytes]:
    value, end = parse_typed(payload, 0)
    assert end == len(payload)
    return value


def fcall_errors(raw: redis.Redis, *args: bytes) -> list:
    """FCALL through a raw connection, errors inside arrays kept as ReplyError values."""
    kwargs = raw.connection_pool.connection_kwargs
    with socket.create_connection((kwargs["host"], kwargs["port"]), timeout=10) as sock:
        sock.sendall(command(b"FCALL", *args))
        parser = ReplyParser()
        while (reply := parser.gets()) is False:
            parser.feed(sock.recv(65536))
    return reply


# -- the replica function ------------------------------------------------------------------


def test_rq_many_answers_each_entry_as_its_own_call_would(replicas):
    raw = raw_client(replicas[0])
    raw.function_load(library_code().decode(), replace=True)
    raw.set(b"foreign", b"a plain string")
    raw.hset(b"a-hash", b"f", b"v")
    now = time.time_ns() // 1000
    op = wire.set_value(b"value")
    calls = [PAYLOADS.put(b"batched", b"r1", b"*", op), PAYLOADS.put(b"foreign", b"r1", b"*", op),
             PAYLOADS.put(b"a-hash", b"r1", b"*", op), PAYLOADS.put(b"counter", b"r1", b"*",
                                                                    wire.incr_by(5))]
    args = [arg for call in calls for arg in entry_args(call)]
    reply = fcall_errors(raw, b"rq_many", b"0", *args)
    assert len(reply) == 4
    assert type(reply[0]) is list and reply[0][0] == raw.get(b"batched")
    assert isinstance(reply[1], ReplyError) and "did not write" in reply[1].text
    assert isinstance(reply[2], ReplyError) and reply[2].text.startswith("WRONGTYPE")
    assert reply[3][1] == b"5" and raw.get(b"foreign") == b"a plain string"
    # the same call on its own stores the same bytes (same actor, same time)
    alone = raw.fcall("rq_set", 1, b"alone", b"r1", now, GRACE_MS, 100, b"value", 0)
    again = fcall_errors(raw, b"rq_many", b"0", b"9", b"", b"rq_set", b"1", b"again", b"r1",
                         b"%d" % now, b"%d" % GRACE_MS, b"100", b"value", b"0")
    assert again[0][0] == alone[0] == raw.get(b"again")


def test_rq_many_refuses_what_it_does_not_carry_entry_by_entry(replicas):
    raw = raw_client(replicas[0])
    raw.function_load(library_code().decode(), replace=True)
    reply = fcall_errors(raw, b"rq_many", b"0", b"4", b"", b"rq_aae_release", b"1", b"k", b"x",
                         *entry_args(PAYLOADS.put(b"k2", b"r1", b"*", wire.set_value(b"v"))))
    assert isinstance(reply[0], ReplyError) and "does not carry rq_aae_release" in reply[0].text
    assert type(reply[1]) is list and reply[1][0] == raw.get(b"k2")
    malformed = fcall_errors(raw, b"rq_many", b"0", b"9", b"", b"rq_set")
    assert isinstance(malformed, ReplyError) and "malformed" in malformed.text


def test_digests_stay_exact_whether_the_proxy_names_the_partition_or_not(replicas):
    raw = raw_client(replicas[0])
    raw.function_load(library_code().decode(), replace=True)
    args: list[bytes] = []
    for i in range(300):
        key = b"d:%d" % i
        call = (PAYLOADS.put(key, b"r1", b"*", wire.set_value(b"v%d" % i)) if i % 3
                else PAYLOADS.put(key, b"r1", b"*", wire.delete()))
        entry = entry_args(call)
        assert int(entry[1]) == zlib.crc32(key)
        if i % 2:
            entry[1] = b""  # left to the replica to compute
        args += entry
    reply = fcall_errors(raw, b"rq_many", b"0", *args)
    assert len(reply) == 300 and all(type(r) is list for r in reply)
    # then fan-outs and merges of those objects onto a second replica, batched too
    other = raw_client(replicas[1])
    other.function_load(library_code().decode(), replace=True)
    fan: list[bytes] = []
    for i, r in enumerate(reply):
        if r[0] is not None:
            call = (PAYLOADS.replace(b"d:%d" % i, r[0], r[2] or b"", r[3]) if i % 2
                    else PAYLOADS.merge(b"d:%d" % i, r[0]))
            fan += entry_args(call)
    assert all(type(r) is int for r in fcall_errors(other, b"rq_many", b"0", *fan))
    for replica in (raw, other):
        assert stored_digests(replica) == recomputed_digests(replica)
    assert stored_digests(raw) == stored_digests(other)


# -- the link ------------------------------------------------------------------------------


class Running:
    """A ReplicaLink to a real replica, with its flusher and reactor running."""

    def __init__(self, replica, nursery: trio.Nursery, timeout: float = 5.0) -> None:
        self.flusher = Flusher()
        self.reactor = Reactor(self.flusher)
        self.link = ReplicaLink(replica.id, replica.host, replica.port, flusher=self.flusher,
                                timeout=timeout, library=library_code(), reactor=self.reactor)
        nursery.start_soon(self.flusher.run)
        nursery.start_soon(self.reactor.run)

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.link.run)
        await self.link.wait_ready()


async def answered(answers: list[list[object]], settle: float = 0.3) -> None:
    with trio.fail_after(10):
        while not all(answers):
            await trio.sleep(0.01)
    await trio.sleep(settle)  # a second answer would come now


async def test_a_pass_of_writes_leaves_as_one_call_and_each_request_gets_its_own_answer(replicas):
    raw = raw_client(replicas[0])
    raw.set(b"foreign", b"not an object")
    async with trio.open_nursery() as nursery:
        running = Running(replicas[0], nursery)
        await running.start(nursery)
        link = running.link
        raw.config_resetstat()
        keys = [b"b:1", b"b:2", b"foreign", b"b:3"]
        answers: list[list[object]] = [[] for _ in keys]
        for key, got in zip(keys, answers, strict=True):  # one pass: nothing awaited between
            link.request(PAYLOADS.put(key, link.actor, b"*", wire.set_value(b"v-" + key)), got.append)
        await answered(answers)
        nursery.cancel_scope.cancel()
    assert [len(a) for a in answers] == [1, 1, 1, 1]
    assert isinstance(answers[2][0], ReplyError) and "did not write" in answers[2][0].text
    for key, got in zip(keys, answers, strict=True):
        if key != b"foreign":
            assert type(got[0]) is list and got[0][0] == raw.get(key)
    stats = raw.info("commandstats")
    assert stats["cmdstat_fcall"]["calls"] == 1  # the four writes as one rq_many
    assert raw.get(b"foreign") == b"not an object"


async def test_a_get_between_writes_keeps_its_place(replicas):
    raw = raw_client(replicas[0])
    async with trio.open_nursery() as nursery:
        running = Running(replicas[0], nursery)
        await running.start(nursery)
        link = running.link
        first: list[object] = []
        seen: list[object] = []
        second: list[object] = []
        link.request(PAYLOADS.put(b"k", link.actor, b"*", wire.set_value(b"one")), first.append)
        link.get(b"k", lambda tag, reply: seen.append(reply), 0)
        link.request(PAYLOADS.put(b"k", link.actor, b"*", wire.set_value(b"two")), second.append)
        await answered([first, seen, second])
        nursery.cancel_scope.cancel()
    assert seen == [first[0][0]]  # the GET saw the first write, not the second
    assert raw.get(b"k") == second[0][0]


async def test_a_batch_cut_by_a_link_failure_answers_every_request_once(replicas):
    replica = replicas[0]
    async with trio.open_nursery() as nursery:
        running = Running(replica, nursery, timeout=0.5)
        await running.start(nursery)
        link = running.link
        replica.signal(signal.SIGSTOP)  #: the batch is sent and never answered
        try:
            answers: list[list[object]] = [[] for _ in range(20)]
            for i, got in enumerate(answers):
                link.request(PAYLOADS.put(b"cut:%d" % i, link.actor, b"*", wire.set_value(b"v")),
                             got.append)
            await answered(answers, settle=0.5)
        finally:
            replica.signal(signal.SIGCONT)
        assert all(len(a) == 1 and isinstance(a[0], ReplicaFailure) for a in answers)
        # the link reconnects, and the next batch is answered as usual
        with trio.fail_after(10):
            while not link.up:
                await trio.sleep(0.02)
        later: list[object] = []
        link.request(PAYLOADS.put(b"after", link.actor, b"*", wire.set_value(b"v")), later.append)
        await answered([later])
        nursery.cancel_scope.cancel()
    assert type(later[0]) is list


async def test_a_callback_that_fails_the_link_mid_batch_leaves_one_answer_each(replicas):
    async with trio.open_nursery() as nursery:
        running = Running(replicas[0], nursery)
        await running.start(nursery)
        link = running.link
        answers: list[list[object]] = [[], [], []]

        def first(reply: object) -> None:
            answers[0].append(reply)
            link.fail("a callback declared the link broken")

        link.request(PAYLOADS.put(b"m:0", link.actor, b"*", wire.set_value(b"v")), first)
        for i in (1, 2):
            link.request(PAYLOADS.put(b"m:%d" % i, link.actor, b"*", wire.set_value(b"v")),
                         answers[i].append)
        await answered(answers)
        nursery.cancel_scope.cancel()
    # the batch's reply had arrived: every write got its own result, once
    assert all(len(a) == 1 and type(a[0]) is list for a in answers)


# -- through the proxy ---------------------------------------------------------------------


@pytest.mark.slow
def test_digests_stay_exact_after_batched_writes_through_the_proxy(replicas, make_proxy):
    proxy = make_proxy(replicas)
    client = proxy.client()
    for round_ in range(4):  # pipelined writes of many keys: every pass carries several
        pipe = client.pipeline(transaction=False)
        for i in range(500):
            key = b"p:%d" % ((i * 7 + round_) % 400)
            if (i + round_) % 5 == 0:
                pipe.delete(key)
            elif (i + round_) % 7 == 0:
                pipe.incr(b"n:%d" % (i % 20))
            else:
                pipe.set(key, b"r%d-%d" % (round_, i))
        pipe.execute()
    raws = [replicas.raw(r.id) for r in replicas]
    wait_for(lambda: len({tuple(sorted((k, r.get(k)) for k in r.scan_iter(match=b"[pn]:*")))
                          for r in raws}) == 1, what="the replicas to agree")
    client.close()
    proxy.stop()  # its heartbeat writes would change a digest between the two reads below
    for raw in raws:
        assert sum(raw.info("commandstats").get("cmdstat_fcall", {}).values()) > 0
        assert stored_digests(raw) == recomputed_digests(raw)
