"""How many replicas a quorum operation needs, has, and can no longer get.

A pure counter every state machine in coordinator.py keeps one of: ``needed`` successes
out of ``of`` replicas. Each replica ends as an ack or a failure (a read may later find
that an ack held undecodable bytes: ``demote`` turns it into a failure). The operation
is ``reached`` once ``needed`` acked, and ``impossible`` once more than ``of - needed``
failed: the replicas left could not make up the difference. The NOQUORUM error a client
gets names the counts and the last failure.
"""

from __future__ import annotations

from ..protocol.resp import ReplyError


def noquorum(op: str, got: int, needed: int, of: int, why: str = "") -> ReplyError:
    text = f"NOQUORUM {op} needs {needed} of {of} replicas, {got} answered"
    if why:
        text += f" ({why})"
    return ReplyError(text)


class Quorum:
    __slots__ = ("needed", "of", "acks", "failures", "why")

    def __init__(self, needed: int, of: int) -> None:
        self.needed = needed
        self.of = of
        self.acks = 0
        self.failures = 0
        self.why = ""  # the last failure, for the NOQUORUM text

    def ack(self) -> None:
        self.acks += 1

    def fail(self, why: str) -> None:
        self.failures += 1
        self.why = why

    def demote(self, why: str) -> None:
        """An ack counted earlier turns out to be a failure."""
        self.acks -= 1
        self.failures += 1
        self.why = why

    @property
    def reached(self) -> bool:
        return self.acks >= self.needed

    @property
    def impossible(self) -> bool:
        return self.failures > self.of - self.needed

    def error(self, op: str) -> ReplyError:
        return noquorum(op, self.acks, self.needed, self.of, self.why)

    def __repr__(self) -> str:
        return (f"Quorum({self.acks}+{self.failures}/{self.of}, needs {self.needed}"
                f"{', reached' if self.reached else ''}"
                f"{', impossible' if self.impossible else ''})")
