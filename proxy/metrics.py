"""Prometheus metrics: the coordinator's and server's events as prometheus-client series.

The /metrics endpoint is prometheus-client's own HTTP server in a thread, so a scrape
never runs on the proxy's event loop. Labels are bounded: replica ids, command names,
ops and reasons — never keys. Gauges that are ages (replica lag) are computed when
scraped, so a dead replica's lag keeps growing instead of freezing at its last value.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from . import __version__
from .config import Config
from .replication.clock import Versioned
from .replication.coordinator import Events

if TYPE_CHECKING:  # pragma: no cover
    from .server.app import Proxy
    from .server.links import ReplicaLink

log = logging.getLogger("redquorum.metrics")

VERSION_BUCKETS = (1, 2, 3, 5, 10, 25, 100, 1000)
AGE_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 86400)


class Metrics(Events):
    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.app: Proxy | None = None
        self.read_repairs = Counter("redquorum_read_repairs", "Objects written back to stale replicas by reads",
                                    ["replica", "reason"], registry=reg)
        self.stale_reads = Counter("redquorum_stale_reads", "Reads where at least one replica was stale",
                                   registry=reg)
        self.staleness_versions = Histogram(
            "redquorum_replica_staleness_versions",
            "How many versions (dots) a stale replica lacked when a read found it",
            ["replica"], buckets=VERSION_BUCKETS, registry=reg)
        self.staleness_seconds = Histogram(
            "redquorum_replica_staleness_seconds",
            "Age of the newest write a stale replica lacked, from that write's timestamp",
            ["replica"], buckets=AGE_BUCKETS, registry=reg)
        self.siblings_over_soft = Counter(
            "redquorum_sibling_soft_limit_exceeded", "Reads that found more siblings than the soft limit",
            registry=reg)
        self.replica_up = Gauge("redquorum_replica_up", "1 when the proxy's link to the replica is up",
                                ["replica"], registry=reg)
        self.quorum_failures = Counter("redquorum_quorum_failures", "Operations that missed their quorum",
                                       ["op"], registry=reg)
        self.auth_failures = Counter("redquorum_auth_failures",
                                     "Failed AUTH and HELLO AUTH attempts (wrong password, "
                                     "unknown or disabled user)", registry=reg)
        self.client_connections = Gauge("redquorum_client_connections", "Open client connections",
                                        registry=reg)
        self.build_info = Gauge("redquorum_build_info", "Version and quorum settings",
                                ["version", "n", "w", "r", "mode"], registry=reg)
        self.build_info.labels(__version__, str(config.n), str(config.w), str(config.r),
                               config.mode).set(1)
        for replica in config.replicas:
            self.replica_up.labels(replica.id).set(0)
        reg.register(_LagCollector(self))
        reg.register(_HotPathCollector(self))

    def attach(self, app: Proxy) -> None:
        self.app = app

    # -- Events ---------------------------------------------------------------

    def replica_state(self, link: ReplicaLink, up: bool) -> None:
        self.replica_up.labels(link.id).set(1 if up else 0)

    def auth_failure(self) -> None:
        self.auth_failures.inc()

    def client_connected(self, delta: int) -> None:
        self.client_connections.inc(delta)

    def quorum_failure(self, op: str) -> None:
        self.quorum_failures.labels(op).inc()

    def stale_read(self) -> None:
        self.stale_reads.inc()

    def read_repair(self, replica: str, reason: str, merged: Versioned, had: Versioned) -> None:
        self.read_repairs.labels(replica, reason).inc()
        have = had.clock_map()
        lacked = sum(max(0, c - have.get(a, 0)) for a, c in merged.clock)
        self.staleness_versions.labels(replica).observe(lacked)
        newest = max((s.timestamp for s in merged.siblings if have.get(s.actor, 0) < s.counter),
                     default=0)
        if newest:
            self.staleness_seconds.labels(replica).observe(max(0.0, time.time() - newest / 1e6))

    def siblings_over_soft_limit(self, key: bytes, count: int) -> None:
        self.siblings_over_soft.inc()
        log.warning("key %r has %d live siblings, above the soft limit of %d: resolve them "
                    "with RQ.GET and RQ.SET", key[:100], count, self.config.sibling_soft_limit)

    def info_lines(self) -> list[str]:
        lines = [f"stale_reads:{int(self.stale_reads._value.get())}"]
        repairs: dict[str, float] = {}
        for metric in self.read_repairs.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    replica = sample.labels["replica"]
                    repairs[replica] = repairs.get(replica, 0) + sample.value
        for replica in self.config.replicas:
            lines.append(f"read_repairs_{replica.id}:{int(repairs.get(replica.id, 0))}")
        return lines

    # -- serving --------------------------------------------------------------

    async def serve(self, address: tuple[str, int], *, task_status: Any = trio.TASK_STATUS_IGNORED
                    ) -> None:
        host, port = address
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            server.shutdown()
            server.server_close()


class _LagCollector:
    """Replica staleness computed at scrape time: the canary's lag, hints pending."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        family = GaugeMetricFamily(
            "redquorum_replica_lag_seconds",
            "Age of the newest freshness-canary heartbeat the replica holds",
            labels=["replica"])
        pending = GaugeMetricFamily(
            "redquorum_hints_pending", "Hinted-handoff hints waiting for the replica (as last counted)",
            labels=["replica"])
        replayed = CounterMetricFamily(
            "redquorum_hints_replayed", "Hints replayed into the replica by this proxy",
            labels=["replica"])
        app = self.metrics.app
        if app is not None:
            for replica, lag in app.canary.lags().items():
                family.add_metric([replica], lag)
            for replica, count in app.handoff.pending_for().items():
                pending.add_metric([replica], count)
            for replica, count in list(app.handoff.replayed.items()):
                replayed.add_metric([replica], count)
        yield family
        yield pending
        yield replayed


class _HotPathCollector:
    """Request counts and latencies kept in plain Python by the server and the links
    (proxy/counters.py), turned into Prometheus families when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        requests = CounterMetricFamily("redquorum_requests", "Client commands by result",
                                       labels=["command", "result"])
        duration = HistogramMetricFamily("redquorum_request_duration_seconds",
                                         "Client command latency in the proxy", labels=["command"])
        replica = HistogramMetricFamily("redquorum_replica_request_duration_seconds",
                                        "Replica request latency, from queueing to reply",
                                        labels=["replica"])
        siblings = HistogramMetricFamily("redquorum_siblings", "Live siblings per read")
        app = self.metrics.app
        if app is not None:
            counts = app.coordinator.sibling_counts
            siblings.add_metric([], counts.cumulative(), counts.total)
            stats = app.command_stats
            for (command, result), count in list(stats.outcomes.items()):
                requests.add_metric([command, result], count)
            for command, histogram in list(stats.latency.items()):
                duration.add_metric([command], histogram.cumulative(), histogram.total)
            for link in app.links.values():
                replica.add_metric([link.id], link.latency.cumulative(), link.latency.total)
        yield siblings
        yield requests
        yield duration
        yield replica
