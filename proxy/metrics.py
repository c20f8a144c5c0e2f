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
from prometheus_client.core import GaugeMetricFamily

from . import __version__
from .clock import Versioned
from .commands import TABLE
from .config import Config
from .coordinator import Events
from .resp import ReplyError

if TYPE_CHECKING:  # pragma: no cover
    from .backend import ReplicaLink
    from .server import Proxy

log = logging.getLogger("redquorum.metrics")

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)
VERSION_BUCKETS = (1, 2, 3, 5, 10, 25, 100, 1000)
AGE_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 86400)
SIBLING_BUCKETS = (1, 2, 3, 5, 10, 25, 100)


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
        self.siblings = Histogram("redquorum_siblings", "Live siblings per read",
                                  buckets=SIBLING_BUCKETS, registry=reg)
        self.siblings_over_soft = Counter(
            "redquorum_sibling_soft_limit_exceeded", "Reads that found more siblings than the soft limit",
            registry=reg)
        self.replica_up = Gauge("redquorum_replica_up", "1 when the proxy's link to the replica is up",
                                ["replica"], registry=reg)
        self.requests = Counter("redquorum_requests", "Client commands by result",
                                ["command", "result"], registry=reg)
        self.request_duration = Histogram("redquorum_request_duration_seconds",
                                          "Client command latency in the proxy", ["command"],
                                          buckets=LATENCY_BUCKETS, registry=reg)
        self.replica_duration = Histogram("redquorum_replica_request_duration_seconds",
                                          "Replica request latency, from queueing to reply",
                                          ["replica"], buckets=LATENCY_BUCKETS, registry=reg)
        self.quorum_failures = Counter("redquorum_quorum_failures", "Operations that missed their quorum",
                                       ["op"], registry=reg)
        self.client_connections = Gauge("redquorum_client_connections", "Open client connections",
                                        registry=reg)
        self.build_info = Gauge("redquorum_build_info", "Version and quorum settings",
                                ["version", "n", "w", "r", "mode"], registry=reg)
        self.build_info.labels(__version__, str(config.n), str(config.w), str(config.r),
                               config.mode).set(1)
        self._latency_children: dict[str, Any] = {}
        self._command_children: dict[tuple[bytes, str], Any] = {}
        for replica in config.replicas:
            self.replica_up.labels(replica.id).set(0)
        reg.register(_LagCollector(self))

    def attach(self, app: Proxy) -> None:
        self.app = app

    # -- Events ---------------------------------------------------------------

    def replica_state(self, link: ReplicaLink, up: bool) -> None:
        self.replica_up.labels(link.id).set(1 if up else 0)

    def replica_latency(self, link: ReplicaLink, seconds: float) -> None:
        child = self._latency_children.get(link.id)
        if child is None:
            child = self._latency_children[link.id] = self.replica_duration.labels(link.id)
        child.observe(seconds)

    def client_connected(self, delta: int) -> None:
        self.client_connections.inc(delta)

    def quorum_failure(self, op: str) -> None:
        self.quorum_failures.labels(op).inc()

    def read_done(self, merged: Versioned, stale: int) -> None:
        live = len(merged.live(int(time.time() * 1000)))
        if live:
            self.siblings.observe(live)
        if live > self.config.sibling_soft_limit:
            self.siblings_over_soft.inc()

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

    def commands_done(self, names: list[bytes], results: list[Any], seconds: float) -> None:
        """One batch's commands: counts by result and the batch's latency for each."""
        children = self._command_children
        for name, result in zip(names, results, strict=False):
            outcome = "ok"
            if isinstance(result, ReplyError):
                outcome = "noquorum" if result.text.startswith("NOQUORUM") else "error"
            pair = children.get((name, outcome))
            if pair is None:
                label = name.decode(errors="replace") if name in TABLE else "other"
                pair = children[(name, outcome)] = (self.requests.labels(label, outcome),
                                                    self.request_duration.labels(label))
            pair[0].inc()
            pair[1].observe(seconds)

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
    """``redquorum_replica_lag_seconds``, computed at scrape time from the canary."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        family = GaugeMetricFamily(
            "redquorum_replica_lag_seconds",
            "Age of the newest freshness-canary heartbeat the replica holds",
            labels=["replica"])
        app = self.metrics.app
        canary = getattr(app, "canary", None)
        if canary is not None:
            for replica, lag in canary.lags().items():
                family.add_metric([replica], lag)
        yield family
