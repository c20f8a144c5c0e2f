"""redis-benchmark: the command line for one workload, and parsing its --csv output."""

from __future__ import annotations

import csv
import shutil
import subprocess
from dataclasses import asdict, dataclass


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Workload:
    test: str  # a redis-benchmark -t name: "set" or "get"
    pipeline: int

    @property
    def label(self) -> str:
        return f"{self.test.upper()} -P {self.pipeline}"


@dataclass(frozen=True)
class Settings:
    requests: int
    clients: int
    data_size: int
    keyspace: int


@dataclass(frozen=True)
class Result:
    """One row of ``redis-benchmark --csv``: throughput and latencies in milliseconds."""

    rps: float
    avg_ms: float
    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# redis-benchmark 7 --csv columns -> Result fields.
COLUMNS = {"rps": "rps", "avg_latency_ms": "avg_ms", "min_latency_ms": "min_ms",
           "p50_latency_ms": "p50_ms", "p95_latency_ms": "p95_ms", "p99_latency_ms": "p99_ms",
           "max_latency_ms": "max_ms"}


def binary() -> str:
    path = shutil.which("redis-benchmark")
    if path is None:
        raise BenchError("redis-benchmark is not installed (Debian: apt-get install redis-tools)")
    return path


def command(port: int, workload: Workload, settings: Settings) -> list[str]:
    return [binary(), "-h", "127.0.0.1", "-p", str(port), "-t", workload.test,
            "-n", str(settings.requests), "-c", str(settings.clients), "-P", str(workload.pipeline),
            "-d", str(settings.data_size), "-r", str(settings.keyspace), "--csv"]


def parse_csv(text: str) -> dict[str, Result]:
    """Rows of ``redis-benchmark --csv`` by test name ("SET", "GET", ...).

    Lines before the header (e.g. "WARNING: Could not fetch server CONFIG", which
    proxies provoke) are skipped. Old redis-benchmark versions print only
    "test","rps" rows without a header: those are rejected, latencies are required.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"test"')), None)
    if start is None:
        raise BenchError(f"no CSV header in redis-benchmark output: {text[-300:]!r}")
    rows = csv.DictReader(lines[start:])
    missing = set(COLUMNS) - set(rows.fieldnames or [])
    if missing:
        raise BenchError(f"redis-benchmark CSV lacks columns {sorted(missing)}")
    results: dict[str, Result] = {}
    for row in rows:
        if row.get("test"):
            results[row["test"]] = Result(**{field: float(row[col]) for col, field in COLUMNS.items()})
    return results


def timeout_for(settings: Settings) -> float:
    """Generous: a run slower than 200 requests/s counts as hung."""
    return 60.0 + settings.requests / 200


def run(port: int, workload: Workload, settings: Settings) -> Result:
    """Run one workload to completion and return its row (raises BenchError)."""
    try:
        proc = subprocess.run(command(port, workload, settings), capture_output=True, text=True,
                              timeout=timeout_for(settings), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"redis-benchmark timed out after {exc.timeout:.0f}s") from None
    if proc.returncode != 0:
        raise BenchError(f"redis-benchmark exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    results = parse_csv(proc.stdout)
    name = workload.test.upper()
    if name not in results:
        raise BenchError(f"no {name} row in redis-benchmark output: {proc.stdout[-300:]!r}")
    return results[name]
