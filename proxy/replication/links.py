"""What the replication layer needs of a replica link, and how a link reports failure.

The quorum state machines (coordinator.py), handoff and the canary are written against
``Link``; proxy/server/links.py implements it over a pipelined TCP connection, and the
unit tests over a small recording fake. A request's callback gets the reply, a
``ReplyError``, or a ``ReplicaFailure`` when the replica did not answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..protocol.resp import ReplyError

Callback = Callable[[Any], None]


class Link(Protocol):
    id: str
    actor: bytes
    up: bool
    down_since: float | None  # time.monotonic() when it went down; None while up

    def request(self, payload: bytes, callback: Callback) -> None: ...
    def get(self, key: bytes, callback: Callable[[int, Any], None], index: int,
            encoded: bytes | None = None) -> None: ...
    def fail(self, why: str) -> None: ...


class ReplicaFailure:
    """Passed to a callback instead of a reply: the replica did not answer."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"ReplicaFailure({self.reason!r})"


SHUTTING_DOWN = "proxy shutting down"
DOWN = ReplicaFailure("down")
TIMEOUT = ReplicaFailure("timeout")
CLOSED = ReplicaFailure("connection lost")

# Errors that say "this replica cannot serve now", not "your command is wrong".
REPLICA_ERRORS = ("LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM", "MISCONF", "NOSCRIPT",
                  "ERR Function not found", "NOAUTH", "WRONGPASS", "CLUSTERDOWN")


def is_replica_error(reply: Any) -> bool:
    return type(reply) is ReplicaFailure or (
        type(reply) is ReplyError and reply.text.startswith(REPLICA_ERRORS)
    )


