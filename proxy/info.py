"""INFO: the sections Redis clients read, plus the proxy's own (quorum, replicas)."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .server import Proxy

REDIS_VERSION = "7.0.15"


def _server(app: Proxy) -> list[str]:
    uptime = int(time.time() - app.started)
    host, port = app.listen_address or app.config.listen
    return [
        f"redis_version:{REDIS_VERSION}",
        "redis_git_sha1:00000000",
        "redis_git_dirty:0",
        "redis_mode:standalone",
        f"os:{platform.system()} {platform.release()} {platform.machine()}",
        "arch_bits:64",
        "multiplexing_api:epoll",
        f"process_id:{os.getpid()}",
        f"tcp_port:{port}",
        f"uptime_in_seconds:{uptime}",
        f"uptime_in_days:{uptime // 86400}",
        "executable:redquorum",
        f"redquorum_version:{app.version()}",
    ]


def _clients(app: Proxy) -> list[str]:
    return [f"connected_clients:{len(app.sessions)}", "cluster_connections:0",
            "maxclients:10000", "blocked_clients:0", "tracking_clients:0"]


def _memory(app: Proxy) -> list[str]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return [f"used_memory:{rss}", f"used_memory_rss:{rss}", "maxmemory:0",
            "maxmemory_policy:noeviction", "mem_allocator:libc"]


def _persistence(app: Proxy) -> list[str]:
    return ["loading:0", "async_loading:0", "rdb_bgsave_in_progress:0", "aof_enabled:0"]


def _stats(app: Proxy) -> list[str]:
    return [f"total_connections_received:{app.total_connections}",
            f"total_commands_processed:{app.total_commands}"]


def _replication(app: Proxy) -> list[str]:
    return ["role:master", "connected_slaves:0"]


def _cpu(app: Proxy) -> list[str]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return [f"used_cpu_sys:{usage.ru_stime:.6f}", f"used_cpu_user:{usage.ru_utime:.6f}"]


def _cluster(app: Proxy) -> list[str]:
    return ["cluster_enabled:0"]


def _keyspace(app: Proxy) -> list[str]:
    return []


def _redquorum(app: Proxy) -> list[str]:
    c = app.config
    up = sum(1 for link in app.links.values() if link.up)
    lines = [f"n:{c.n}", f"w:{c.w}", f"r:{c.r}", f"mode:{c.mode}",
             f"replica_timeout_ms:{int(c.replica_timeout * 1000)}",
             f"tombstone_grace_seconds:{c.tombstone_grace:g}",
             f"replicas:{len(app.links)}", f"replicas_up:{up}"]
    for i, link in enumerate(app.links.values()):
        state = "up" if link.up else "down"
        lines.append(f"replica{i}:id={link.id},address={link.address},state={state},"
                     f"in_flight={link.in_flight()}")
    for replica, lag in app.canary.lags().items():
        lines.append(f"replica_lag_seconds_{replica}:{lag:.3f}")
    extra = getattr(app.events, "info_lines", None)
    if extra is not None:
        lines += extra()
    return lines


SECTIONS: dict[str, Callable[[Proxy], list[str]]] = {
    "server": _server,
    "clients": _clients,
    "memory": _memory,
    "persistence": _persistence,
    "stats": _stats,
    "replication": _replication,
    "cpu": _cpu,
    "cluster": _cluster,
    "keyspace": _keyspace,
    "redquorum": _redquorum,
}
DEFAULT = [s for s in SECTIONS]


def render(app: Proxy, wanted: list[str]) -> str:
    if not wanted or "default" in wanted or "all" in wanted or "everything" in wanted:
        names = DEFAULT
    else:
        names = [s for s in SECTIONS if s in wanted]
    parts = []
    for name in names:
        lines = SECTIONS[name](app)
        parts.append(f"# {name.capitalize() if name != 'redquorum' else 'Redquorum'}\r\n"
                     + "".join(line + "\r\n" for line in lines))
    return "\r\n".join(parts)
