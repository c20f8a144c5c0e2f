"""Netflix Dynomite as a benchmark target: its configuration and its processes.

Topology: one datacenter of three racks, one dynomite node per rack, each in front of its
own redis-server. Dynomite gives every rack a full copy of the token ring, so with one node
per rack that node owns every key and each key is stored on all three redis-servers. With
``DC_QUORUM`` reads and writes, the node a client talks to (the coordinator) sends the
request to its own redis-server and to its peers in the other two racks, and answers once
two replies agree (a third is awaited when they differ).

redis-benchmark opens all its connections to one address, so clients talk to the rack1
node: it coordinates every request, the other two only serve as replicas. The CPU of all
three nodes counts as the front's ("cpu µs/op"), the three redis-servers' as the backend's.

Peers learn of each other from ``dyn_seeds`` (no gossip) and connect lazily, so a node
answers PING before it can reach a quorum; the cluster counts as up once a SET and a GET
through the coordinator succeed.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from redquorum.replicas.launcher import free_port

from .procs import Fleet, StartError, Target, tail, wait_until_ready
from .resp import Client, RespError

BINARY = "dynomite"
DATACENTER = "dc1"
RACKS = ("rack1", "rack2", "rack3")
CONSISTENCY = "DC_QUORUM"
# One node per rack owns the whole ring whatever its token; distinct, evenly spread tokens
# keep the seeds unambiguous and match how a 3-node rack would be laid out.
TOKENS = (0, 1431655765, 2863311530)


@dataclass(frozen=True)
class Node:
    """Where one dynomite node listens, and the redis-server it fronts."""

    rack: str
    token: int
    port: int  # clients (RESP)
    peer_port: int  # dyn_listen: the other nodes
    stats_port: int  # HTTP stats; the default 22222 would collide between nodes
    redis_port: int


def seed(node: Node, datacenter: str = DATACENTER) -> str:
    """A ``dyn_seeds`` entry: host:port:rack:datacenter:token."""
    return f"127.0.0.1:{node.peer_port}:{node.rack}:{datacenter}:{node.token}"


def node_config(node: Node, peers: list[Node], consistency: str = CONSISTENCY,
                datacenter: str = DATACENTER) -> str:
    """The YAML of one node; ``peers`` are the other nodes of the cluster."""
    seeds = "".join(f"  - {seed(peer, datacenter)}\n" for peer in peers)
    return (
        "dyn_o_mite:\n"
        f"  datacenter: {datacenter}\n"
        f"  rack: {node.rack}\n"
        f"  dyn_listen: 127.0.0.1:{node.peer_port}\n"
        f"  dyn_seeds:\n{seeds}"
        f"  listen: 127.0.0.1:{node.port}\n"
        f"  stats_listen: 127.0.0.1:{node.stats_port}\n"
        "  servers:\n"
        f"  - 127.0.0.1:{node.redis_port}:1\n"
        f"  tokens: '{node.token}'\n"
        "  data_store: 0\n"
        f"  read_consistency: {consistency}\n"
        f"  write_consistency: {consistency}\n"
        "  secure_server_option: none\n"
        "  timeout: 5000\n"
    )


def cluster_configs(nodes: list[Node], consistency: str = CONSISTENCY) -> list[str]:
    """One YAML per node, each seeded with all the others."""
    return [node_config(node, [p for p in nodes if p is not node], consistency) for node in nodes]


def plan(redis_ports: list[int]) -> list[Node]:
    """One node per rack on free loopback ports, in front of the given redis-servers."""
    if len(redis_ports) != len(RACKS):
        raise ValueError(f"{len(RACKS)} redis-servers needed, got {len(redis_ports)}")
    return [Node(rack, token, free_port(), free_port(), free_port(), redis_port)
            for rack, token, redis_port in zip(RACKS, TOKENS, redis_ports, strict=True)]


def find_binary(explicit: str | None) -> str | None:
    """``explicit`` if given (it must be executable), else ``dynomite`` on PATH, else None."""
    if explicit is None:
        return shutil.which(BINARY)
    if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
        raise StartError(f"--dynomite {explicit}: not an executable file")
    return os.path.abspath(explicit)


def start(fleet: Fleet, binary: str) -> tuple[Target, list[Node]]:
    """Three redis-servers, a dynomite node in front of each; clients go to the rack1 node."""
    servers = fleet.redis(len(RACKS), "dyn")
    nodes = plan([s.port for s in servers])
    procs = []
    for node, config in zip(nodes, cluster_configs(nodes), strict=True):
        conf = fleet.dir / f"dynomite-{node.rack}.yml"
        conf.write_text(config)
        log = fleet.dir / f"dynomite-{node.rack}.log"
        proc = fleet.spawn([binary, "-c", str(conf), "-o", str(log), "-v", "3"],
                           fleet.dir / f"dynomite-{node.rack}.out")
        wait_until_ready(node.port, proc, log, f"dynomite {node.rack}")
        procs.append(proc)
    wait_for_quorum(nodes[0].port, fleet.dir / f"dynomite-{nodes[0].rack}.log")
    target = Target("dynomite", nodes[0].port, procs[0].pid, [s.pid for s in servers],
                    front_peers=[p.pid for p in procs[1:]])
    return target, nodes


def consistency(node: Node) -> str:
    """The node's read and write consistency as it reports them on its stats port."""
    url = f"http://127.0.0.1:{node.stats_port}/get_consistency"
    with urllib.request.urlopen(url, timeout=5) as response:
        return " ".join(response.read().decode().split())


def wait_for_quorum(port: int, log: Path, timeout: float = 30.0) -> None:
    """Until a SET and a GET through the coordinator succeed at DC_QUORUM."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with Client(port, timeout=2.0) as client:
                client.call("SET", "bench:dynomite:ready", "1")
                if client.call("GET", "bench:dynomite:ready") == b"1":
                    client.call("DEL", "bench:dynomite:ready")
                    return
                last = "GET did not return the value just set"
        except (OSError, RespError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise StartError(f"dynomite reached no quorum within {timeout:.0f}s ({last}): {tail(log)}")
