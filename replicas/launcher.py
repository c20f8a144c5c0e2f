"""Start and stop local redis-server processes: the embedded replicas of ``redquorum up``
and of the test suite.

Each replica gets a free loopback port, its own directory and the settings in
replicas/redis.conf. Processes run in their own session (a terminal's Ctrl-C reaches
only the proxy, which then stops them in order) and, on Linux, die with their parent
if the proxy is killed outright. Only processes started here are ever signalled.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import trio

_PR_SET_PDEATHSIG = 1


class LaunchError(RuntimeError):
    pass


def redis_server_binary() -> str:
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if path is None:
        raise LaunchError("redis-server is not installed (Debian/Ubuntu: apt-get install "
                          "redis-server), or not on PATH")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def config_path() -> Path:
    return Path(str(resources.files(__package__ or "redquorum.replicas").joinpath("redis.conf")))


@dataclass
class LocalReplica:
    id: str
    port: int
    dir: Path
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, extra: list[str] | None = None) -> None:
        """Start (or restart) the redis-server on this replica's port and directory."""
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), str(config_path()), "--port", str(self.port),
                "--bind", self.host, "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log")] + (extra or [])
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            assert self.process is not None
            os.kill(self.process.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, then SIGKILL: only this replica's own process."""
        if self.process is not None:
            stop_process(self.process, timeout)

    def kill(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM this one process (resumed first: a paused one cannot exit), wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


def wait_ready_blocking(replicas: list[LocalReplica], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for replica in replicas:
        while not replica.ready():
            if not replica.running():
                log = replica.dir / "redis.log"
                tail = log.read_text(errors="replace").splitlines()[-3:] if log.exists() else []
                raise LaunchError(f"redis-server for {replica.id} exited: {' | '.join(tail)}")
            if time.monotonic() > deadline:
                raise LaunchError(f"redis-server for {replica.id} did not answer within {timeout}s")
            time.sleep(0.02)


def launch(count: int, data_dir: Path, host: str = "127.0.0.1",
           prefix: str = "r") -> list[LocalReplica]:
    """Start ``count`` replicas (ids r1, r2, …) on free ports; wait until they answer."""
    replicas: list[LocalReplica] = []
    try:
        for i in range(1, count + 1):
            replica = LocalReplica(f"{prefix}{i}", free_port(host), data_dir / f"{prefix}{i}", host)
            replica.start()
            replicas.append(replica)
        wait_ready_blocking(replicas)
    except BaseException:
        stop_all(replicas)
        raise
    return replicas


async def launch_async(count: int, data_dir: Path, host: str = "127.0.0.1") -> list[LocalReplica]:
    return await trio.to_thread.run_sync(launch, count, data_dir, host)


def stop_all(replicas: list[LocalReplica]) -> None:
    for replica in replicas:
        replica.stop()
