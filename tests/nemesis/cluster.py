"""The cluster under test: real redis-server replicas and two (or more) redquorum proxies,
every proxy-to-replica link through its own relay, so a fault can cut one proxy from one
replica, one replica from every proxy, or split the proxies' views.

Replicas run with ``appendonly yes``; ``appendfsync`` is a parameter (``everysec`` is what
replicas/redis.conf ships). A SIGKILL ends the process but not the machine, so the kernel
still holds every byte written to the AOF: losing the tail of the log is simulated
explicitly (``truncate_aof``), as is losing everything (``wipe``) or going back in time
(``snapshot``/``restore``).

Every redis-server is started from one long-lived thread: the launcher asks the kernel to
SIGTERM a replica when its parent dies (PR_SET_PDEATHSIG), and "parent" there means the
thread that forked it, so a replica restarted from the nemesis's thread would be stopped
the moment that thread ends.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redquorum.replicas.launcher import LocalReplica, free_port, wait_ready_blocking

from tests.harness import ProxyProcess, wait_for
from tests.relay import Relay

AOF_DIR = "appendonlydir"


@dataclass
class ClusterSpec:
    replicas: int = 3
    proxies: int = 2
    mode: str = "causal"
    n: int = 3
    w: int | None = None
    r: int | None = None
    appendfsync: str = "everysec"
    replica_timeout: float = 0.3
    tombstone_grace: float | None = None  # the proxy's default (an hour) when None
    sloppy_quorum: bool = True  # with more replicas than n, fallbacks stand in for homes


@dataclass
class ProxySlot:
    """One proxy position: the process now serving it (replaced on restart) and its relays."""

    index: int
    relays: dict[str, Relay]
    process: ProxyProcess | None = None
    restarts: int = 0
    deaths: list[str] = field(default_factory=list)  # exits nobody asked for

    @property
    def port(self) -> int | None:
        return self.process.port if self.process is not None else None


class Cluster:
    def __init__(self, spec: ClusterSpec, base_dir: Path) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.replicas: dict[str, LocalReplica] = {}
        self.slots: list[ProxySlot] = []
        self.snapshots: dict[str, Path] = {}
        self.departed: dict[str, LocalReplica] = {}  # members that left, stopped
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replica-spawner")

    # ---------------------------------------------------------------- life cycle

    def start(self) -> Cluster:
        try:
            for i in range(1, self.spec.replicas + 1):
                ident = f"r{i}"
                replica = LocalReplica(ident, free_port(), self.base_dir / ident)
                self.replicas[ident] = replica
                self._spawner.submit(replica.start, self.replica_args()).result()
            wait_ready_blocking(list(self.replicas.values()))
            for index in range(self.spec.proxies):
                relays = {ident: Relay(rep.port) for ident, rep in self.replicas.items()}
                slot = ProxySlot(index, relays)
                self.slots.append(slot)
                self.start_proxy(slot)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for slot in self.slots:
            if slot.process is not None:
                slot.process.stop()
            for relay in list(slot.relays.values()):
                relay.close()
        for replica in [*self.replicas.values(), *self.departed.values()]:
            replica.stop()
        self._spawner.shutdown()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def replica_args(self) -> list[str]:
        return ["--appendonly", "yes", "--appendfsync", self.spec.appendfsync]

    # ---------------------------------------------------------------- proxies

    def start_proxy(self, slot: ProxySlot) -> None:
        spec = self.spec
        log = self.base_dir / f"proxy{slot.index}.{slot.restarts}.log"
        addresses = {ident: relay.address for ident, relay in list(slot.relays.items())}
        members = [rep for ident, rep in list(self.replicas.items()) if ident in slot.relays]
        extra = [] if spec.tombstone_grace is None else ["--tombstone-grace", f"{spec.tombstone_grace:g}"]
        if not spec.sloppy_quorum:
            extra += ["--sloppy-quorum", "no"]
        slot.process = ProxyProcess(members, n=spec.n, w=spec.w, r=spec.r,
                                    mode=spec.mode, timeout=spec.replica_timeout,
                                    addresses=addresses, log_path=log, extra=extra)

    def kill_proxy(self, slot: ProxySlot) -> None:
        proc = slot.process
        slot.process = None
        if proc is not None and proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()

    def restart_proxy(self, slot: ProxySlot) -> None:
        slot.restarts += 1
        self.start_proxy(slot)

    def check_proxies(self) -> list[str]:
        """Proxies that exited on their own since the last check (restarted so the run goes on)."""
        died = []
        for slot in self.slots:
            proc = slot.process
            if proc is None or proc.process.poll() is None:
                continue
            tail = _tail(proc.log_path)
            death = f"proxy{slot.index} exited with {proc.process.returncode}: {tail}"
            slot.deaths.append(death)
            died.append(death)
            self.restart_proxy(slot)
        return died

    def proxy_client(self, index: int, **kwargs) -> redis.Redis:
        port = self.slots[index].port
        if port is None:
            raise redis.ConnectionError(f"proxy{index} is down")
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 1)
        return redis.Redis(host="127.0.0.1", port=port, protocol=2, **kwargs)

    def proxies_see_all(self, timeout: float = 15.0) -> None:
        """Wait until every proxy has every replica link up."""
        for slot in self.slots:
            client = self.proxy_client(slot.index)
            try:
                wait_for(lambda c=client: c.info("redquorum")["replicas_up"] == len(self.replicas),
                         timeout=timeout, what=f"proxy{slot.index} to reach every replica")
            finally:
                client.close()

    # ---------------------------------------------------------------- replicas

    def raw(self, ident: str) -> redis.Redis:
        rep = self.replicas[ident]
        return redis.Redis(host=rep.host, port=rep.port, protocol=2, socket_timeout=5)

    def add_replica(self, ident: str) -> LocalReplica:
        """Start an empty replica with a relay per proxy: proxies started from now on are
        configured with it (those already running reach it at the membership record's
        address once a join names it)."""
        replica = LocalReplica(ident, free_port(), self.base_dir / ident)
        self._spawner.submit(replica.start, self.replica_args()).result()
        wait_ready_blocking([replica], timeout=20)
        self.replicas[ident] = replica
        for slot in self.slots:
            slot.relays[ident] = Relay(replica.port)
        return replica

    def retire_replica(self, ident: str) -> None:
        """Stop a replica that left the cluster: no proxy is configured with it again."""
        replica = self.replicas.pop(ident)
        self.departed[ident] = replica
        for slot in self.slots:
            relay = slot.relays.pop(ident, None)
            if relay is not None:
                relay.close()
        replica.stop()

    def user_key_count(self, ident: str) -> int:
        """Keys a replica holds, the proxies' own (``__rq:``) left out."""
        raw = self.raw(ident)
        try:
            return sum(1 for k in raw.scan_iter(count=1000) if not k.startswith(b"__rq:"))
        finally:
            raw.close()

    def cluster_flags(self, leave_out: tuple[str, ...] = ()) -> list[str]:
        """The members' direct addresses, as ``redquorum`` commands take them."""
        flags = ["-n", str(self.spec.n), "--mode", self.spec.mode]
        for ident, replica in list(self.replicas.items()):
            if ident in leave_out:
                continue
            flags += ["--replica", f"{ident}={replica.address}"]
        return flags

    def kill_replica(self, ident: str) -> None:
        self.replicas[ident].kill()

    def start_replica(self, ident: str) -> None:
        replica = self.replicas[ident]
        self._spawner.submit(replica.start, self.replica_args()).result()
        wait_ready_blocking([replica], timeout=20)

    def pause_replica(self, ident: str) -> None:
        self.replicas[ident].signal(signal.SIGSTOP)

    def resume_replica(self, ident: str) -> None:
        self.replicas[ident].signal(signal.SIGCONT)

    def wipe(self, ident: str) -> None:
        """Delete a (stopped) replica's data: it comes back empty."""
        shutil.rmtree(self.replicas[ident].dir / AOF_DIR, ignore_errors=True)
        (self.replicas[ident].dir / "dump.rdb").unlink(missing_ok=True)

    def snapshot(self, ident: str, quiesce: bool = True) -> None:
        """Copy a replica's AOF while it is paused, so the copy is one point in its history
        (``quiesce=False`` when a fault already holds it still: paused or dead)."""
        replica = self.replicas[ident]
        target = self.base_dir / "snapshots" / ident
        if quiesce:
            self.pause_replica(ident)
        try:
            shutil.rmtree(target, ignore_errors=True)
            source = replica.dir / AOF_DIR
            if source.exists():
                shutil.copytree(source, target)
            else:
                target.mkdir(parents=True)
        finally:
            if quiesce:
                self.resume_replica(ident)
        self.snapshots[ident] = target

    def restore(self, ident: str) -> bool:
        """Put a (stopped) replica's last snapshot back in place; False when it has none."""
        snapshot = self.snapshots.get(ident)
        if snapshot is None:
            return False
        self.wipe(ident)
        shutil.copytree(snapshot, self.replicas[ident].dir / AOF_DIR)
        return True

    def truncate_aof(self, ident: str, drop_bytes: int) -> int:
        """Chop the tail of a (stopped) replica's newest AOF file, then let redis-check-aof
        repair a cut through the middle of a command. Returns the bytes dropped."""
        aof_dir = self.replicas[ident].dir / AOF_DIR
        incr = sorted(aof_dir.glob("*.incr.aof"), key=lambda p: _sequence(p.name))
        if not incr:
            return 0
        newest = incr[-1]
        size = newest.stat().st_size
        keep = max(0, size - drop_bytes)
        with open(newest, "r+b") as f:
            f.truncate(keep)
        check = subprocess.run(["redis-check-aof", str(newest)], input=b"y\n",
                               capture_output=True, timeout=30)
        if check.returncode != 0:
            subprocess.run(["redis-check-aof", "--fix", str(newest)], input=b"y\n",
                           capture_output=True, timeout=30)
        return size - newest.stat().st_size

    def replica_log_tail(self, ident: str) -> str:
        return _tail(self.replicas[ident].dir / "redis.log")


def _sequence(name: str) -> int:
    # appendonly.aof.<seq>.incr.aof
    parts = name.split(".")
    try:
        return int(parts[-3])
    except (IndexError, ValueError):
        return -1


def _tail(path: Path | None, lines: int = 5) -> str:
    if path is None or not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
