"""The cluster's membership as a value: which nodes hold which partitions, during a change.

Theory of operation
-------------------
1. The membership is a record kept on every replica under ``__rq:members`` (a hash:
   ``version``, ``record``): the ids and addresses of the nodes, ``n``, and the phase of
   the change running, if any, with the old node list O and the new one N side by side.
   Records are ordered by (version, record bytes); a replica keeps the higher of what it
   holds and what it is sent (``rq_members_put``, atomic), so two proxies that each write
   a first record converge on one, and a newer version always wins.
2. Phases of a change (``redquorum join``/``leave`` writes them, proxies follow):
   ``joining``/``leaving``: reads use O with r; writes go to O ∪ N and need
   w + |N − O| acks among them (Cassandra's pending endpoints). Of the n + k homes of
   O ∪ N at most n − w miss such a write, so it has at least w acks in O and at least w
   in N, whatever k. Then every partition N gains is copied from O (anti-entropy).
   ``switched``: reads use N (it has the copies); writes still go to O ∪ N.
   ``cleanup``: reads and writes use N alone; nodes that lost partitions drop those keys.
   ``stable``: no change runs; O = N.
3. Each phase starts only once every live proxy applied the one before (they report the
   version they applied under ``__rq:members:applied``), so at any moment the proxies
   use at most two adjacent phases, and each pair of adjacent phases is safe together:
   both write to O ∪ N with the larger quorum, or (switched then cleanup) both read N.
4. A one-node change moves only partitions whose homes include the node (consistent
   hashing, ring.py): elsewhere O and N agree and the phases change nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache

from .ring import PARTITIONS, Ring

MEMBERS_KEY = b"__rq:members"
APPLIED_KEY = b"__rq:members:applied"
PROGRESS_KEY = b"__rq:members:progress"

STABLE = "stable"
JOINING = "joining"
LEAVING = "leaving"
SWITCHED = "switched"
CLEANUP = "cleanup"
PHASES = (STABLE, JOINING, LEAVING, SWITCHED, CLEANUP)
CHANGING = (JOINING, LEAVING, SWITCHED)  # writes go to O ∪ N
NEXT_PHASE = {JOINING: SWITCHED, LEAVING: SWITCHED, SWITCHED: CLEANUP, CLEANUP: STABLE}


class BadRecord(ValueError):
    pass


@dataclass(frozen=True)
class Node:
    id: str
    address: str


@dataclass(frozen=True)
class Record:
    version: int
    n: int
    phase: str
    nodes: tuple[Node, ...]  # every node of O ∪ N, by id
    old: tuple[str, ...]
    new: tuple[str, ...]

    @classmethod
    def initial(cls, nodes: list[Node], n: int) -> Record:
        ids = tuple(sorted(node.id for node in nodes))
        return cls(1, n, STABLE, tuple(sorted(nodes, key=lambda x: x.id)), ids, ids)

    # -- wire form --------------------------------------------------------------------

    def encode(self) -> bytes:
        """Canonical JSON: equal records are equal bytes (the tie-break compares bytes)."""
        return json.dumps({
            "version": self.version, "n": self.n, "phase": self.phase,
            "nodes": [{"id": x.id, "address": x.address, "state": self.state(x.id)}
                      for x in self.nodes],
            "old": list(self.old), "new": list(self.new)},
            sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Record:
        try:
            raw = json.loads(data)
            nodes = tuple(Node(str(x["id"]), str(x["address"])) for x in raw["nodes"])
            record = cls(int(raw["version"]), int(raw["n"]), str(raw["phase"]), nodes,
                         tuple(str(i) for i in raw["old"]), tuple(str(i) for i in raw["new"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRecord(f"unreadable membership record: {exc}") from None
        record.check()
        return record

    def check(self) -> None:
        ids = {x.id for x in self.nodes}
        if self.phase not in PHASES:
            raise BadRecord(f"unknown phase {self.phase!r}")
        if set(self.old) | set(self.new) != ids:
            raise BadRecord("old and new node lists do not match the nodes")
        if not 1 <= self.n <= min(len(self.old), len(self.new)):
            raise BadRecord(f"n={self.n} needs at least {self.n} nodes")
        if self.phase == STABLE and self.old != self.new:
            raise BadRecord("a stable record with two node lists")

    def order(self) -> tuple[int, bytes]:
        """Records compare by this: a higher version wins, then the higher bytes."""
        return (self.version, self.encode())

    # -- reading it -------------------------------------------------------------------

    def state(self, ident: str) -> str:
        if ident in self.new and ident in self.old:
            return "member"
        if ident in self.new:
            return "joining" if self.phase in CHANGING else "member"
        return "leaving" if self.phase in CHANGING else "removed"

    def address_of(self, ident: str) -> str:
        return next(x.address for x in self.nodes if x.id == ident)

    @property
    def linked(self) -> tuple[str, ...]:
        """The nodes proxies keep links to: O ∪ N while writes go to both, else N."""
        if self.phase in CHANGING:
            return tuple(x.id for x in self.nodes)
        return self.new

    @property
    def changing(self) -> bool:
        return self.phase != STABLE

    def describe(self) -> str:
        joined = sorted(set(self.new) - set(self.old))
        left = sorted(set(self.old) - set(self.new))
        what = ", ".join([f"{i} joins" for i in joined] + [f"{i} leaves" for i in left])
        return f"version {self.version}, {self.phase}" + (f" ({what})" if what else "")

    # -- changing it ------------------------------------------------------------------

    def joining(self, node: Node) -> Record:
        if self.changing:
            raise BadRecord(f"a change is running: {self.describe()}")
        if any(x.id == node.id for x in self.nodes):
            raise BadRecord(f"{node.id} is already a member")
        nodes = tuple(sorted((*self.nodes, node), key=lambda x: x.id))
        return replace(self, version=self.version + 1, phase=JOINING, nodes=nodes,
                       new=tuple(sorted((*self.new, node.id))))

    def leaving(self, ident: str) -> Record:
        if self.changing:
            raise BadRecord(f"a change is running: {self.describe()}")
        if ident not in self.new:
            raise BadRecord(f"{ident} is not a member")
        new = tuple(i for i in self.new if i != ident)
        if len(new) < self.n:
            raise BadRecord(f"{ident} cannot leave: n={self.n} needs {self.n} nodes")
        return replace(self, version=self.version + 1, phase=LEAVING, new=new)

    def advanced(self) -> Record:
        """The record of the next phase."""
        phase = NEXT_PHASE[self.phase]
        if phase == STABLE:
            nodes = tuple(x for x in self.nodes if x.id in self.new)
            return replace(self, version=self.version + 1, phase=STABLE, nodes=nodes, old=self.new)
        return replace(self, version=self.version + 1, phase=phase)


def ring_of(ids: tuple[str, ...], n: int) -> Ring:
    return _ring(tuple(sorted(ids)), n)


@lru_cache(maxsize=8)
def _ring(ids: tuple[str, ...], n: int) -> Ring:
    return Ring(ids, n)


@dataclass(frozen=True)
class Placement:
    """Per partition: the homes reads ask (r of them), the homes writes go to (read
    homes first) and how many acks writes need beyond w."""

    ring: Ring  # the ring reads follow
    reads: tuple[tuple[str, ...], ...]
    writes: tuple[tuple[str, ...], ...]
    extra: tuple[int, ...]


def placement(record: Record) -> Placement:
    old = ring_of(record.old, record.n)
    new = ring_of(record.new, record.n)
    if record.phase not in CHANGING or old is new:
        homes = tuple(new.partition_homes())
        return Placement(new, homes, homes, (0,) * PARTITIONS)
    read_ring = old if record.phase in (JOINING, LEAVING) else new
    other = new if read_ring is old else old
    reads = tuple(read_ring.partition_homes())
    writes = []
    extra = []
    for mine, theirs in zip(reads, other.partition_homes(), strict=True):
        more = tuple(i for i in theirs if i not in mine)
        writes.append(mine + more)
        extra.append(len(more))
    return Placement(read_ring, reads, tuple(writes), tuple(extra))


def gains(old: Ring, new: Ring) -> dict[int, tuple[str, ...]]:
    """Partitions whose homes under ``new`` include nodes they lack under ``old``: the
    partitions a change has to copy, with the nodes that gain them."""
    found = {}
    for p, (before, after) in enumerate(zip(old.partition_homes(), new.partition_homes(),
                                            strict=True)):
        gained = tuple(i for i in after if i not in before)
        if gained:
            found[p] = gained
    return found


def losses(old: Ring, new: Ring) -> dict[str, list[int]]:
    """Per node, the partitions it is a home of under ``old`` and not under ``new``: the
    keys it drops once the change is over."""
    found: dict[str, list[int]] = {}
    for p, (before, after) in enumerate(zip(old.partition_homes(), new.partition_homes(),
                                            strict=True)):
        for ident in before:
            if ident not in after:
                found.setdefault(ident, []).append(p)
    return found


def partition_mask(partitions: list[int]) -> bytes:
    """The partitions as a bitmap of PARTITIONS bits (bit p of byte p // 8, low bit
    first), as ``rq_drop_partitions`` reads it."""
    mask = bytearray(PARTITIONS // 8)
    for p in partitions:
        mask[p >> 3] |= 1 << (p & 7)
    return bytes(mask)


def best(records: list[Record]) -> Record | None:
    return max(records, key=Record.order, default=None)


def shares(ring: Ring) -> tuple[dict[str, int], dict[str, int]]:
    """Per node: partitions it is a home of, and partitions it is the first home of."""
    homes = dict.fromkeys(ring.nodes, 0)
    first = dict.fromkeys(ring.nodes, 0)
    for order in ring.partition_homes():
        first[order[0]] += 1
        for ident in order:
            homes[ident] += 1
    return homes, first
