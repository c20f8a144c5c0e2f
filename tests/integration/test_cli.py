"""The command line: `redquorum up`, `redquorum serve`, configuration precedence."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from redquorum.cli import UP_SHOWN
from redquorum.config import SETTINGS, ConfigError, load
from redquorum.replicas.launcher import free_port

from tests.harness import ROOT, wait_for


def banner_pids(banner: str) -> list[int]:
    """The embedded replicas' PIDs, as ``redquorum up`` prints them."""
    return [int(p) for p in re.findall(r"\(pid (\d+)\)", banner)]


def redquorum(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REDQUORUM_")}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "redquorum.cli", *args], cwd=ROOT,
                            env={**base, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, **kwargs)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def stop_and_check(proc: subprocess.Popen, pids: list[int] | set[int], sig: int) -> None:
    """Signal the proxy; it exits 0 and every process it started is gone."""
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == 0
    wait_for(lambda: not any(alive(p) for p in pids), timeout=10, what="its processes to stop")


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 20) -> str:
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError(f"{marker!r} not printed; got:\n{''.join(lines)}")


def test_up_serves_and_sigint_stops_everything_it_started(tmp_path):
    port, metrics = free_port(), free_port()
    proc = redquorum("up", "--listen", f"127.0.0.1:{port}", "--metrics-listen",
                     f"127.0.0.1:{metrics}", "--data-dir", str(tmp_path), "--log-level", "warning")
    try:
        banner = read_until(proc, "Ctrl-C stops all")
        pids = banner_pids(banner)
        assert len(pids) == 3 and all(alive(p) for p in pids)
        c = redis.Redis(port=port, protocol=2)
        assert c.set("k", "v") and c.get("k") == b"v"
        assert c.info("redquorum")["replicas_up"] == 3
        # a second `up` on the same port fails clearly, and starts nothing
        second = redquorum("up", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "b"))
        out, _ = second.communicate(timeout=20)
        assert second.returncode == 1
        assert f"127.0.0.1:{port} is already in use" in out
        assert not (tmp_path / "b").exists()
        stop_and_check(proc, pids, signal.SIGINT)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_installed_command_runs_up_from_any_directory(tmp_path):
    """As a user runs it: the console script, from a directory outside the checkout, with
    no PYTHONPATH (the replicas' redis.conf is package data, found through the package)."""
    script = Path(sys.executable).with_name("redquorum")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDQUORUM_") and k != "PYTHONPATH"}
    port = free_port()
    proc = subprocess.Popen([str(script), "up", "--listen", f"127.0.0.1:{port}", "--data-dir",
                             str(tmp_path / "data"), "--log-level", "warning"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        pids = banner_pids(read_until(proc, "Ctrl-C stops all"))
        c = redis.Redis(port=port, protocol=2)
        assert c.set("k", "v") and c.get("k") == b"v"
        c.close()
        stop_and_check(proc, pids, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_stops_on_sigterm(tmp_path):
    port = free_port()
    proc = redquorum("up", "--listen", f"127.0.0.1:{port}", "--metrics-listen",
                     f"127.0.0.1:{free_port()}", "--replicas", "2", "--data-dir", str(tmp_path))
    try:
        banner = read_until(proc, "Ctrl-C stops all")
        assert "n=2 w=2 r=2" in banner
        pids = banner_pids(banner)
        stop_and_check(proc, pids, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("args", "message"), [
    (["-n", "3", "-w", "4"], "w=4 is outside 1..n"),
    (["-n", "3", "-r", "0"], "r=0 is outside 1..n"),
    (["-n", "4"], "n=4 needs at least 4 replicas, 3 configured"),
    (["--replica", "r1=127.0.0.1:1"], "duplicate replica id 'r1'"),
    (["--replica", "r9=nowhere"], "is not HOST:PORT"),
    (["--mode", "eventual"], "invalid choice"),
])
def test_invalid_configuration_stops_before_listening(args, message):
    port = free_port()
    base = ["serve", "--listen", f"127.0.0.1:{port}", "--replica", "r1=127.0.0.1:1",
            "--replica", "r2=127.0.0.1:2", "--replica", "r3=127.0.0.1:3"]
    proc = redquorum(*base, *args)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 2
    last = out.strip().splitlines()[-1]
    assert message in last  # the last line names the problem
    if not last.startswith("usage") and "error: argument" not in last:
        assert out.strip() == last  # configuration errors are one line


def test_configuration_precedence(tmp_path):
    conf = tmp_path / "redquorum.toml"
    conf.write_text("""
[proxy]
listen = "127.0.0.1:7101"
metrics_listen = "127.0.0.1:9101"

[quorum]
n = 3
w = 3
r = 1
mode = "lww"

[[replicas]]
id = "a"
address = "127.0.0.1:6001"
[[replicas]]
id = "b"
address = "127.0.0.1:6002"
[[replicas]]
id = "c"
address = "[::1]:6003"
""")
    from_file = load({"config": str(conf)}, environ={})
    assert from_file.listen == ("127.0.0.1", 7101)
    assert (from_file.n, from_file.w, from_file.r, from_file.mode) == (3, 3, 1, "lww")
    assert [r.id for r in from_file.replicas] == ["a", "b", "c"]
    assert from_file.replicas[2].host == "::1"
    env = {"REDQUORUM_W": "2", "REDQUORUM_LISTEN": "127.0.0.1:7102"}
    from_env = load({"config": str(conf)}, environ=env)
    assert from_env.w == 2 and from_env.r == 1 and from_env.listen == ("127.0.0.1", 7102)
    from_flags = load({"config": str(conf), "w": 1, "listen": "127.0.0.1:7103"}, environ=env)
    assert from_flags.w == 1 and from_flags.listen == ("127.0.0.1", 7103)
    replicas_env = load({}, environ={"REDQUORUM_REPLICAS": "x=127.0.0.1:1,y=127.0.0.1:2",
                                     "REDQUORUM_N": "2"})
    assert [r.id for r in replicas_env.replicas] == ["x", "y"] and replicas_env.w == 2
    with pytest.raises(ConfigError, match="unknown section"):
        bad = tmp_path / "bad.toml"
        bad.write_text("[proxyy]\nlisten='x'\n")
        load({"config": str(bad)}, environ={})


def test_help_documents_the_flags():
    out = subprocess.run([sys.executable, "-m", "redquorum.cli", "serve", "--help"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for flag in ("--config", "--listen", "--metrics-listen", "--replica", "-n", "-w", "-r", "--mode"):
        assert flag in out.stdout
    out = subprocess.run([sys.executable, "-m", "redquorum.cli", "up", "--help"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for flag in ("--replicas", "--listen", "--metrics-listen", "-n", "-w", "-r", "--data-dir",
                 "--config"):
        assert flag in out.stdout
    # the defaults come from the settings table, up's own where it has them
    text = " ".join(out.stdout.split())
    for name, setting in SETTINGS.items():
        shown = UP_SHOWN.get(name, setting.shown_default())
        if name not in ("workers", "context_secret"):
            assert f"({'default ' + shown + '; ' if shown else ''}env REDQUORUM_{name.upper()})" in text
    assert "(default 127.0.0.1:9379; env REDQUORUM_METRICS_LISTEN)" in text
    assert "(default 0.5; env REDQUORUM_REPLICA_TIMEOUT)" in text


def test_up_loads_file_environment_and_flags_like_serve(tmp_path):
    port, metrics = free_port(), free_port()
    conf = tmp_path / "up.toml"
    conf.write_text(f"""
[proxy]
listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:{metrics}"

[quorum]
n = 2
w = 1
r = 1
mode = "lww"

[[replicas]]
id = "elsewhere"
address = "127.0.0.1:1"
""")
    # the file gives n, mode and the addresses; the environment overrides its w and r;
    # the flag overrides the environment's r
    proc = redquorum("up", "--config", str(conf), "--replicas", "2", "-r", "1",
                     "--data-dir", str(tmp_path / "data"), "--log-level", "warning",
                     env={"REDQUORUM_W": "2", "REDQUORUM_R": "2"})
    try:
        banner = read_until(proc, "Ctrl-C stops all")
        assert "n=2 w=2 r=1 mode=lww" in banner
        assert "elsewhere" not in banner  # the embedded replicas stand in for [[replicas]]
        c = redis.Redis(port=port, protocol=2)
        assert c.set("k", "v") and c.get("k") == b"v"
        assert c.info("redquorum")["replicas_up"] == 2
        with socket.create_connection(("127.0.0.1", metrics), timeout=5):
            pass  # the file's metrics address, not up's default
        pids = banner_pids(banner)
        stop_and_check(proc, pids, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_share_the_port_and_stop_together(replicas):
    port = free_port()
    args = ["serve", "--workers", "2", "--listen", f"127.0.0.1:{port}", "--log-level", "warning"]
    for r in replicas:
        args += ["--replica", f"{r.id}={r.address}"]
    proc = redquorum(*args)
    try:
        pids: set[int] = set()

        def both_workers_answer() -> bool:
            try:
                c = redis.Redis(port=port, protocol=2, socket_timeout=2)
                pids.add(c.info("server")["process_id"])
                assert c.set("k", "v") and c.get("k") == b"v"
                c.close()
            except redis.ConnectionError:
                return False
            return len(pids) == 2
        wait_for(both_workers_answer, timeout=20, what="connections to reach both workers")
        stop_and_check(proc, pids, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
