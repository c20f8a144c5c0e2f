"""``redquorum status``: what an operator sees first, like ``nodetool status``.

It reads only what is public: each replica over its own protocol (PING, DBSIZE, INFO
memory, HLEN of the hint hashes, the anti-entropy digests' state) and, when given, the
proxies' /metrics endpoints (canary lag, hints pending and their age, the last successful
anti-entropy round). No proxy's private state is needed, so it works with
any number of proxies, or none running.

Whether every key can still form a quorum follows from the ring: a key's partition has
n homes, reads need r of them up and writes w, so the cluster serves every key iff no
partition has fewer than max(w, r) homes up. With a sloppy quorum (more replicas than n)
the fallbacks of a partition's walk stand in for its homes that are down, so what counts
is how many nodes of the whole walk are up.
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import hiredis
from prometheus_client.parser import text_string_to_metric_families

from .config import Config, Replica, parse_address
from .protocol.resp import encode_command
from .replication.membership import (
    APPLIED_KEY,
    MEMBERS_KEY,
    PROGRESS_KEY,
    BadRecord,
    Node,
    Record,
    best,
    placement,
    ring_of,
    shares,
)
from .replication.ring import PARTITIONS, Ring
from .replication.wire import hint_times_key, hints_key

# Up to this many keys the internal ones are counted exactly (one SCAN over the keyspace);
# above it only the internal keys known by name are subtracted (EXISTS) and the count is
# marked approximate.
EXACT_KEYS_LIMIT = 200_000


class ReplicaError(Exception):
    pass


class Connection:
    """A blocking RESP connection to one replica, framed by hiredis."""

    def __init__(self, replica: Replica, timeout: float) -> None:
        self.sock = socket.create_connection((replica.host, replica.port), timeout=timeout)
        self.reader = hiredis.Reader()
        if replica.password:
            self.call("AUTH", replica.password)

    def call(self, *args: str | bytes | int) -> Any:
        self.sock.sendall(encode_command(*args))
        while True:
            reply = self.reader.gets()
            if reply is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise ReplicaError(str(reply))
                return reply
            data = self.sock.recv(65536)
            if not data:
                raise ReplicaError("connection closed")
            self.reader.feed(data)

    def close(self) -> None:
        self.sock.close()


@dataclass
class ReplicaStatus:
    id: str
    address: str
    up: bool = False
    error: str | None = None
    keys: int | None = None
    keys_exact: bool | None = None  # False: DBSIZE less the internal keys known by name
    memory_bytes: int | None = None
    homes: int = 0  # partitions the replica is one of the n homes of
    coordinates: int = 0  # partitions whose first home it is
    lag_seconds: float | None = None
    hints_pending: int | None = None
    hints_oldest_seconds: float | None = None
    digests: str | None = None  # anti-entropy digests: complete, rebuilding or missing
    digests_age_seconds: float | None = None  # since the complete ones were last built


@dataclass
class Status:
    n: int
    w: int
    r: int
    mode: str
    overlapping: bool  # w + r > n
    replicas: list[ReplicaStatus]
    up: int = 0
    partitions: int = PARTITIONS
    read_unavailable_partitions: int = 0
    write_unavailable_partitions: int = 0
    quorum_possible: bool = False
    proxies: list[dict[str, Any]] = field(default_factory=list)
    antientropy_last_success_seconds: float | None = None  # the newest over the proxies
    membership: str | None = None  # the cluster's membership record: version, phase


def collect(config: Config, metrics_urls: list[str], timeout: float = 2.0) -> Status:
    record = read_record(config.replicas, timeout)
    if record is not None:  # the cluster's membership, not the configuration, says who holds what
        config = dataclasses.replace(config, replicas=_members(config, record, record.linked),
                                     n=record.n)
    replicas = [_probe(replica, [r.id for r in config.replicas], timeout) for replica in config.replicas]
    status = Status(config.n, config.w, config.r, config.mode, config.w + config.r > config.n, replicas)
    ring = placement(record).ring if record is not None else \
        Ring(tuple(r.id for r in config.replicas), config.n)  # the ring reads follow
    _place(status, config, ring)
    status.membership = record.describe() if record is not None else None
    _read_hint_sets(status, config, timeout)
    for url in metrics_urls:
        status.proxies.append(_read_proxy(status, url, timeout))
    return status


def _probe(replica: Replica, ids: list[str], timeout: float) -> ReplicaStatus:
    found = ReplicaStatus(replica.id, replica.address)
    try:
        conn = Connection(replica, timeout)
    except OSError as exc:
        found.error = exc.strerror or str(exc)
        return found
    try:
        conn.call("PING")
        found.up = True
        dbsize = conn.call("DBSIZE")
        found.keys = dbsize - _internal_keys(conn, dbsize, ids)
        found.keys_exact = dbsize <= EXACT_KEYS_LIMIT
        found.memory_bytes = _info_field(conn.call("INFO", "memory"), b"used_memory")
        _read_digests(found, conn)
    except (OSError, ReplicaError) as exc:
        found.up = False
        found.error = str(exc) or type(exc).__name__
    finally:
        conn.close()
    return found


def _digest_keys(conn: Connection) -> int:
    """The anti-entropy digests' partition hashes, of every generation the state names."""
    count = 0
    for gen in conn.call("HMGET", "__rq:aae:state", "gen", "building", "drop"):
        if gen is not None:
            count += conn.call("EXISTS", *(b"__rq:aae:%b:p:%d" % (gen, p) for p in range(PARTITIONS)))
    return count


def _read_digests(found: ReplicaStatus, conn: Connection) -> None:
    """The anti-entropy digests' state (replicas/redquorum.lua, "Anti-entropy digests")."""
    gen, building, built_at = conn.call("HMGET", "__rq:aae:state", "gen", "building", "built_at")
    if building is not None:
        found.digests = "rebuilding"
    elif gen is not None:
        found.digests = "complete"
    else:
        found.digests = "missing"
    if gen is not None and built_at is not None:
        found.digests_age_seconds = max(0.0, time.time() - int(built_at) / 1000)


def _internal_keys(conn: Connection, dbsize: int, ids: list[str]) -> int:
    if dbsize > EXACT_KEYS_LIMIT:  # the internal keys whose names are known: hints, actor, secret
        fixed = [hints_key(ident) for ident in ids] + [hint_times_key(ident) for ident in ids]
        fixed += [b"__rq:actor", b"__rq:actor:run", b"__rq:secret", MEMBERS_KEY, APPLIED_KEY,
                  PROGRESS_KEY]
        return conn.call("EXISTS", *fixed, b"__rq:aae:state") + _digest_keys(conn)
    count, cursor = 0, b"0"
    while True:
        cursor, keys = conn.call("SCAN", cursor, "MATCH", b"__rq:*", "COUNT", 10_000)
        count += len(keys)
        if cursor == b"0":
            return count


def _info_field(info: bytes, name: bytes) -> int | None:
    for line in info.splitlines():
        key, _, value = line.partition(b":")
        if key == name:
            return int(value)
    return None


def _place(status: Status, config: Config, ring: Ring) -> None:
    by_id = {r.id: r for r in status.replicas}
    up = {r.id for r in status.replicas if r.up}
    status.up = len(up)
    for homes in ring.partition_homes():
        by_id[homes[0]].coordinates += 1
        for ident in homes:
            by_id[ident].homes += 1
    status.read_unavailable_partitions = ring.partitions_short(up, config.r, config.sloppy)
    status.write_unavailable_partitions = ring.partitions_short(up, config.w, config.sloppy)
    status.quorum_possible = not (status.read_unavailable_partitions or status.write_unavailable_partitions)


def _read_hint_sets(status: Status, config: Config, timeout: float) -> None:
    """Hints for a replica wait in ``__rq:hints:<id>`` hashes on the other replicas: their
    HLENs on every replica that answers, summed."""
    totals = {r.id: 0 for r in status.replicas}
    for replica, found in zip(config.replicas, status.replicas, strict=True):
        if not found.up:
            continue
        try:
            conn = Connection(replica, timeout)
            try:
                for ident in totals:
                    totals[ident] += conn.call("HLEN", hints_key(ident))
            finally:
                conn.close()
        except (OSError, ReplicaError):
            continue
    for found in status.replicas:
        found.hints_pending = totals[found.id]


def _read_proxy(status: Status, url: str, timeout: float) -> dict[str, Any]:
    """One proxy's view: lag and hint age per replica; the worst over proxies is kept."""
    proxy: dict[str, Any] = {"url": url, "up": False}
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        proxy["error"] = str(getattr(exc, "reason", exc))
        return proxy
    proxy["up"] = True
    by_id = {r.id: r for r in status.replicas}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "redquorum_antientropy_last_success_timestamp_seconds" and sample.value > 0:
                age = max(0.0, time.time() - sample.value)
                last = status.antientropy_last_success_seconds
                status.antientropy_last_success_seconds = age if last is None else min(last, age)
            found = by_id.get(sample.labels.get("replica", ""))
            if found is None or math.isnan(sample.value):
                continue
            if sample.name == "redquorum_replica_lag_seconds":
                found.lag_seconds = max(found.lag_seconds or 0.0, sample.value)
            elif sample.name == "redquorum_hints_oldest_age_seconds":
                found.hints_oldest_seconds = max(found.hints_oldest_seconds or 0.0, sample.value)
            elif sample.name == "redquorum_replica_up":
                proxy.setdefault("replicas_up", {})[found.id] = sample.value == 1
    return proxy


# -- output ------------------------------------------------------------------------------

def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.0f}m"


def render_table(status: Status) -> str:
    with_metrics = bool(status.proxies)
    header = ["ID", "ADDRESS", "STATE", "KEYS", "MEMORY", "HOMES", "FIRST"]
    if with_metrics:
        header += ["LAG"]
    header += ["HINTS"] + (["OLDEST HINT"] if with_metrics else [])
    rows = [header]
    for r in status.replicas:
        keys = "-" if r.keys is None else f"{'' if r.keys_exact else '~'}{r.keys}"
        row = [r.id, r.address, "up" if r.up else "down", keys, _size(r.memory_bytes),
               f"{100 * r.homes / status.partitions:.0f}%", f"{100 * r.coordinates / status.partitions:.0f}%"]
        if with_metrics:
            row.append(_seconds(r.lag_seconds))
        row.append("-" if r.hints_pending is None else str(r.hints_pending))
        if with_metrics:
            row.append(_seconds(r.hints_oldest_seconds) if r.hints_pending else "-")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    for r in status.replicas:
        if r.error:
            lines.append(f"{r.id}: {r.error}")
    lines.append("")
    overlap = "w + r > n: reads see the latest acknowledged write" if status.overlapping \
        else "w + r <= n: reads may miss acknowledged writes"
    lines.append(f"n={status.n} w={status.w} r={status.r} mode={status.mode} ({overlap})")
    lines.append(f"replicas up: {status.up} of {len(status.replicas)}")
    if status.membership:
        lines.append(f"membership: {status.membership} (redquorum ring shows the partitions)")
    if status.quorum_possible:
        lines.append("quorum possible for all keys")
    else:
        lines.append(f"QUORUM LOST: reads fail for {_share(status.read_unavailable_partitions, status)} "
                     f"and writes for {_share(status.write_unavailable_partitions, status)} of the keys")
    digests = [f"{r.id} {r.digests}" + (f" (built {_seconds(r.digests_age_seconds)} ago)"
                                        if r.digests_age_seconds is not None else "")
               for r in status.replicas if r.digests]
    if digests:
        lines.append("anti-entropy digests: " + ", ".join(digests))
    if status.proxies:
        last = status.antientropy_last_success_seconds
        lines.append("last anti-entropy round: " +
                     ("none succeeded yet" if last is None else f"{_seconds(last)} ago"))
    for proxy in status.proxies:
        state = "scraped" if proxy["up"] else f"unreachable ({proxy.get('error')})"
        lines.append(f"proxy metrics {proxy['url']}: {state}")
    return "\n".join(lines)


def _share(partitions: int, status: Status) -> str:
    return f"{100 * partitions / status.partitions:.0f}%"


def render_json(status: Status) -> str:
    return json.dumps(dict(asdict(status), checked_at=time.time()), indent=2)


# -- the membership record and `redquorum ring` --------------------------------------------

def read_record(replicas: Sequence[Replica], timeout: float) -> Record | None:
    """The highest membership record the replicas hold (None: none holds one yet)."""
    records = []
    for replica in replicas:
        try:
            conn = Connection(replica, timeout)
        except OSError:
            continue
        try:
            _, data = conn.call("HMGET", MEMBERS_KEY, "version", "record")
            if data is not None:
                records.append(Record.decode(data))
        except (OSError, ReplicaError, BadRecord):
            pass
        finally:
            conn.close()
    return best(records)


def _members(config: Config, record: Record, ids: Sequence[str]) -> tuple[Replica, ...]:
    """The record's nodes as replicas: a configured one as configured (its address and
    credentials), another at the record's address with the first replica's credentials."""
    configured = {r.id: r for r in config.replicas}
    like = config.replicas[0]
    found = []
    for ident in ids:
        if ident in configured:
            found.append(configured[ident])
            continue
        host, port = parse_address(record.address_of(ident), f"replica {ident}")
        found.append(dataclasses.replace(like, id=ident, host=host, port=port))
    return tuple(found)


@dataclass
class RingNode:
    id: str
    address: str
    state: str  # member, joining, leaving
    up: bool
    homes: int  # partitions it is a home of, under the ring the change leads to
    first: int  # partitions it is the first home of (it coordinates their writes)
    homes_before: int | None = None  # during a change, under the ring it started from


@dataclass
class RingStatus:
    version: int  # 0: no replica holds a record yet (the configuration's is shown)
    phase: str
    n: int
    nodes: list[RingNode]
    partitions: int = PARTITIONS
    fair_share: float = 0.0  # of the partitions, per node: n / nodes
    largest_over_fair: float = 0.0
    progress: dict[str, str] | None = None  # the change's, while one runs
    reachable: bool = False  # some replica answered


def collect_ring(config: Config, timeout: float = 2.0) -> RingStatus:
    record = read_record(config.replicas, timeout)
    version = record.version if record is not None else 0
    if record is None:
        record = Record.initial([Node(r.id, r.address) for r in config.replicas], config.n)
    new_homes, new_first = shares(ring_of(record.new, record.n))
    old_homes = shares(ring_of(record.old, record.n))[0] if record.changing else {}
    replicas = _members(config, record, [x.id for x in record.nodes])
    up = {r.id: _pings(r, timeout) for r in replicas}
    ring = RingStatus(version, record.phase, record.n, [], reachable=any(up.values()))
    for replica in replicas:
        ring.nodes.append(RingNode(replica.id, record.address_of(replica.id),
                                   record.state(replica.id), up[replica.id],
                                   new_homes.get(replica.id, 0), new_first.get(replica.id, 0),
                                   old_homes.get(replica.id, 0) if record.changing else None))
    ring.fair_share = record.n / len(record.new)
    ring.largest_over_fair = max(new_homes.values()) / PARTITIONS / ring.fair_share
    if record.changing:
        ring.progress = _read_progress(replicas, up, timeout)
    return ring


def _pings(replica: Replica, timeout: float) -> bool:
    try:
        conn = Connection(replica, timeout)
    except OSError:
        return False
    try:
        return conn.call("PING") in (b"PONG", "PONG")
    except (OSError, ReplicaError):
        return False
    finally:
        conn.close()


def _read_progress(replicas: Sequence[Replica], up: dict[str, bool],
                   timeout: float) -> dict[str, str] | None:
    """The newest progress a change published on the replicas."""
    newest: dict[str, str] | None = None
    for replica in replicas:
        if not up[replica.id]:
            continue
        try:
            conn = Connection(replica, timeout)
            try:
                flat = conn.call("HGETALL", PROGRESS_KEY)
            finally:
                conn.close()
        except (OSError, ReplicaError):
            continue
        found = {k.decode(): v.decode(errors="replace") for k, v in zip(flat[::2], flat[1::2],
                                                                           strict=False)}
        if found and (newest is None or found.get("updated", "") > newest.get("updated", "")):
            newest = found
    return newest


def render_ring(ring: RingStatus) -> str:
    changing = ring.phase != "stable"
    header = ["ID", "ADDRESS", "STATE", "UP", "HOMES", "FIRST"] + (["HOMES BEFORE"] if changing else [])
    rows = [header]
    for x in ring.nodes:
        row = [x.id, x.address, x.state, "up" if x.up else "down",
               f"{100 * x.homes / ring.partitions:.1f}%", f"{100 * x.first / ring.partitions:.1f}%"]
        if changing:
            row.append(f"{100 * (x.homes_before or 0) / ring.partitions:.1f}%")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.append("")
    recorded = f"membership version {ring.version}" if ring.version else \
        "no membership record on the replicas yet (the configuration's is shown)"
    lines.append(f"{recorded}, {ring.phase}; n={ring.n}, {ring.partitions} partitions")
    lines.append(f"fair share {100 * ring.fair_share:.1f}% of the partitions per node; the largest "
                 f"is {ring.largest_over_fair:.2f}x fair")
    if changing:
        progress = ring.progress
        if progress and progress.get("step") in ("transfer", "cleanup"):
            unit = "nodes" if progress["step"] == "cleanup" else "partitions"
            lines.append(f"{progress['step']}: {progress.get('done')}/{progress.get('total')} "
                         f"{unit}, {progress.get('keys')} keys (version {progress.get('version')})")
        else:
            lines.append("a membership change is running (redquorum join/leave resumes it)")
    if not ring.reachable:
        lines.append("no replica answered")
    return "\n".join(lines)


def render_ring_json(ring: RingStatus) -> str:
    return json.dumps(dict(dataclasses.asdict(ring), checked_at=time.time()), indent=2)
