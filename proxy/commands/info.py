"""INFO: the sections Redis clients read, plus the proxy's own (quorum, replicas).

Clients read a handful of fields: ioredis waits while ``loading:1``; test frameworks and
drivers read ``redis_version``, ``redis_mode``, ``arch_bits``, ``mem_allocator``,
``cluster_enabled``, ``role``. The version is the Redis version whose commands, replies
and error texts redquorum reproduces. Sections and their order follow redis-server 7.0
(``default``: server … keyspace, then the proxy's ``redquorum`` section; ``all`` and
``everything`` add commandstats and latencystats). The statistics sections count what
this proxy process served (proxy/replication/counters.py ``InfoStats``), each command's
time being its batch's, from dispatch to the last reply; CONFIG RESETSTAT clears them.

The Keyspace section is empty: counting live keys means walking every replica (that is
what DBSIZE does), too expensive for a command every client runs on connect.
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import NATIVE
from ..replication.counters import percentiles

if TYPE_CHECKING:  # pragma: no cover
    from .app import App

REDIS_VERSION = "7.0.15"


def _human(size: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{size:.2f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size}"  # pragma: no cover


def _run_id(app: App) -> str:
    return hashlib.sha1(f"{os.getpid()}:{app.started}".encode()).hexdigest()


def _server(app: App) -> list[str]:
    uptime = int(time.time() - app.started)
    host, port = app.listen_address or app.config.listen
    return [
        f"redis_version:{REDIS_VERSION}",
        "redis_git_sha1:00000000",
        "redis_git_dirty:0",
        "redis_build_id:0",
        "redis_mode:standalone",
        f"os:{platform.system()} {platform.release()} {platform.machine()}",
        "arch_bits:64",
        "monotonic_clock:POSIX clock_gettime",
        "multiplexing_api:epoll",
        "atomicvar_api:c11-builtin",
        "gcc_version:0.0.0",
        f"process_id:{os.getpid()}",
        "process_supervised:no",
        f"run_id:{_run_id(app)}",
        f"tcp_port:{port}",
        f"server_time_usec:{time.time_ns() // 1000}",
        f"uptime_in_seconds:{uptime}",
        f"uptime_in_days:{uptime // 86400}",
        "hz:10",
        "configured_hz:10",
        f"lru_clock:{int(time.time()) & ((1 << 24) - 1)}",
        "executable:redquorum",
        "config_file:",
        "io_threads_active:0",
        f"redquorum_version:{app.version()}",
        # the per-request modules compiled with mypyc, or pure Python (proxy/__init__.py)
        f"redquorum_build:{'mypyc' if NATIVE else 'python'}",
    ]


def _clients(app: App) -> list[str]:
    return [f"connected_clients:{len(app.sessions)}", "cluster_connections:0",
            f"maxclients:{app.config.maxclients}", "client_recent_max_input_buffer:0",
            "client_recent_max_output_buffer:0", "blocked_clients:0", "tracking_clients:0",
            "clients_in_timeout_table:0"]


def _memory(app: App) -> list[str]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover
        total = 0
    return [f"used_memory:{rss}", f"used_memory_human:{_human(rss)}",
            f"used_memory_rss:{rss}", f"used_memory_rss_human:{_human(rss)}",
            f"used_memory_peak:{rss}", f"used_memory_peak_human:{_human(rss)}",
            f"total_system_memory:{total}", f"total_system_memory_human:{_human(total)}",
            "used_memory_lua:0", "maxmemory:0", "maxmemory_human:0B",
            "maxmemory_policy:noeviction", "mem_fragmentation_ratio:1.00",
            "mem_allocator:libc", "lazyfree_pending_objects:0"]


def _persistence(app: App) -> list[str]:
    return ["loading:0", "async_loading:0", "rdb_changes_since_last_save:0",
            "rdb_bgsave_in_progress:0", f"rdb_last_save_time:{int(app.started)}",
            "rdb_last_bgsave_status:ok", "aof_enabled:0", "aof_rewrite_in_progress:0",
            "aof_rewrite_scheduled:0", "aof_last_write_status:ok"]


def _stats(app: App) -> list[str]:
    return [f"total_connections_received:{app.total_connections}",
            f"total_commands_processed:{app.total_commands}",
            "instantaneous_ops_per_sec:0", f"rejected_connections:{app.rejected_connections}",
            "expired_keys:0",
            "evicted_keys:0", "keyspace_hits:0", "keyspace_misses:0", "pubsub_channels:0",
            "pubsub_patterns:0", f"total_error_replies:{app.info_stats.error_replies}"]


def _commandstats(app: App) -> list[str]:
    lines = []
    for name, calls, usec, rejected, failed, _ in app.info_stats.commands():
        if name != "other" and (calls or rejected or failed):
            per_call = usec / calls if calls else 0.0
            lines.append(f"cmdstat_{name}:calls={calls},usec={int(usec)},"
                         f"usec_per_call={per_call:.2f},rejected_calls={rejected},"
                         f"failed_calls={failed}")
    return lines


def _errorstats(app: App) -> list[str]:
    return [f"errorstat_{code}:count={count}"
            for code, count in sorted(app.info_stats.errors.items())]


def _latencystats(app: App) -> list[str]:
    lines = []
    for name, calls, _, _, _, fine in app.info_stats.commands():
        if name != "other" and calls:
            values = ",".join(f"{p}={value:.3f}" for p, value in percentiles(fine))
            lines.append(f"latency_percentiles_usec_{name}:{values}")
    return lines


def _replication(app: App) -> list[str]:
    return ["role:master", "connected_slaves:0", "master_failover_state:no-failover",
            f"master_replid:{_run_id(app)}",
            "master_replid2:0000000000000000000000000000000000000000",
            "master_repl_offset:0", "second_repl_offset:-1", "repl_backlog_active:0"]


def _cpu(app: App) -> list[str]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return [f"used_cpu_sys:{usage.ru_stime:.6f}", f"used_cpu_user:{usage.ru_utime:.6f}",
            "used_cpu_sys_children:0.000000", "used_cpu_user_children:0.000000"]


def _empty(app: App) -> list[str]:
    return []


def _cluster(app: App) -> list[str]:
    return ["cluster_enabled:0"]


def _redquorum(app: App) -> list[str]:
    c = app.config
    up = sum(1 for link in app.links.values() if link.up)
    lines = [f"n:{app.coordinator.n}", f"w:{c.w}", f"r:{c.r}", f"mode:{c.mode}",
             f"replica_timeout_ms:{int(c.replica_timeout * 1000)}",
             f"tombstone_grace_seconds:{c.tombstone_grace:g}",
             f"replicas:{len(app.links)}", f"replicas_up:{up}"]
    applied = getattr(getattr(app, "membership", None), "applied", None)
    if applied is not None:  # the cluster's membership record this proxy follows
        lines += [f"membership_version:{applied.version}", f"membership_phase:{applied.phase}"]
    for i, link in enumerate(app.links.values()):
        state = "up" if link.up else "down"
        lines.append(f"replica{i}:id={link.id},address={link.address},state={state},"
                     f"in_flight={link.in_flight()}")
    # the freshness canary's figures, for people without Prometheus
    for replica, lag in app.canary.lags().items():
        lines.append(f"replica_lag_seconds_{replica}:{lag:.3f}")
    extra = getattr(app.events, "info_lines", None)
    if extra is not None:
        lines += extra()
    return lines + _antientropy(app)


def _antientropy(app: App) -> list[str]:
    ae = getattr(app, "antientropy", None)
    if ae is None:
        return []
    lines = [f"antientropy_enabled:{int(app.config.antientropy_enabled)}",
             f"antientropy_rounds:{ae.rounds}",
             f"antientropy_last_success:{int(ae.last_success)}",
             f"antientropy_keys_repaired:{sum(ae.repaired_total.values())}"]
    last = ae.round
    if last is not None:
        state = "done" if last.done else "running"
        lines.append(
            f"antientropy_last_round:state={state},started={int(last.started)},"
            f"seconds={last.duration:.3f},replicas={len(last.replicas)},"
            f"partitions={last.partitions},partitions_diverged={last.partitions_diverged},"
            f"segments_diverged={last.segments_diverged},keys_compared={last.keys_compared},"
            f"keys_repaired={last.keys_repaired},errors={last.errors}")
    for replica, phase in sorted(ae.rebuild_phase.items()):
        lines.append(f"antientropy_digests_{replica}:{phase}")
    return lines


# name → (title, lines); in Redis's order
SECTIONS: dict[str, tuple[str, Callable[[App], list[str]]]] = {
    "server": ("Server", _server),
    "clients": ("Clients", _clients),
    "memory": ("Memory", _memory),
    "persistence": ("Persistence", _persistence),
    "stats": ("Stats", _stats),
    "replication": ("Replication", _replication),
    "cpu": ("CPU", _cpu),
    "modules": ("Modules", _empty),
    "commandstats": ("Commandstats", _commandstats),
    "errorstats": ("Errorstats", _errorstats),
    "latencystats": ("Latencystats", _latencystats),
    "cluster": ("Cluster", _cluster),
    "keyspace": ("Keyspace", _empty),
    "redquorum": ("Redquorum", _redquorum),
}
DEFAULT = ["server", "clients", "memory", "persistence", "stats", "replication", "cpu",
           "modules", "errorstats", "cluster", "keyspace", "redquorum"]


def render(app: App, wanted: list[str]) -> str:
    """INFO's text for the requested section names (lower case), in Redis's order."""
    chosen: set[str] = set()
    for name in wanted or ["default"]:
        if name == "default":
            chosen.update(DEFAULT)
        elif name in ("all", "everything"):
            chosen.update(SECTIONS)
        else:
            chosen.add(name)
    parts = []
    for name, (title, lines) in SECTIONS.items():
        if name in chosen:
            parts.append(f"# {title}\r\n" + "".join(line + "\r\n" for line in lines(app)))
    return "\r\n".join(parts)
