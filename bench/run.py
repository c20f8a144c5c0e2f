"""One benchmark sitting: raw redis-server, twemproxy, redquorum and Dynomite, interleaved rounds.

    .venv/bin/python -m bench.run [--quick] [--rounds N] [--requests N] [--dynomite PATH]
                                  [--profile] [--json PATH]

See bench/README.md for what is started, what is measured and how to read the output.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from redquorum.replicas.launcher import LaunchError, LocalReplica

from . import dynomite, memory, profiling, report
from .cpu import cpu_seconds, cpu_times
from .memory import MeasureError, MemoryResult
from .procs import ROOT, Fleet, StartError, Target
from .report import Run
from .resp import RespError, set_many
from .workload import BenchError, Settings, Workload, run

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = ("raw", "twemproxy", "redquorum", "dynomite")


def _csv(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        return [kind(part) for part in text.split(",") if part]

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 10000 requests per run, 1 round")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 1)")
    p.add_argument("--requests", type=int, help="requests per redis-benchmark run (default 100000; --quick 10000)")
    p.add_argument("--clients", type=int, default=50, help="redis-benchmark -c (default 50)")
    p.add_argument("--data-size", type=int, default=16, help="redis-benchmark -d, bytes (default 16)")
    p.add_argument("--keyspace", type=int, default=100_000, help="redis-benchmark -r (default 100000)")
    p.add_argument("--pipelines", type=_csv(int), default=[1, 16], help="-P values (default 1,16)")
    p.add_argument("--tests", type=_csv(str), default=["set", "get"], help="-t tests (default set,get)")
    p.add_argument("--targets", type=_csv(str),
                   help="which to benchmark, in round order (default raw,twemproxy,redquorum, "
                        "and dynomite when its binary is found)")
    p.add_argument("--dynomite", metavar="PATH",
                   help="the dynomite binary (default: `dynomite` on PATH; without one, no Dynomite target)")
    p.add_argument("--memory-keys", type=int, default=20_000,
                   help="keys per value size for memory (default 20000; fewer inflate B/key with fixed costs)")
    p.add_argument("--memory-sizes", type=_csv(int), default=[16, 1024],
                   help="value sizes for the memory measurement (default 16,1024)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--profile", action="store_true",
                   help="after the rounds, run the first workload (--tests, --pipelines) against redquorum "
                        "once more under py-spy (needs root)")
    p.add_argument("--profile-requests", type=int, default=50_000,
                   help="requests in the profiled run (default 50000: enough samples)")
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    p.add_argument("--profile-wall", action="store_true",
                   help="py-spy samples inside system calls too (default: only while holding the GIL)")
    p.add_argument("--proxy-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for `redquorum.cli serve` (repeat; e.g. --proxy-arg=--workers=2)")
    p.add_argument("--json", type=Path, metavar="PATH",
                   help="where to write the JSON results (default bench/results/bench-<time>.json)")
    opts = p.parse_args(argv)
    opts.rounds = opts.rounds or (1 if opts.quick else 3)
    opts.requests = opts.requests or (10_000 if opts.quick else 100_000)
    try:
        opts.dynomite = dynomite.find_binary(opts.dynomite)
    except StartError as exc:
        p.error(str(exc))
    if opts.targets is None:
        opts.targets = [t for t in TARGETS if t != "dynomite" or opts.dynomite]
    unknown = set(opts.targets) - set(TARGETS)
    if unknown:
        p.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    if "dynomite" in opts.targets and not opts.dynomite:
        p.error("target dynomite: no dynomite binary on PATH; give --dynomite PATH")
    return opts


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------
# the sitting


def start(fleet: Fleet, opts: argparse.Namespace) -> tuple[dict[str, Target], LocalReplica, list[LocalReplica]]:
    """The raw redis-server (also twemproxy's only backend), twemproxy, 3 replicas and the proxy,
    and, when benchmarked, Dynomite's 3 nodes with their 3 redis-servers."""
    (raw,) = fleet.redis(1, "raw")
    replicas = fleet.redis(3, "r")
    targets = {"raw": Target("raw", raw.port, raw.pid),
               "twemproxy": fleet.twemproxy(raw),
               "redquorum": fleet.proxy(replicas, n=3, w=2, r=2, mode="causal", extra=opts.proxy_arg)}
    progress(f"started raw redis :{raw.port} (pid {raw.pid}), twemproxy :{targets['twemproxy'].port} "
             f"(pid {targets['twemproxy'].front_pid}), redquorum :{targets['redquorum'].port} "
             f"(pid {targets['redquorum'].front_pid}) over "
             + ", ".join(f"{r.id} :{r.port}" for r in replicas))
    if "dynomite" in opts.targets:
        targets["dynomite"], nodes = dynomite.start(fleet, opts.dynomite)
        progress(f"started dynomite :{nodes[0].port} ({nodes[0].rack}, the coordinator), "
                 + ", ".join(f"{n.rack} :{n.port}" for n in nodes[1:])
                 + f", each over its own redis-server; {dynomite.consistency(nodes[0])}")
    return targets, raw, replicas


def measure_memory(opts: argparse.Namespace, raw: LocalReplica, proxy: Target,
                   replicas: list[LocalReplica]) -> list[MemoryResult]:
    results = []
    for size in opts.memory_sizes:
        progress(f"memory: {opts.memory_keys} keys of {size} B through the proxy and into raw redis")
        results.append(memory.measure(raw.port, proxy.port, replicas, size, opts.memory_keys))
    return results


def prefill(opts: argparse.Namespace, targets: dict[str, Target]) -> None:
    """Every key of the keyspace exists, so GETs hit (twemproxy shares raw's redis-server)."""
    names = [n for n in ("raw", "redquorum", "dynomite") if n in opts.targets]
    if "twemproxy" in opts.targets and "raw" not in names:
        names.insert(0, "raw")
    value = b"x" * opts.data_size
    for name in names:
        began = time.monotonic()
        set_many(targets[name].port, (b"key:%012d" % i for i in range(opts.keyspace)), value, batch=500)
        progress(f"prefilled {opts.keyspace} keys of {opts.data_size} B into {name} "
                 f"in {time.monotonic() - began:.1f}s")


def run_one(target: Target, workload: Workload, settings: Settings, round_no: int) -> Run:
    """One redis-benchmark run, with the CPU the target's processes spent on it."""
    front0, back0 = cpu_times(target.front_pids), cpu_seconds(target.backend_pids)
    client0 = _children_cpu()
    began = time.monotonic()
    entry = Run(round_no, target.name, workload, 0.0)
    try:
        entry.result = run(target.port, workload, settings)
    except BenchError as exc:
        entry.error = str(exc)
    entry.seconds = time.monotonic() - began
    front = [after - before for after, before in zip(cpu_times(target.front_pids), front0, strict=True)]
    back = cpu_seconds(target.backend_pids) - back0
    entry.cpu_us_per_op = sum(front) * 1e6 / settings.requests
    entry.cpu_sys_us_per_op = front[1] * 1e6 / settings.requests
    entry.backend_cpu_us_per_op = back * 1e6 / settings.requests if target.backend_pids else None
    entry.client_cpu_us_per_op = (_children_cpu() - client0) * 1e6 / settings.requests
    return entry


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children: the redis-benchmark runs (the
    servers it started are still running, so they do not count)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def describe(entry: Run) -> str:
    head = f"{entry.target:<10} {entry.workload.label:<9}"
    if entry.result is None:
        return f"{head} FAILED: {entry.error}"
    return (f"{head} {entry.result.rps:>10,.0f} ops/s  p50 {entry.result.p50_ms:.3f} ms  "
            f"p99 {entry.result.p99_ms:.3f} ms  cpu {entry.cpu_us_per_op:.1f} µs/op "
            f"({entry.cpu_sys_us_per_op:.1f} sys)")


def rounds(opts: argparse.Namespace, targets: dict[str, Target], workloads: list[Workload],
           settings: Settings) -> list[Run]:
    runs = []
    for round_no in range(1, opts.rounds + 1):
        for name in opts.targets:
            for workload in workloads:
                entry = run_one(targets[name], workload, settings, round_no)
                progress(f"[round {round_no}/{opts.rounds}] {describe(entry)}")
                runs.append(entry)
    return runs


def profile(opts: argparse.Namespace, proxy: Target, settings: Settings, stamp: str) -> dict[str, Any]:
    """The first workload once more against redquorum, under py-spy; not counted in the medians."""
    workload = workloads_of(opts)[0]
    output = RESULTS / f"profile-{stamp}-{workload.test}-p{workload.pipeline}.collapsed"
    output.parent.mkdir(parents=True, exist_ok=True)
    settings = replace(settings, requests=opts.profile_requests)
    with profiling.recording(proxy.front_pid, output, opts.profile_rate, gil=not opts.profile_wall):
        entry = run_one(proxy, workload, settings, 0)
    progress(f"[profile] {describe(entry)}")
    parsed = profiling.parse_collapsed(output.read_text())
    text = profiling.format_profile(parsed)
    output.with_suffix(".txt").write_text(text + "\n")
    return {"collapsed_stacks": str(output), "summary": str(output.with_suffix(".txt")),
            "run": entry.as_dict(), "text": text} | parsed.as_dict()


@dataclass
class Sitting:
    """Everything one sitting measured."""

    opts: argparse.Namespace
    meta: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    memory: list[MemoryResult] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    proxy_warnings: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        settings = vars(self.opts) | {"json": str(self.opts.json) if self.opts.json else None}
        return {"meta": self.meta, "settings": settings, "summary": self.summary,
                "memory": [m.as_dict() for m in self.memory], "profile": self.profile,
                "proxy_warnings": self.proxy_warnings, "runs": [r.as_dict() for r in self.runs]}


def workloads_of(opts: argparse.Namespace) -> list[Workload]:
    return [Workload(t, p) for p in opts.pipelines for t in opts.tests]


def sitting(opts: argparse.Namespace, stamp: str) -> Sitting:
    workloads = workloads_of(opts)
    settings = Settings(opts.requests, opts.clients, opts.data_size, opts.keyspace)
    result = Sitting(opts, meta(opts))
    load_before = os.getloadavg()
    with Fleet() as fleet:
        targets, raw, replicas = start(fleet, opts)
        if not opts.no_memory:
            result.memory = measure_memory(opts, raw, targets["redquorum"], replicas)
        prefill(opts, targets)
        result.runs = rounds(opts, targets, workloads, settings)
        if opts.profile:
            result.profile = profile(opts, targets["redquorum"], settings, stamp)
        result.proxy_warnings = fleet.proxy_warnings()
    result.meta["loadavg"] = {"before": load_before, "after": os.getloadavg()}
    result.summary = report.summarize(result.runs, workloads, opts.targets)
    return result


# ---------------------------------------------------------------------------
# output


def _version(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "unknown"


def meta(opts: argparse.Namespace) -> dict[str, Any]:
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "commit": _version(["git", "rev-parse", "--short", "HEAD"]),
            # which build the proxy runs: compiled modules or pure Python (REDQUORUM_NATIVE)
            "redquorum": _version([sys.executable, "-m", "redquorum.cli", "--version"]),
            "redis_server": _version(["redis-server", "--version"]),
            "redis_benchmark": _version(["redis-benchmark", "--version"]),
            "nutcracker": _version(["nutcracker", "--version"]),
            "dynomite": _version([opts.dynomite, "--version"]) if opts.dynomite else None}


def render(result: Sitting) -> str:
    o, load = result.opts, result.meta["loadavg"]
    others = ", ".join(t for t in o.targets if t != "redquorum")
    dyn = f"; dynomite: 3 racks, {dynomite.CONSISTENCY}" if "dynomite" in o.targets else ""
    parts = [f"redquorum (n=3 w=2 r=2 causal) vs {others}{dyn}: medians of "
             f"{o.rounds} round(s) of {o.requests} requests, -c {o.clients} -d {o.data_size} "
             f"-r {o.keyspace}; load average {load['before'][0]:.2f} → {load['after'][0]:.2f} "
             f"on {result.meta['cpus']} CPUs; {result.meta['redquorum']}", "",
             report.format_table(result.summary)]
    failed = [r for r in result.runs if r.error]
    if failed:
        parts += ["", f"{len(failed)} run(s) failed, e.g. {failed[0].target} "
                      f"{failed[0].workload.label}: {failed[0].error}"]
    if result.memory:
        parts += ["", "replica memory per key: used_memory delta / keys (client and AOF buffers left out); replica = mean of the 3",
                  report.format_memory(result.memory)]
    if result.profile:
        parts += ["", result.profile["text"], f"collapsed stacks: {result.profile['collapsed_stacks']}"]
    if result.proxy_warnings:
        parts += ["", "proxy log warnings (first ones):", *result.proxy_warnings]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        result = sitting(opts, stamp)
    except KeyboardInterrupt:
        progress("interrupted: everything this harness started has been stopped")
        return 130
    except (StartError, LaunchError, BenchError, RespError, MeasureError,
            profiling.ProfileError, OSError) as exc:
        progress(f"bench: {exc}")
        return 1
    print(render(result))
    path = opts.json or RESULTS / f"bench-{stamp}.json"
    report.write_json(path, result.document())
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
