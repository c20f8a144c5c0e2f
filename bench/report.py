"""Medians over rounds, ratios between targets, the printed table and the JSON document."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .memory import MemoryResult
from .workload import Result, Workload

METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_op", "cpu_sys_us_per_op", "backend_cpu_us_per_op",
           "client_cpu_us_per_op")
CPU_METRICS = ("cpu_us_per_op", "cpu_sys_us_per_op", "backend_cpu_us_per_op", "client_cpu_us_per_op")
RATIOS = (("redquorum", "raw"), ("redquorum", "twemproxy"), ("redquorum", "dynomite"),
          ("twemproxy", "raw"), ("dynomite", "raw"), ("dynomite", "twemproxy"))


@dataclass
class Run:
    """One redis-benchmark invocation against one target in one round."""

    round: int
    target: str
    workload: Workload
    seconds: float
    result: Result | None = None
    cpu_us_per_op: float | None = None  # the front process: proxy, or redis itself for raw
    cpu_sys_us_per_op: float | None = None  # the kernel's part of cpu_us_per_op
    backend_cpu_us_per_op: float | None = None  # the redis-servers behind a proxy
    client_cpu_us_per_op: float | None = None  # redis-benchmark itself
    error: str | None = None

    def metric(self, name: str) -> float | None:
        if name in CPU_METRICS:
            return getattr(self, name)
        return getattr(self.result, name) if self.result else None

    def as_dict(self) -> dict[str, Any]:
        cpu = {m: None if getattr(self, m) is None else round(getattr(self, m), 3) for m in CPU_METRICS}
        return {"round": self.round, "target": self.target, "test": self.workload.test,
                "pipeline": self.workload.pipeline, "seconds": round(self.seconds, 3),
                **(self.result.as_dict() if self.result else {}),
                **cpu, "error": self.error}


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(runs: list[Run], workloads: list[Workload], targets: list[str]) -> list[dict[str, Any]]:
    """Per workload: each target's medians over the rounds that succeeded, and the ratios."""
    summary = []
    for workload in workloads:
        per_target: dict[str, dict[str, Any]] = {}
        for target in targets:
            ok = [r for r in runs if r.workload == workload and r.target == target and r.result]
            per_target[target] = {m: median(r.metric(m) for r in ok) for m in METRICS} | {"rounds": len(ok)}
        summary.append({"workload": workload.label, "test": workload.test,
                        "pipeline": workload.pipeline, "targets": per_target,
                        "ratios": ratios(per_target)})
    return summary


def ratios(per_target: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Throughput ratios, e.g. "redquorum/raw": redquorum's median ops/s over raw's."""
    out: dict[str, float | None] = {}
    for a, b in RATIOS:
        if a in per_target and b in per_target:
            top, bottom = per_target[a]["rps"], per_target[b]["rps"]
            out[f"{a}/{b}"] = top / bottom if top and bottom else None
    return out


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(summary: list[dict[str, Any]]) -> str:
    header = (f"{'workload':<10} {'target':<10} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'cpu µs/op':>9} {'backend µs/op':>13} {'client µs/op':>12} {'×raw':>6} "
              f"{'×twemproxy':>10} {'×dynomite':>9}")
    lines = [header, "-" * len(header)]
    for entry in summary:
        for i, (target, m) in enumerate(entry["targets"].items()):
            label = entry["workload"] if i == 0 else ""
            vs_raw = entry["ratios"].get(f"{target}/raw")
            vs_twem = entry["ratios"].get(f"{target}/twemproxy")
            vs_dyn = entry["ratios"].get(f"{target}/dynomite")
            lines.append(
                f"{label:<10} {target:<10} {_num(m['rps'], ',.0f'):>9} {_num(m['p50_ms'], '.3f'):>8} "
                f"{_num(m['p99_ms'], '.3f'):>8} {_num(m['cpu_us_per_op'], '.1f'):>9} "
                f"{_num(m['backend_cpu_us_per_op'], '.1f'):>13} "
                f"{_num(m['client_cpu_us_per_op'], '.1f'):>12} {_num(vs_raw, '.2f'):>6} "
                f"{_num(vs_twem, '.2f'):>10} {_num(vs_dyn, '.2f'):>9}")
    return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


def format_memory(results: list[MemoryResult]) -> str:
    header = (f"{'value':<7} {'keys':>6} {'raw B/key':>10} {'replica B/key':>13} {'overhead':>9} "
              f"{'×raw':>5} {'all replicas':>12} {'STRLEN raw→rq':>14} {'MEMORY USAGE raw→rq':>20}")
    lines = [header, "-" * len(header)]
    for m in results:
        lines.append(
            f"{_size(m.value_bytes):<7} {m.keys:>6} {m.raw_bytes_per_key:>10.1f} "
            f"{m.replica_bytes_per_key:>13.1f} {m.overhead_bytes_per_key:>+9.1f} "
            f"{m.replica_bytes_per_key / m.raw_bytes_per_key:>5.2f} {m.all_replicas_bytes_per_key:>12.1f} "
            f"{f'{m.raw_stored_bytes:.0f} → {m.replica_stored_bytes:.0f}':>14} "
            f"{f'{m.raw_memory_usage:.0f} → {m.replica_memory_usage:.0f}':>20}")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
