"""Start and stop the processes under test.

Everything listens on free loopback ports. Every process started here is registered
on an ExitStack and stopped (SIGTERM, then SIGKILL) by its own PID when the stack
unwinds, on success, error or Ctrl-C; nothing else is ever signalled. The processes
run in their own sessions, so a terminal's Ctrl-C reaches only the harness, which
then stops them in reverse order, and they die with the harness if it is killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from redquorum.replicas.launcher import LocalReplica, die_with_parent, free_port, launch, stop_process

from .resp import ping

ROOT = Path(__file__).resolve().parent.parent
NUTCRACKER = "nutcracker"


class StartError(RuntimeError):
    pass


@dataclass
class Target:
    """One system under test: where redis-benchmark connects and whose CPU is counted."""

    name: str
    port: int
    front_pid: int  # the process clients talk to (the proxy, or redis itself)
    backend_pids: list[int] = field(default_factory=list)  # the redis-servers behind it
    front_peers: list[int] = field(default_factory=list)  # further proxy processes (dynomite's other nodes)

    @property
    def front_pids(self) -> list[int]:
        """Every proxy process requests pass through; their CPU is the front's."""
        return [self.front_pid, *self.front_peers]


def tail(path: Path, lines: int = 5) -> str:
    if not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until_ready(port: int, proc: subprocess.Popen[bytes], log: Path, what: str,
                     timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not ping(port):
        if proc.poll() is not None:
            raise StartError(f"{what} exited with {proc.returncode}: {tail(log)}")
        if time.monotonic() > deadline:
            raise StartError(f"{what} did not answer PING within {timeout:.0f}s: {tail(log)}")
        time.sleep(0.05)


class Fleet:
    """The processes of one benchmark sitting, in a temporary directory."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()
        self.dir = Path(".")
        self.proxy_log: Path | None = None

    def __enter__(self) -> Fleet:
        self.dir = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="rq-bench-")))
        return self

    def __exit__(self, *exc: object) -> None:
        # A second Ctrl-C must not interrupt stopping what was started.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stack.close()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _register(self, stop: Callable[[], None]) -> None:
        self.stack.callback(stop)

    def redis(self, count: int, prefix: str) -> list[LocalReplica]:
        """``count`` redis-servers with the replicas' settings (replicas/redis.conf)."""
        servers = launch(count, self.dir / prefix, prefix=prefix)
        for server in servers:
            self._register(server.stop)
        return servers

    def spawn(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    preexec_fn=die_with_parent)
        self._register(lambda: stop_process(proc))
        return proc

    def proxy(self, replicas: list[LocalReplica], n: int, w: int, r: int, mode: str,
              extra: list[str]) -> Target:
        port = free_port()
        args = [sys.executable, "-m", "redquorum.cli", "serve", "--listen", f"127.0.0.1:{port}",
                "-n", str(n), "-w", str(w), "-r", str(r), "--mode", mode, "--log-level", "warning"]
        for replica in replicas:
            args += ["--replica", f"{replica.id}={replica.address}"]
        # settings come from the arguments; REDQUORUM_NATIVE picks the build (compiled or not)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REDQUORUM_") or k == "REDQUORUM_NATIVE"}
        env["PYTHONPATH"] = str(ROOT)
        self.proxy_log = self.dir / "proxy.log"
        proc = self.spawn(args + extra, self.proxy_log, env)
        wait_until_ready(port, proc, self.proxy_log, "redquorum proxy")
        return Target("redquorum", port, proc.pid, [r.pid for r in replicas])

    def twemproxy(self, backend: LocalReplica) -> Target:
        binary = shutil.which(NUTCRACKER) or "/usr/sbin/nutcracker"
        if not os.path.exists(binary):
            raise StartError("nutcracker (twemproxy) is not installed (Debian: apt-get install nutcracker)")
        port, stats_port = free_port(), free_port()
        conf = self.dir / "nutcracker.yml"
        conf.write_text(nutcracker_config(port, backend.port))
        log = self.dir / "nutcracker.log"
        args = [binary, "-c", str(conf), "-s", str(stats_port), "-a", "127.0.0.1",
                "-o", str(log), "-v", "4"]
        proc = self.spawn(args, self.dir / "nutcracker.out")
        wait_until_ready(port, proc, log, "twemproxy")
        return Target("twemproxy", port, proc.pid, [backend.pid])

    def proxy_warnings(self, limit: int = 10) -> list[str]:
        """Warning and error lines the proxy logged (at most ``limit``, the first ones)."""
        if self.proxy_log is None or not self.proxy_log.exists():
            return []
        lines = self.proxy_log.read_text(errors="replace").splitlines()
        return [line for line in lines if " WARNING " in line or " ERROR " in line][:limit]


def nutcracker_config(port: int, backend_port: int) -> str:
    return (
        "bench:\n"
        f"  listen: 127.0.0.1:{port}\n"
        "  hash: fnv1a_64\n"
        "  distribution: ketama\n"
        "  redis: true\n"
        "  timeout: 5000\n"
        "  preconnect: true\n"
        "  auto_eject_hosts: false\n"
        "  server_connections: 1\n"
        "  servers:\n"
        f"   - 127.0.0.1:{backend_port}:1\n"
    )
