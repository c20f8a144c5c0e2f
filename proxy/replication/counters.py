"""Plain-Python counters for the hot path, exported by proxy/metrics.py at scrape time.

prometheus-client's Counter.inc and Histogram.observe take a lock and cost 0.3 and
0.7 µs each; with one request count, one latency and three replica latencies per
operation they were 10-12% of the proxy's CPU. A list index and a bisect cost 0.1 µs.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from random import Random

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
        out = []
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


class CommandStats:
    """Per command name: how many ended ok / error / noquorum, and their latency.

    A batch's commands share one latency (the batch's), so its bucket is found once per
    batch and each command costs a dict lookup and three increments."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        # name -> [ok, error, noquorum, histogram]
        self._entries: dict[str, list] = {}

    def entry(self, name: str) -> list:
        found = self._entries.get(name)
        if found is None:
            found = self._entries[name] = [0, 0, 0, LocalHistogram()]
        return found

    @property
    def outcomes(self) -> dict[tuple[str, str], int]:
        return {(name, outcome): entry[i] for name, entry in list(self._entries.items())
                for i, outcome in enumerate(OUTCOMES) if entry[i]}

    @property
    def latency(self) -> dict[str, LocalHistogram]:
        return {name: entry[3] for name, entry in list(self._entries.items())}


class RoundTripSamples:
    """Recent replica round trips, reads and writes apart, for the PBS estimate
    (proxy/replication/pbs.py).

    The link records one reply in ``EVERY`` on average (a countdown on the hot path; the
    sampled reply costs a deque append and a random gap) into rings of ``SIZE``: the
    estimate follows the last few thousand requests, and memory stays fixed however
    busy the proxy is.
    """

    EVERY = 16
    SIZE = 4096
    __slots__ = ("reads", "writes", "_random")

    def __init__(self, seed: int | None = None) -> None:
        self.reads: deque[float] = deque(maxlen=self.SIZE)
        self.writes: deque[float] = deque(maxlen=self.SIZE)
        self._random = Random(seed)

    def next_gap(self) -> int:
        """Replies until the next sample: uniform on 1..2*EVERY-1, EVERY on average."""
        return 1 + int(self._random.random() * (2 * self.EVERY - 1))
