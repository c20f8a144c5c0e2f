"""proxy/backend.py against a real redis-server: every request gets exactly one callback."""

from __future__ import annotations

from functools import partial

import trio
from redquorum.server.app import library_code
from redquorum.server.links import Flusher, ReplicaFailure, ReplicaLink
from redquorum.server.reactor import Reactor


async def test_a_callback_that_fails_the_link_leaves_one_answer_per_request(replicas):
    replica = replicas[0]
    flusher = Flusher()
    reactor = Reactor(flusher)
    link = ReplicaLink(replica.id, replica.host, replica.port, flusher=flusher, timeout=5.0,
                       library=library_code(), reactor=reactor)
    answers: list[list[object]] = [[], [], []]

    def first(reply: object) -> None:
        answers[0].append(reply)
        link.fail("a callback declared the link broken")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        nursery.start_soon(reactor.run)
        await nursery.start(link.run)
        await link.wait_ready()
        # three requests in one write: their replies arrive together, in one read
        link.request(b"*1\r\n$4\r\nPING\r\n", first)
        link.request(b"*1\r\n$4\r\nPING\r\n", answers[1].append)
        link.request(b"*1\r\n$4\r\nPING\r\n", answers[2].append)
        with trio.fail_after(10):
            while not all(answers):
                await trio.sleep(0.01)
        await trio.sleep(0.2)  # a second answer would come now
        nursery.cancel_scope.cancel()
    assert answers[0] == [b"PONG"]
    for later in answers[1:]:
        assert len(later) == 1
        assert later[0] == b"PONG" or isinstance(later[0], ReplicaFailure)


async def test_an_unreadable_reply_fails_the_link_and_it_reconnects():
    """A peer that breaks RESP mid-stream: the request fails once, the link starts over."""
    connections = 0

    async def fake_replica(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        await stream.receive_some()  # CLIENT SETNAME and FCALL rq_library: none loaded
        await stream.send_all(b"+OK\r\n-ERR Function not found\r\n")
        await stream.receive_some()  # FUNCTION LOAD and FCALL rq_actor
        await stream.send_all(b"$9\r\nredquorum\r\n$11\r\nfake~0a1b2c\r\n")
        if connections == 1:
            await stream.receive_some()
            await stream.send_all(b"?not RESP\r\n")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, fake_replica, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        flusher = Flusher()
        reactor = Reactor(flusher)
        # a replica timeout far past the deadline below: only the broken stream may end it
        link = ReplicaLink("fake", "127.0.0.1", port, flusher=flusher, timeout=60.0,
                           library=b"#!lua name=x\n", reactor=reactor)
        nursery.start_soon(flusher.run)
        nursery.start_soon(reactor.run)
        await nursery.start(link.run)
        await link.wait_ready()
        answers: list[object] = []
        link.request(b"*1\r\n$4\r\nPING\r\n", answers.append)
        with trio.fail_after(10):
            while connections < 2 or not link.up:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert len(answers) == 1 and isinstance(answers[0], ReplicaFailure)
