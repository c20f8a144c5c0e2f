"""What the replication layer reports; proxy/metrics.py turns it into Prometheus series.

A plain class with no-op methods rather than a Protocol, so the coordinator can call any
of them unconditionally and a test can override just the one it watches.
"""

from __future__ import annotations

from .clock import Versioned


class Events:
    """What the coordinator reports."""

    def read_repair(self, replica: str, reason: str, merged: Versioned, had: Versioned) -> None: ...
    def stale_read(self) -> None: ...
    def quorum_failure(self, op: str) -> None: ...
    def siblings_over_soft_limit(self, key: bytes, count: int) -> None: ...
