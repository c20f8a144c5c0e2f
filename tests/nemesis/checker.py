"""Checks run on a workload's records once every fault is healed, and the convergence
measurement.

Set workload: ``lost`` = elements whose add was acknowledged but that the final read
(every replica, siblings merged) does not hold; ``phantom`` = elements in the final read
that no client ever tried to add.

Register workload, per key, with real-time order from the recorded times. A write whose
outcome is unknown may take effect at any time after its invocation, so it completes "at
infinity" here; acknowledged writes complete when their reply arrived.
  phantom     a read returned a value no SET of that key ever wrote;
  stale       a read returned the value of an acknowledged SET S although another
              acknowledged write W of the key began after S completed and completed before
              the read began (S was overwritten before the read started); or returned nil
              although an acknowledged SET completed before the read began and no DEL
              could have come after it;
  del_undone  the stale reads whose overwriting W was a DEL: an acknowledged delete
              undone. In causal mode this must be 0.
Reads of a value whose SET had an unknown outcome are never stale (that SET may land late).

Placement (runs with a membership change): once converged, every key is held by exactly
its n homes under the final ring, the members then; fallbacks' copies (hints) are given
a bounded wait to go home first.

Convergence: the time from the heal until every replica holds byte-identical raw values
for every key (``GET`` on the replicas themselves, ``__rq:`` bookkeeping left out; with more
replicas than n, every home replica of the key). The
proxies have no anti-entropy yet, so hinted handoff is given a bounded wait, then one
read-repair pass (RQ.GET of every key at r = n through a proxy), then another bounded wait.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import msgpack
from redquorum.replication.ring import Ring

from .cluster import Cluster
from .workloads import Connection, Op

RESERVED = b"__rq:"


# ------------------------------------------------------------------ set workload

@dataclass
class SetVerdict:
    acknowledged: int
    lost: int
    phantom: int
    lost_examples: list[str]


def check_set(ops: list[Op], final: dict[str, set[str]]) -> SetVerdict:
    acked = {(op.key, op.value) for op in ops if op.outcome == "ok"}
    attempted = {(op.key, op.value) for op in ops}
    lost = sorted(f"{k}/{e}" for k, e in acked if e not in final.get(k, set()))
    phantom = [(k, e) for k, elements in final.items() for e in elements if (k, e) not in attempted]
    return SetVerdict(len(acked), len(lost), len(phantom), lost[:10])


# ------------------------------------------------------------------ register workload

@dataclass
class RegisterVerdict:
    reads: int
    stale: int
    del_undone: int
    phantom: int
    examples: list[str]


class _KeyHistory:
    """One key's writes, indexed for "which acknowledged writes completed before time t"."""

    def __init__(self, writes: list[Op]) -> None:
        self.set_by_value = {op.value: op for op in writes if op.kind == "set"}
        self.dels = [op for op in writes if op.kind == "del"]
        acked = sorted((op for op in writes if op.outcome == "ok"), key=lambda op: op.complete)
        self.completes = [op.complete for op in acked]
        self.acked = acked
        # latest invocation among the acknowledged writes completed so far (and among SETs)
        self.max_invoke = _running_max(acked, lambda op: True)
        self.max_set_invoke = _running_max(acked, lambda op: op.kind == "set")

    def done_before(self, t: float) -> int:
        return bisect.bisect_left(self.completes, t)


def _running_max(ops: list[Op], keep) -> list[float]:
    out, best = [], -math.inf
    for op in ops:
        if keep(op):
            best = max(best, op.invoke)
        out.append(best)
    return out


def finished(op: Op) -> float:
    return op.complete if op.outcome == "ok" else math.inf


def check_register(ops: list[Op]) -> RegisterVerdict:
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    reads = stale = del_undone = phantom = 0
    examples: list[str] = []
    for key, key_ops in by_key.items():
        history = _KeyHistory([op for op in key_ops if op.kind != "get"])
        for read in (op for op in key_ops if op.kind == "get" and op.outcome == "ok"):
            reads += 1
            done = history.done_before(read.invoke)
            if read.value is None:
                if _nil_is_stale(history, read, done):
                    stale += 1
                    _example(examples, f"{key}: {read.client} read nil at {read.invoke:.3f}s "
                                       f"after an acknowledged SET")
                continue
            write = history.set_by_value.get(read.value)
            if write is None:
                phantom += 1
                _example(examples, f"{key}: {read.client} read {read.value!r}, never written")
                continue
            newer = _overwritten_by(history, write, done)
            if newer is None:
                continue
            stale += 1
            del_undone += newer.kind == "del"
            what = "DEL" if newer.kind == "del" else f"SET {newer.value!r}"
            _example(examples, f"{key}: {read.client} read {read.value!r} at {read.invoke:.3f}s; "
                               f"SET by {write.client} {write.invoke:.3f}–{write.complete:.3f}s, "
                               f"then {what} by {newer.client} "
                               f"{newer.invoke:.3f}–{newer.complete:.3f}s")
    return RegisterVerdict(reads, stale, del_undone, phantom, examples)


def _overwritten_by(history: _KeyHistory, write: Op, done: int) -> Op | None:
    """An acknowledged write among the first ``done`` that began after ``write`` was
    acknowledged (a DEL if there is one), or None: ``write`` is still a legal answer."""
    if done == 0 or write.outcome != "ok" or history.max_invoke[done - 1] <= write.complete:
        return None
    later = [op for op in history.acked[:done] if op.invoke > write.complete]
    return next((op for op in later if op.kind == "del"), later[0])


def _nil_is_stale(history: _KeyHistory, read: Op, done: int) -> bool:
    if done == 0 or history.max_set_invoke[done - 1] == -math.inf:
        return False
    latest_set = history.max_set_invoke[done - 1]
    # some DEL (any outcome) that may have taken effect after that SET and before the read
    return not any(finished(d) > latest_set and d.invoke < read.complete for d in history.dels)


def _example(examples: list[str], text: str) -> None:
    if len(examples) < 10:
        examples.append(text)


# ------------------------------------------------------------------ convergence

def replica_contents(cluster: Cluster) -> dict[str, dict[bytes, bytes | None]]:
    contents = {}
    for ident in cluster.replicas:
        raw = cluster.raw(ident)
        try:
            keys = [k for k in raw.scan_iter(count=1000) if not k.startswith(RESERVED)]
            pipe = raw.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            contents[ident] = dict(zip(keys, pipe.execute(), strict=True))
        finally:
            raw.close()
    return contents


def home_replicas(cluster: Cluster, keys: set[bytes], homes: dict[bytes, set[str]]) -> None:
    """Fill ``homes`` with each new key's home replicas (RQ.INSPECT; the ring does not move)."""
    missing = [k for k in keys if k not in homes]
    if not missing:
        return
    conn = Connection(cluster, 0)
    try:
        for key in missing:
            entries = conn.call("RQ.INSPECT", key)
            fields = [dict(zip(e[::2], e[1::2], strict=True)) for e in entries]
            homes[key] = {f[b"id"].decode() for f in fields if f[b"role"] == b"home"}
    finally:
        conn.close()


def divergent_keys(cluster: Cluster, homes: dict[bytes, set[str]]) -> set[bytes]:
    """Keys whose home replicas do not all hold the same bytes (with more replicas than n,
    a fallback's copy is a hint on its way home, not part of the key's state)."""
    contents = replica_contents(cluster)
    every_key = set().union(*(c.keys() for c in contents.values()))
    home_replicas(cluster, every_key, homes)
    return {k for k in every_key
            if len({contents[ident].get(k) for ident in homes[k]}) > 1}


@dataclass
class Convergence:
    seconds: float | None  # None: not converged within the bound
    how: str  # "handoff", "read repair" or "no"
    divergent: int  # keys still different at the end
    after_handoff: list[str] = field(default_factory=list)  # what handoff left different


def measure_convergence(cluster: Cluster, passive: float, bound: float) -> Convergence:
    """From now (the heal): wait up to ``passive`` s for handoff alone, then run one
    read-repair pass and wait for the rest of ``bound``."""
    t0 = time.monotonic()
    homes: dict[bytes, set[str]] = {}
    left = _wait_identical(cluster, homes, t0 + passive)
    if not left:
        return Convergence(time.monotonic() - t0, "handoff", 0)
    described = describe_divergence(cluster, left)
    conn = Connection(cluster, 0)
    try:
        conn.call("RQ.CONSISTENCY", cluster.spec.n, cluster.spec.n)
        for key in sorted(left):
            conn.call("RQ.GET", key)
    finally:
        conn.close()
    left = _wait_identical(cluster, homes, t0 + bound)
    if not left:
        return Convergence(time.monotonic() - t0, "read repair", 0, described)
    return Convergence(None, "no", len(left), described)


def describe_divergence(cluster: Cluster, keys: set[bytes]) -> list[str]:
    """Per key, what each replica holds: siblings and clock, or nothing."""
    lines = []
    for key in sorted(keys)[:10]:
        held = []
        for ident in cluster.replicas:
            raw = cluster.raw(ident)
            try:
                blob = raw.get(key)
            finally:
                raw.close()
            held.append(f"{ident}={_summary(blob)}")
        lines.append(f"{key.decode(errors='replace')}: {' '.join(held)}")
    return lines


def _summary(blob: bytes | None) -> str:
    if blob is None:
        return "absent"
    try:
        _, clock, siblings = msgpack.unpackb(blob, raw=True)[:3]
        flat = ",".join(f"{a.decode()}:{c}" if isinstance(a, bytes) else str(a)
                        for a, c in zip(clock[::2], clock[1::2], strict=True))
        return f"[{flat}]x{len(siblings)}"
    except Exception:  # an object this harness cannot read is still a difference to show
        return f"{len(blob)}B"


def _wait_identical(cluster: Cluster, homes: dict[bytes, set[str]], deadline: float) -> set[bytes]:
    while True:
        left = divergent_keys(cluster, homes)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


# ------------------------------------------------------------------ placement

def misplaced_keys(cluster: Cluster) -> list[str]:
    """Keys not held by exactly their n homes of the ring of the present members."""
    ring = Ring(tuple(sorted(cluster.replicas)), cluster.spec.n)
    contents = replica_contents(cluster)
    every_key = set().union(*(c.keys() for c in contents.values()))
    found = []
    for key in sorted(every_key):
        homes = set(ring.preference_list(key))
        holders = {ident for ident, held in contents.items() if key in held}
        if holders != homes:
            found.append(f"{key.decode(errors='replace')}: held by {','.join(sorted(holders))}, "
                         f"homes {','.join(sorted(homes))}")
    return found


def wait_placed(cluster: Cluster, bound: float) -> list[str]:
    """The misplaced keys left after up to ``bound`` s (hinted handoff moves fallbacks' copies)."""
    deadline = time.monotonic() + bound
    while True:
        left = misplaced_keys(cluster)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)
