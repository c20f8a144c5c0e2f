"""Prometheus metrics: the coordinator's and server's events as prometheus-client series.

The /metrics endpoint is prometheus-client's own HTTP server in a thread, so a scrape
never runs on the proxy's event loop. Labels are bounded: replica ids, command names,
ops and reasons — never keys. Gauges that are ages (replica lag) are computed when
scraped, so a dead replica's lag keeps growing instead of freezing at its last value.

The PBS estimate (proxy/replication/pbs.py) is the exception: a Monte Carlo run over the
links' sampled round trips is too slow for a scrape, so ``PbsEstimate.run`` recomputes it
every ``pbs_interval`` in a worker thread and scrapes export the latest result.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
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
QUORUM_OPS = ("read", "write")
OVER_SOFT_REMEMBERED = 4096  # keys whose crossing of the sibling soft limit was logged
REPAIR_REASONS = ("missing", "outdated")  # what the coordinator's read repair reports


class Metrics(Events):
    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.app: Proxy | None = None
        self._over_soft_logged: OrderedDict[str, None] = OrderedDict()
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
        self._export_known_series()
        reg.register(_LagCollector(self))
        reg.register(_HotPathCollector(self))
        reg.register(_AntiEntropyCollector(self))
        self.pbs = PbsEstimate(config)
        reg.register(self.pbs)

    def _export_known_series(self) -> None:
        """Every label value known in advance gets its series at zero from start-up (as the
        Prometheus client libraries recommend): rate() over it is then 0, not empty, and an
        alert on increase() sees the first event instead of a series that just appeared."""
        for op in QUORUM_OPS:
            self.quorum_failures.labels(op)
        self._replica_ids: set[str] = set()
        self.replicas_changed([replica.id for replica in self.config.replicas])

    def replicas_changed(self, ids: Iterable[str]) -> None:
        """The cluster's membership changed: series of replicas that left are dropped (a
        removed replica must not look down for ever), new ones start at zero."""
        now = set(ids)
        for gone in self._replica_ids - now:
            for labels, family in [((gone,), self.replica_up), ((gone,), self.staleness_versions),
                                   ((gone,), self.staleness_seconds),
                                   *(((gone, reason), self.read_repairs)
                                     for reason in REPAIR_REASONS)]:
                try:
                    family.remove(*labels)
                except KeyError:
                    pass
        for replica in now - self._replica_ids:
            self.replica_up.labels(replica).set(0)
            self.staleness_versions.labels(replica)
            self.staleness_seconds.labels(replica)
            for reason in REPAIR_REASONS:
                self.read_repairs.labels(replica, reason)
        self._replica_ids = now

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
        """Counted on every read; logged once per key (a bounded memory of the keys already
        reported), by length and hash unless --log-keys: key names can be personal data."""
        self.siblings_over_soft.inc()
        digest = hashlib.blake2b(key, digest_size=8).hexdigest()
        if digest in self._over_soft_logged:
            self._over_soft_logged.move_to_end(digest)
            return
        self._over_soft_logged[digest] = None
        if len(self._over_soft_logged) > OVER_SOFT_REMEMBERED:
            self._over_soft_logged.popitem(last=False)
        fields: dict[str, Any] = {"event": "sibling_soft_limit", "key_length": len(key),
                                  "key_hash": digest, "siblings": count,
                                  "soft_limit": self.config.sibling_soft_limit}
        named = f"key {key[:100]!r}" if self.config.log_keys else f"a key (length {len(key)}, hash {digest})"
        if self.config.log_keys:
            fields["key"] = key[:100].decode("utf-8", "backslashreplace")
        log.warning("%s has %d live siblings, above the soft limit of %d: resolve them with "
                    "RQ.GET and RQ.SET", named, count, self.config.sibling_soft_limit, extra=fields)

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
        oldest = GaugeMetricFamily(
            "redquorum_hint_oldest_age_seconds",
            "Age of the oldest hint pending for the replica on any holder, from the hints' "
            "creation times on the holders (0 when none)", labels=["replica"])
        oldest_alias = GaugeMetricFamily(
            "redquorum_hints_oldest_age_seconds",
            "The same as redquorum_hint_oldest_age_seconds (the name it had first)",
            labels=["replica"])
        delay = HistogramMetricFamily(
            "redquorum_hint_delivery_delay_seconds",
            "From a hint's creation to its delivery into the replica (holders' clocks)",
            labels=["replica"])
        replayed = CounterMetricFamily(
            "redquorum_hints_replayed", "Hints replayed into the replica by this proxy",
            labels=["replica"])
        stored = CounterMetricFamily(
            "redquorum_hints_stored", "Hints this proxy left for the replica", labels=["replica"])
        dropped = CounterMetricFamily(
            "redquorum_hints_dropped",
            "Hints for the replica dropped by this proxy because it was down longer than the "
            "hint window (not stored, or deleted)", labels=["replica"])
        app = self.metrics.app
        if app is not None:
            for replica, lag in app.canary.lags().items():
                family.add_metric([replica], lag)
            for replica, count in app.handoff.pending_for().items():
                pending.add_metric([replica], count)
            for replica, age in app.handoff.oldest_ages().items():
                oldest.add_metric([replica], age)
                oldest_alias.add_metric([replica], age)
            for replica, histogram in list(app.handoff.delivery_delay.items()):
                delay.add_metric([replica], histogram.cumulative(), histogram.total)
            for replica, count in list(app.handoff.replayed.items()):
                replayed.add_metric([replica], count)
            for replica, count in list(app.coordinator.hints_stored.items()):
                stored.add_metric([replica], count)
            for replica, count in list(app.coordinator.hints_dropped.items()):
                dropped.add_metric([replica], count)
        yield family
        yield pending
        yield oldest
        yield oldest_alias
        yield delay
        yield replayed
        yield stored
        yield dropped


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
        rejected = CounterMetricFamily("redquorum_rejected_connections",
                                       "Client connections refused past maxclients")
        cut_off = CounterMetricFamily("redquorum_client_output_limit_disconnections",
                                      "Clients closed for passing client-output-buffer-limit")
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
            rejected.add_metric([], app.rejected_connections)
            cut_off.add_metric([], app.output_limit_closes)
        yield siblings
        yield rejected
        yield cut_off
        yield requests
        yield duration
        yield replica


class _AntiEntropyCollector:
    """Anti-entropy rounds (proxy/replication/antientropy.py), read when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        rounds = CounterMetricFamily("redquorum_antientropy_rounds",
                                     "Anti-entropy rounds this proxy completed")
        repaired = CounterMetricFamily(
            "redquorum_antientropy_keys_repaired",
            "Keys anti-entropy merged into the replica because it lacked what another home held",
            labels=["replica"])
        diverged = GaugeMetricFamily(
            "redquorum_antientropy_segments_diverged",
            "Digest segments in which the replica differed from the other homes, last round",
            labels=["replica"])
        success = GaugeMetricFamily(
            "redquorum_antientropy_last_success_timestamp_seconds",
            "When the last anti-entropy round that compared every partition without error ended "
            "(0: none yet)")
        duration = GaugeMetricFamily("redquorum_antientropy_round_duration_seconds",
                                     "How long the last completed anti-entropy round took")
        app = self.metrics.app
        ae = getattr(app, "antientropy", None)
        if ae is not None:
            rounds.add_metric([], ae.rounds)
            for replica, count in list(ae.repaired_total.items()):
                repaired.add_metric([replica], count)
            for replica, count in list(ae.segments_diverged.items()):
                diverged.add_metric([replica], count)
            if app.config.antientropy_enabled:  # disabled: no series, so no stalled alert
                success.add_metric([], ae.last_success)
            last = ae.round
            if last is not None and last.done:
                duration.add_metric([], last.duration)
            else:
                duration.add_metric([], 0.0)
        yield rounds
        yield repaired
        yield diverged
        yield success
        yield duration


PBS_QUANTILES = (0.5, 0.99, 0.999)
# Points of each sampled round-trip distribution exported for ``redquorum pbs --live``,
# which rebuilds the distributions from them (inverse-CDF interpolation).
ROUND_TRIP_POINTS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
PBS_TRIALS = 100_000


@dataclass
class PbsResult:
    p_consistent: dict[float, float] = field(default_factory=dict)  # t (ms) -> P
    t_visibility: dict[float, float] = field(default_factory=dict)  # quantile -> seconds
    round_trips: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (replica, op) -> points


def estimate_pbs(config: Config, samples: dict[str, tuple[list[float], list[float]]],
                 seed: int | None = None) -> PbsResult:
    """The WARS model over sampled round trips (seconds): (writes, reads) per replica.
    Pure computation, run in a worker thread."""
    import numpy as np

    from .replication import pbs

    result = PbsResult()
    for replica, (writes, reads) in samples.items():
        for op, values in (("write", writes), ("read", reads)):
            if values:
                points = np.quantile(np.asarray(values), ROUND_TRIP_POINTS, method="inverted_cdf")
                result.round_trips[(replica, op)] = [float(v) for v in points]
    writes_ms = [np.asarray(w) * 1000 for w, _ in samples.values()]
    reads_ms = [np.asarray(r) * 1000 for _, r in samples.values()]
    try:
        thresholds = pbs.simulate_round_trips(config.n, config.r, config.w, writes_ms, reads_ms,
                                              PBS_TRIALS, np.random.default_rng(seed))
    except pbs.SpecError:  # too few replicas have answered reads and writes yet
        return result
    result.p_consistent = dict(zip(config.pbs_t_ms, pbs.p_consistent(thresholds, config.pbs_t_ms),
                                   strict=True))
    visible = pbs.t_visibility(thresholds, PBS_QUANTILES)
    result.t_visibility = {q: ms / 1000 for q, ms in zip(PBS_QUANTILES, visible, strict=True)}
    return result


class PbsEstimate:
    """Probabilistically bounded staleness from the links' sampled round trips: the latest
    estimate, recomputed off the event loop, exported at scrape time."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.latest = PbsResult()

    async def run(self, app: Proxy) -> None:
        while True:
            await trio.sleep(self.config.pbs_interval)
            samples = {link.id: (list(link.round_trips.writes), list(link.round_trips.reads))
                       for link in app.links.values()}
            try:
                self.latest = await trio.to_thread.run_sync(estimate_pbs, self.config, samples)
            except Exception:  # a failed estimate must not stop the proxy: keep the last one
                log.exception("PBS estimate failed")

    def collect(self) -> Any:
        latest = self.latest
        consistency = GaugeMetricFamily(
            "redquorum_pbs_consistency_probability",
            "PBS (WARS model over sampled replica round trips): probability that a read t_ms "
            "after a write commits sees it", labels=["t_ms"])
        for t_ms, p in latest.p_consistent.items():
            consistency.add_metric([f"{t_ms:g}"], p)
        visibility = GaugeMetricFamily(
            "redquorum_pbs_t_visibility_seconds",
            "PBS: time after a write commits by which reads see it with this probability",
            labels=["quantile"])
        for q, seconds in latest.t_visibility.items():
            visibility.add_metric([f"{q:g}"], seconds)
        round_trips = GaugeMetricFamily(
            "redquorum_pbs_round_trip_seconds",
            "Quantiles of the sampled replica round trips the PBS estimate uses",
            labels=["replica", "op", "quantile"])
        for (replica, op), points in latest.round_trips.items():
            for q, value in zip(ROUND_TRIP_POINTS, points, strict=True):
                round_trips.add_metric([replica, op, f"{q:g}"], value)
        yield consistency
        yield visibility
        yield round_trips
