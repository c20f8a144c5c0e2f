"""A proxy follows the cluster's membership record (membership.py has the theory).

Every second ``poll`` reads the record every up replica holds (one HMGET each), takes the
highest, sends it to the replicas that hold a lower one or none (a replica that joined,
or restarted empty), and when it is newer than the one applied hands it to ``apply``
(the server builds links for new nodes, replaces the coordinator's placement and closes
links to removed nodes). Then it reports the version applied, with the time, under
``__rq:members:applied`` on every up replica: ``redquorum join``/``leave`` waits for
every live proxy to report a phase before it starts the next.

A proxy that applied a record and finds only older ones, or none (the replicas restarted
empty), writes its own back: a record is never undone by data loss. When no replica
holds a record and the proxy has applied none, it proposes its configuration's as
version 1 on every up replica and adopts what the next read finds: of two proxies that
start at once with different lists, the one whose record sorts higher wins everywhere
(``rq_members_put``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from ..protocol.resp import command
from . import wire
from .links import Link
from .membership import APPLIED_KEY, MEMBERS_KEY, BadRecord, Record, best

log = logging.getLogger("redquorum.membership")


class Follower:
    def __init__(self, links: Mapping[str, Link], proxy_id: str, proposal: Record,
                 apply: Callable[[Record], None]) -> None:
        self.links = links  # the server's dict: links it adds are polled from then on
        self.proxy_id = proxy_id.encode()
        self.proposal = proposal  # written as version 1 when no replica holds a record
        self.apply = apply
        self.applied: Record | None = None
        self.polls = 0  # completed
        self.busy = False
        self._bad_logged: set[str] = set()

    def poll(self) -> None:
        if self.busy:
            return
        up = [link for link in self.links.values() if link.up]
        if not up:
            return
        self.busy = True
        replies: dict[str, Any] = {}
        payload = wire.members_get(MEMBERS_KEY)
        for link in up:
            link.request(payload, partial(self._got, link, up, replies))

    def _got(self, link: Link, up: list[Link], replies: dict[str, Any], reply: Any) -> None:
        replies[link.id] = reply
        if len(replies) < len(up):
            return
        self.busy = False
        self.polls += 1
        try:
            self._decide(up, replies)
        except Exception:  # a background duty's surprise must not take the proxy down
            log.exception("membership poll failed")

    def _decide(self, up: list[Link], replies: dict[str, Any]) -> None:
        held: dict[str, Record | None] = {}
        for link in up:
            reply = replies[link.id]
            if type(reply) is not list or len(reply) != 2:
                continue  # the replica did not answer: it is left alone this round
            held[link.id] = self._parse(link.id, reply[1])
        records = [r for r in held.values() if r is not None]
        top = best(records)
        mine = self.applied
        if mine is not None and (top is None or top.order() < mine.order()):
            top = mine  # the replicas lost it (restarted empty): the newest known goes back
        if top is None:
            if held:
                self._propose(up, self.proposal)
            return
        for link in up:
            if link.id in held and (held[link.id] is None or held[link.id] != top):
                link.request(wire.members_put(MEMBERS_KEY, top.version, top.encode()), _ignore)
        if self.applied is None or top.order() > self.applied.order():
            self.apply(top)
            self.applied = top
        self._report(up)

    def _parse(self, ident: str, data: Any) -> Record | None:
        if type(data) is not bytes:
            return None
        try:
            return Record.decode(data)
        except BadRecord as exc:
            if ident not in self._bad_logged:
                self._bad_logged.add(ident)
                log.error("replica %s holds an unreadable membership record (ignored): %s",
                          ident, exc)
            return None

    def _propose(self, up: list[Link], record: Record) -> None:
        for link in up:
            link.request(wire.members_put(MEMBERS_KEY, record.version, record.encode()), _ignore)
        self.poll()  # queued after the writes on each link: it reads what they left

    def _report(self, up: list[Link]) -> None:
        assert self.applied is not None
        value = b"%d %.3f" % (self.applied.version, time.time())
        payload = command(b"HSET", APPLIED_KEY, self.proxy_id, value)
        for link in up:
            link.request(payload, _ignore)


def _ignore(reply: Any) -> None:
    pass
