"""Plain-Python counters for the hot path, exported by proxy/metrics.py at scrape time.

prometheus-client's Counter.inc and Histogram.observe take a lock and cost 0.3 and
0.7 µs each; with one request count, one latency and three replica latencies per
operation they were 10-12% of the proxy's CPU. A list index and a bisect cost 0.1 µs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from math import ceil
from random import Random
from typing import ClassVar

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)
SIBLING_BUCKETS = (1, 2, 3, 5, 10, 25, 100)


class LocalHistogram:
    """Bucket counts with Prometheus's ``le`` semantics, observed without a lock."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(float(bound)), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)


OUTCOMES = ("ok", "error", "noquorum")
FINE_STEPS = 16  # latency buckets per doubling: 4.4% apart, as HdrHistogram's precision
FINE_BUCKETS = 40 * FINE_STEPS  # 1 µs to 2^40 µs (12 days)
MAX_ERROR_CODES = 128  # as Redis: past that many distinct codes, new ones are not counted
PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))
OK, ERROR, NOQUORUM, HISTOGRAM, FINE, REJECTED, QUEUED, EXCLUDED = range(8)


# upper edges in seconds of the fine latency buckets but the last: bucket k holds
# latencies below 2^((k+1)/16) µs (and at least the previous edge)
FINE_EDGES = tuple(2 ** ((k + 1) / FINE_STEPS) / 1e6 for k in range(FINE_BUCKETS - 1))


def fine_bucket(seconds: float) -> int:
    return bisect_right(FINE_EDGES, seconds)


class CommandStats:
    """Per command name: how many ended ok / error / noquorum, and their latency.

    A batch's commands share one latency (the batch's), so its bucket is found once per
    batch and each command costs a dict lookup and a few increments. Each entry also
    holds what INFO needs beyond Prometheus (see ``InfoStats``): a fine latency
    histogram of the calls, the rejected and queued commands, and the seconds of those
    two (not calls in Redis's sense)."""

    __slots__ = ("_entries",)

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        # name -> [ok, error, noquorum, histogram, fine counts, rejected, queued, excluded s];
        # the names known in advance start at zero, so their series exist (and rate() over
        # them is 0, not empty) from start-up.
        self._entries: dict[str, list] = {}
        for name in names:
            self.entry(name)

    def entry(self, name: str) -> list:
        found = self._entries.get(name)
        if found is None:
            found = self._entries[name] = [0, 0, 0, LocalHistogram(), [0] * FINE_BUCKETS,
                                           0, 0, 0.0]
        return found

    def entries(self) -> list[tuple[str, list]]:
        return list(self._entries.items())

    @property
    def outcomes(self) -> dict[tuple[str, str], int]:
        return {(name, outcome): entry[i] for name, entry in list(self._entries.items())
                for i, outcome in enumerate(OUTCOMES)}

    @property
    def latency(self) -> dict[str, LocalHistogram]:
        return {name: entry[3] for name, entry in list(self._entries.items())}


class InfoStats:
    """What INFO's commandstats, errorstats and latencystats sections show, as Redis
    counts: calls include failed calls, not rejected ones (refused before running:
    arity, NOAUTH, reserved keys) nor commands queued by MULTI (they count when EXEC
    runs them); errors are counted by their first word.

    The per-command figures are read from the ``CommandStats`` entries, which only grow
    (Prometheus counters must), less what they held at the last CONFIG RESETSTAT
    (``reset`` keeps that snapshot): the hot path counts each command once."""

    __slots__ = ("command_stats", "errors", "error_replies", "_base")

    def __init__(self, command_stats: CommandStats) -> None:
        self.command_stats = command_stats
        self.errors: dict[str, int] = {}
        self.error_replies = 0
        self._base: dict[str, tuple] = {}

    def error(self, text: str) -> None:
        self.error_replies += 1
        code = text.split(" ", 1)[0]
        if code in self.errors:
            self.errors[code] += 1
        elif len(self.errors) < MAX_ERROR_CODES:
            self.errors[code] = 1

    def reset(self) -> None:
        self.errors.clear()
        self.error_replies = 0
        self._base = {name: _snapshot(entry) for name, entry in self.command_stats.entries()}

    def commands(self) -> list[tuple[str, int, float, int, int, list[int]]]:
        """(name, calls, usec, rejected_calls, failed_calls, latency bucket counts) since
        the last reset, sorted by name."""
        rows = []
        for name, entry in sorted(self.command_stats.entries()):
            now = _snapshot(entry)
            base = self._base.get(name)
            ok, error, noquorum, seconds, fine, rejected, queued, excluded = (
                now if base is None else _minus(now, base))
            calls = ok + error + noquorum - rejected - queued
            if calls == 0 and rejected == 0:
                continue  # known in advance but never called: Redis lists only what ran
            usec = max(0.0, (seconds - excluded) * 1e6)
            rows.append((name, calls, usec, rejected, error + noquorum - rejected, fine))
        return rows


def _snapshot(entry: list) -> tuple:
    return (entry[OK], entry[ERROR], entry[NOQUORUM], entry[HISTOGRAM].total,
            list(entry[FINE]), entry[REJECTED], entry[QUEUED], entry[EXCLUDED])


def _minus(now: tuple, base: tuple) -> tuple:
    return tuple([a - b for a, b in zip(x, y, strict=True)] if isinstance(x, list) else x - y
                 for x, y in zip(now, base, strict=True))


def percentiles(counts: list[int]) -> list[tuple[str, float]]:
    """p50, p99, p99.9 in µs: the upper edge of the bucket holding each rank."""
    total = sum(counts)
    out = []
    for name, percent in PERCENTILES:
        rank = max(1, ceil(total * percent / 100))
        running = 0
        for bucket, count in enumerate(counts):
            running += count
            if running >= rank:
                out.append((name, 2 ** ((bucket + 1) / FINE_STEPS)))
                break
        else:
            out.append((name, 0.0))
    return out


class RoundTripSamples:
    """Recent replica round trips, reads and writes apart, for the PBS estimate
    (proxy/replication/pbs.py).

    The link records one reply in ``EVERY`` on average (a countdown on the hot path; the
    sampled reply costs a deque append and a random gap) into rings of ``SIZE``: the
    estimate follows the last few thousand requests, and memory stays fixed however
    busy the proxy is.
    """

    # ClassVar: compiled (scripts/build_native.py), a bare class attribute would be a
    # per-instance default, and ``RoundTripSamples.EVERY`` a descriptor, not 16
    EVERY: ClassVar[int] = 16
    SIZE: ClassVar[int] = 4096
    __slots__ = ("reads", "writes", "_random")

    def __init__(self, seed: int | None = None) -> None:
        self.reads: deque[float] = deque(maxlen=self.SIZE)
        self.writes: deque[float] = deque(maxlen=self.SIZE)
        self._random = Random(seed)

    def next_gap(self) -> int:
        """Replies until the next sample: uniform on 1..2*EVERY-1, EVERY on average."""
        return 1 + int(self._random.random() * (2 * self.EVERY - 1))
