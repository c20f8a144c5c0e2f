"""Bytes of replica memory per key: a redquorum object on one replica against the raw value.

For each value size, on empty servers: write K keys directly to the raw redis-server
and K keys through the proxy, then compare each server's ``used_memory`` delta per
key (the dict entry, key, object and allocator overhead included; client and AOF
buffers left out), plus the stored value's length (STRLEN) and ``MEMORY USAGE`` on a
sample of keys.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

from redquorum.replicas.launcher import LocalReplica

from .resp import Client, info, set_many

SAMPLE = 200


class MeasureError(RuntimeError):
    pass


@dataclass
class MemoryResult:
    value_bytes: int
    keys: int
    raw_bytes_per_key: float
    replica_bytes_per_key: float  # mean over the replicas
    per_replica_bytes_per_key: dict[str, float]
    raw_stored_bytes: float  # STRLEN of the stored value
    replica_stored_bytes: float
    raw_memory_usage: float  # MEMORY USAGE, mean over a sample of keys
    replica_memory_usage: float

    @property
    def overhead_bytes_per_key(self) -> float:
        return self.replica_bytes_per_key - self.raw_bytes_per_key

    @property
    def all_replicas_bytes_per_key(self) -> float:
        return sum(self.per_replica_bytes_per_key.values())

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"overhead_bytes_per_key": self.overhead_bytes_per_key,
                               "all_replicas_bytes_per_key": self.all_replicas_bytes_per_key,
                               "ratio": self.replica_bytes_per_key / self.raw_bytes_per_key}


# MEMORY STATS fields for transient buffers, not stored data: left out of the comparison.
BUFFERS = ("clients.normal", "clients.slaves", "aof.buffer", "replication.backlog", "lua.caches")


def used_memory(port: int) -> int:
    """``used_memory`` less client query/output buffers and the AOF buffer."""
    with Client(port) as client:
        used = int(info(client, "memory")["used_memory"])
        flat = client.call("MEMORY", "STATS")
    stats = dict(zip(flat[::2], flat[1::2], strict=True))
    return used - sum(int(stats.get(name.encode(), 0)) for name in BUFFERS)


def flush(ports: list[int]) -> None:
    for port in ports:
        with Client(port) as client:
            client.call("FLUSHALL", "SYNC")


def wait_dbsize(port: int, count: int, timeout: float = 30.0) -> None:
    """Writes acknowledged by w replicas reach the n-th a moment later."""
    deadline = time.monotonic() + timeout
    with Client(port) as client:
        while (size := client.call("DBSIZE")) < count:
            if time.monotonic() > deadline:
                raise MeasureError(f"replica on port {port} holds {size} of {count} keys")
            time.sleep(0.05)


def keys(size: int, count: int) -> list[bytes]:
    return [b"bench:mem:%d:%08d" % (size, i) for i in range(count)]


def sample_stats(port: int, names: list[bytes]) -> tuple[float, float]:
    """Mean STRLEN and mean MEMORY USAGE over ``names``."""
    with Client(port) as client:
        lengths = client.pipeline([("STRLEN", k) for k in names])
        usage = client.pipeline([("MEMORY", "USAGE", k, "SAMPLES", "0") for k in names])
    return statistics.fmean(lengths), statistics.fmean(usage)


def measure(raw_port: int, proxy_port: int, replicas: list[LocalReplica], size: int,
            count: int) -> MemoryResult:
    """One value size; leaves every server empty again."""
    ports = [raw_port] + [r.port for r in replicas]
    flush(ports)
    before = {port: used_memory(port) for port in ports}
    names = keys(size, count)
    value = b"v" * size
    set_many(raw_port, names, value)
    set_many(proxy_port, names, value)
    for replica in replicas:
        wait_dbsize(replica.port, count)
    per_key = {port: (used_memory(port) - before[port]) / count for port in ports}
    sample = names[:: max(1, count // SAMPLE)]
    raw_len, raw_usage = sample_stats(raw_port, sample)
    rep_len, rep_usage = sample_stats(replicas[0].port, sample)
    flush(ports)
    per_replica = {r.id: per_key[r.port] for r in replicas}
    return MemoryResult(size, count, per_key[raw_port], statistics.fmean(per_replica.values()),
                        per_replica, raw_len, rep_len, raw_usage, rep_usage)
