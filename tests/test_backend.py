"""proxy/backend.py against a real redis-server: every request gets exactly one callback."""

from __future__ import annotations

import trio

from proxy.backend import Flusher, ReplicaFailure, ReplicaLink
from proxy.reactor import Reactor
from proxy.server import library_code


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
